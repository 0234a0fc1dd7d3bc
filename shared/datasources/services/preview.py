"""Preview: a few rows of one stream, read straight from the source inside the request."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from datasources.auth import Principal
from datasources.dal import sources as sources_dal
from datasources.dal.keys import tenant_for
from datasources.errors import SourceNotFound, StreamNotFound
from datasources.models.requests import PreviewQuery
from datasources.models.responses import ColumnView, PreviewData
from datasources.sync.sources import open_source

if TYPE_CHECKING:
    from datasources.connectors.base import Batch
    from datasources.models.streams import Column

# The response must stay far below Lambda's 6 MB payload limit and quick to render in a
# terminal: rows stop at 1 MiB of JSON, and one long value cannot fill that by itself.
MAX_PREVIEW_BYTES = 1_048_576
MAX_VALUE_CHARS = 4096


def preview_stream(principal: Principal, workspace_id: str, query: PreviewQuery) -> PreviewData:
    """Up to `query.limit` rows of a saved source's stream, typed as `schema` reports them.

    The rows come from the connector's own `read` in one small batch, which is then
    closed, so a preview costs one page, one statement or the head of one file; the
    source's configured timeouts bound each of those calls.
    """
    tenant = tenant_for(principal, workspace_id, query.scope)
    source = sources_dal.get_source(tenant, query.source_id)
    if source is None:
        raise SourceNotFound(f"data source {query.source_id} not found")
    from datasources.connectors.base import StreamState

    connector = open_source(source, tenant)
    try:
        table = next((t for t in connector.discover() if t.name == query.stream), None)
        if table is None:
            raise StreamNotFound(
                f"stream '{query.stream}' not found in data source {source.id}",
                details={"stream": query.stream},
            )
        # No cursor and no position: a full-refresh read from the start, in key order.
        reader = connector.read(table.name, StreamState(), query.limit)
        try:
            rows, truncated = _collect(reader, table.columns, query.limit)
        finally:
            close = getattr(reader, "close", None)
            if close is not None:
                close()  # ends the server-side cursor, COPY or download now
    finally:
        connector.close()
    return PreviewData(
        source_id=source.id,
        stream=table.name,
        columns=[ColumnView(**dict(c)) for c in table.columns],
        rows=rows,
        row_count=len(rows),
        truncated=truncated,
    )


def _collect(
    reader: Iterator[Batch], columns: list[Column], limit: int
) -> tuple[list[dict[str, Any]], bool]:
    rows: list[dict[str, Any]] = []
    size = 2  # the brackets of the JSON array
    truncated = False
    for batch in reader:
        records = batch.records
        records_list = records if isinstance(records, list) else records.to_pylist()
        for record in records_list:
            row: dict[str, Any] = {}
            for column in columns:
                value, cut = _json_value(record.get(column.name), column)
                truncated = truncated or cut
                row[column.name] = value
            # Measured as the response encodes it (ASCII escapes), not as UTF-8.
            row_bytes = len(json.dumps(row, default=str)) + 1
            if size + row_bytes > MAX_PREVIEW_BYTES:
                return rows, True
            rows.append(row)
            size += row_bytes
            if len(rows) >= limit:
                return rows, truncated
    return rows, truncated


def _json_value(value: Any, column: Column) -> tuple[Any, bool]:
    """A value as JSON, the way the landing zone's JSON Lines show it; long text is cut."""
    from datasources.connectors.sql.values import to_jsonable

    if isinstance(value, float) and not math.isfinite(value):
        return str(value), False  # NaN and infinities have no JSON literal
    if isinstance(value, dict | list):
        value = json.dumps(value, default=str, ensure_ascii=False)
    else:
        value = to_jsonable(value, column)
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS], True
    return value, False
