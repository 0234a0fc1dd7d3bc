"""Incremental reads of files: keep rows above the committed cursor, track the new max."""

from __future__ import annotations

from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from datasources.connectors.base import StreamState
from datasources.errors import SourceReadError, ValidationFailed


class CursorFilter:
    """Keeps rows whose cursor is above the committed value and tracks the running max."""

    def __init__(self, field: pa.Field, bound: Any) -> None:
        self.field = field
        self.bound = bound  # a pyarrow scalar of the column's type, or None on a first run
        self.max: Any = None
        # Rows a later run leaves out because their cursor is null (a first run reads
        # them): counted, so the job can say how many and why.
        self.null_rows_left_out = 0

    @classmethod
    def build(cls, state: StreamState, schema: pa.Schema) -> CursorFilter | None:
        if not state.cursor_field:
            return None
        index = schema.get_field_index(state.cursor_field)
        if index < 0:
            raise ValidationFailed(
                f"cursor field '{state.cursor_field}' is not a column of this file "
                f"(columns: {', '.join(schema.names[:20])})"
            )
        field = schema.field(index)
        value = (state.cursor_state or {}).get("value")
        bound = _typed_scalar(value, field.type) if value is not None else None
        return cls(field, bound)

    def restore(self, value: Any) -> None:
        self.max = _typed_scalar(value, self.field.type).as_py()

    def apply(self, table: pa.Table) -> pa.Table:
        column = table.column(self.field.name)
        if self.bound is not None:
            self.null_rows_left_out += column.null_count
            table = table.filter(pc.greater(column, self.bound))
            column = table.column(self.field.name)
        if table.num_rows:
            top = pc.max(column).as_py()
            if top is not None and (self.max is None or top > self.max):
                self.max = top
        return table

    def left_out_note(self) -> str | None:
        if not self.null_rows_left_out:
            return None
        return (
            f"{self.null_rows_left_out} row(s) with a null '{self.field.name}' were not read: "
            "an incremental run reads rows above the saved cursor, and a null is not; "
            "a full refresh reads them"
        )

    def max_json(self) -> Any:
        return _jsonable(self.max)


def _typed_scalar(value: Any, arrow_type: pa.DataType) -> pa.Scalar:
    """A committed (JSON) cursor value as a scalar comparable with the column."""
    try:
        if pa.types.is_timestamp(arrow_type):
            moment = datetime.fromisoformat(str(value))
            if arrow_type.tz is not None and moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            elif arrow_type.tz is None and moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            return pa.scalar(moment, type=arrow_type)
        if pa.types.is_date(arrow_type):
            return pa.scalar(date.fromisoformat(str(value)[:10]), type=arrow_type)
        if pa.types.is_decimal(arrow_type):
            return pa.scalar(Decimal(str(value)), type=arrow_type)
        if pa.types.is_integer(arrow_type):
            return pa.scalar(int(value), type=arrow_type)
        if pa.types.is_floating(arrow_type):
            return pa.scalar(float(value), type=arrow_type)
        return pa.scalar(str(value), type=arrow_type)
    except (ValueError, TypeError, pa.ArrowException):
        raise SourceReadError(
            f"the saved cursor value cannot be compared with a column of type {arrow_type}"
        ) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
