"""Turn a connector batch into one part object: Parquet (default) or gzip JSON Lines."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import gzip
import json
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from datasources import types
from datasources.dal.keys import Tenant
from datasources.lake import source_prefix
from datasources.models.streams import Column

_DICTIONARY_LIMIT_BYTES = 256 * 1024


def stream_path(stream: str) -> str:
    """A stream name made safe as one S3 path segment (kept readable when it already is)."""
    return quote(stream, safe="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def job_prefix(tenant: Tenant, source_id: str, stream: str, job_id: str) -> str:
    """The Hive-style folder of one stream of one job (docs/architecture.md, "Landing zone")."""
    folder = source_prefix(tenant.organization, tenant.workspace_id, source_id)
    return f"{folder}stream={stream_path(stream)}/job={job_id}"


def part_key(prefix: str, seq: int, fmt: str, attempt: str) -> str:
    """Unique to the run (`attempt`) that writes it: a second writer of the same chunk
    (a redelivery, or a worker whose message became visible again) never replaces a
    part that was already counted; the unit's checkpoint names the attempt it counted."""
    extension = "parquet" if fmt == "parquet" else "jsonl.gz"
    return f"{prefix}/part-{seq:05d}-{attempt}.{extension}"


def part_seq(key: str) -> int:
    """The seq of a part from its key (see part_key)."""
    return part_id(key)[0]


def part_id(key: str) -> tuple[int, str]:
    """(seq, attempt) of a part from its key (see part_key)."""
    name = key.rsplit("/", 1)[-1].removeprefix("part-").split(".", 1)[0]
    seq, _, attempt = name.partition("-")
    return int(seq), attempt


def to_arrow(records: pa.Table | list[dict[str, Any]], columns: list[Column]) -> pa.Table:
    """A pyarrow Table for the batch; dict records are typed from the discovered columns.

    Keys not in the discovered schema (a column added since discovery) are kept, typed
    by inference, so drift is carried into the part rather than dropped.
    """
    if isinstance(records, pa.Table):
        return records
    names = [c.name for c in columns]
    extra = sorted({k for r in records for k in r} - set(names))
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for column in columns:
        # Dict records carry no declared precision: a decimal is kept as its exact text.
        arrow_type = types.arrow_type(column.type)
        values = [_prepare(r.get(column.name), column.type) for r in records]
        arrays.append(_array(values, arrow_type))
        fields.append(pa.field(column.name, arrays[-1].type))
    for name in extra:
        values = [_prepare(r.get(name), "json") for r in records]
        arrays.append(_array(values, pa.string()))
        fields.append(pa.field(name, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def encode(table: pa.Table, fmt: str) -> bytes:
    """Serialise one part."""
    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        # Snappy: what readers expect by default, and several times cheaper to encode
        # than zstd. Dictionary encoding only for text and binary columns: on numbers
        # and timestamps it is mostly tried and abandoned, which made encoding the
        # slowest step of a sync (make bench), while text columns are where it pays.
        # A 256 KiB dictionary still holds thousands of distinct short values (status,
        # country, name...), and a column with more gives up after 256 KiB rather than
        # 1 MiB of hashing: text columns encode 1.7x faster and come out smaller.
        text = [f.name for f in table.schema if _dictionary_worthy(f.type)]
        pq.write_table(
            table,
            sink,
            compression="snappy",
            use_dictionary=text or False,
            dictionary_pagesize_limit=_DICTIONARY_LIMIT_BYTES,
        )
        return bytes(sink.getvalue().to_pybytes())
    lines = (
        json.dumps(row, default=_json_default, ensure_ascii=False) for row in table.to_pylist()
    )
    return gzip.compress(("\n".join(lines) + "\n").encode("utf-8") if table.num_rows else b"")


def _dictionary_worthy(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
    )


def release_memory() -> None:
    """Return freed Arrow buffers to the operating system."""
    pa.default_memory_pool().release_unused()


def arrow_columns(table: pa.Table) -> list[dict[str, str]]:
    """The schema a part was written with, for the manifest."""
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


def _prepare(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type in ("json", "array") and not isinstance(value, str):
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    if column_type == "decimal" and not isinstance(value, str):
        return str(value)
    if column_type in ("timestamp", "timestamp_tz", "date", "time") and isinstance(value, str):
        return _parse_temporal(value, column_type)
    if column_type == "string" and not isinstance(value, str):
        return (
            json.dumps(value, default=_json_default)
            if isinstance(value, dict | list)
            else str(value)
        )
    return value


def _parse_temporal(value: str, column_type: str) -> Any:
    text = value.replace("Z", "+00:00")
    try:
        if column_type == "date":
            return dt.date.fromisoformat(text[:10])
        if column_type == "time":
            return dt.time.fromisoformat(text)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return value
    if column_type == "timestamp_tz" and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _array(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # Records of one API page can disagree on a field's type; keep every value as text
        # rather than fail the sync or drop the field.
        return pa.array(
            [
                None
                if v is None
                else (v if isinstance(v, str) else json.dumps(v, default=_json_default))
                for v in values
            ],
            type=pa.string(),
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)
