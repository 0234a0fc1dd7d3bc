"""Values between a database driver and the lake: the Arrow schema of discovered
columns, driver rows and server-written CSV as typed Arrow batches, and cursor and key
values as JSON for resume tokens and back. The type tables are in docs/database-types.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from datasources import types
from datasources.connectors.base import Column
from datasources.errors import SourceReadError, StreamUnreadable
from datasources.types import MAX_DECIMAL_PRECISION

if TYPE_CHECKING:
    import pyarrow as pa


class FastPathUnavailable(Exception):
    """Raised by an engine's `_stream_arrow` to go on with `_stream_rows` instead."""


_PRECISION_RE = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def decimal_precision(native_type: str) -> tuple[int, int] | None:
    """(precision, scale) written in a native type such as `numeric(12,4)`, else None."""
    match = _PRECISION_RE.search(native_type)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def decimal_fits_arrow(column: Column) -> bool:
    """Whether a decimal column has a declared precision Arrow's decimal128 can hold."""
    ps = decimal_precision(column.native_type)
    return ps is not None and 0 < ps[0] <= MAX_DECIMAL_PRECISION and 0 <= ps[1] <= ps[0]


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column's values are written with (docs/database-types.md).

    The normalized type's mapping, with a decimal's declared precision; MySQL's BIGINT
    UNSIGNED (no width since 8.0) is exact as decimal128(20, 0).
    """
    ps = decimal_precision(column.native_type) if column.type == "decimal" else None
    if (
        column.type == "decimal"
        and not decimal_fits_arrow(column)
        and column.native_type.lower().startswith("bigint")
    ):
        import pyarrow as pa

        return pa.decimal128(20, 0)
    return types.arrow_type(
        column.type,
        precision=ps[0] if ps else None,
        scale=ps[1] if ps else None,
    )


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    """The explicit Arrow schema of a stream, so every batch has the same types."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c), nullable=True) for c in columns])


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def json_text(value: Any) -> str | None:
    """JSON text for a value a driver decoded (dict/list/...), unchanged if already text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _coerce(kind: str, arrow_t: pa.DataType, value: Any) -> Any:
    """Best effort for values the fast path refused; anything unrepresentable becomes null."""
    import pyarrow as pa

    if value is None:
        return None
    if kind == "decimal":
        if isinstance(value, decimal.Decimal) and not value.is_finite():
            return None if pa.types.is_decimal(arrow_t) else str(value)  # NaN / Infinity
        if pa.types.is_decimal(arrow_t):
            return value
        # Plain notation (str() of a Decimal may use E-notation for small values).
        return format(value, "f") if isinstance(value, decimal.Decimal) else str(value)
    if kind in ("string", "array"):
        return value if isinstance(value, str) else str(value)
    if kind == "json":
        return json_text(value)
    if kind in ("date", "timestamp", "timestamp_tz", "time"):
        if isinstance(value, dt.timedelta) and kind == "time":
            if dt.timedelta(0) <= value < dt.timedelta(days=1):
                return (dt.datetime.min + value).time()
            return None
        return value if isinstance(value, dt.date | dt.time) else None
    if kind == "boolean":
        if isinstance(value, bytes):
            return int.from_bytes(value, "big") != 0
        return bool(value)
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "binary":
        return bytes(value) if not isinstance(value, str) else value.encode("utf-8")
    return value


def rows_to_arrow(
    schema: pa.Schema, columns: Sequence[Column], rows: Sequence[Sequence[Any]]
) -> tuple[pa.Table, list[str]]:
    """Build a typed Arrow table from row tuples; returns it and notes on coerced values."""
    import pyarrow as pa

    notes: list[str] = []
    if rows:
        values_by_column: list[Sequence[Any]] = list(zip(*rows, strict=True))
    else:
        values_by_column = [() for _ in columns]
    arrays = []
    for column, values, arrow_field in zip(columns, values_by_column, schema, strict=True):
        try:
            arrays.append(pa.array(values, type=arrow_field.type, from_pandas=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            # Slow path only for the odd value (NaN numeric, zero date, out-of-range TIME).
            coerced = [_coerce(column.type, arrow_field.type, v) for v in values]
            lost = sum(
                1 for a, b in zip(values, coerced, strict=True) if a is not None and b is None
            )
            if lost:
                notes.append(
                    f"column '{column.name}': {lost} value(s) not representable as "
                    f"{arrow_field.type} were written as null"
                )
            try:
                arrays.append(pa.array(coerced, type=arrow_field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise StreamUnreadable(
                    f"column '{column.name}' ({column.native_type}) has a value that cannot be "
                    f"converted to {arrow_field.type}: {str(exc)[:200]}"
                ) from None
    return pa.Table.from_arrays(arrays, schema=schema), notes


def to_jsonable(value: Any, column: Column) -> Any:
    """A cursor or key value as JSON (ISO-8601 datetimes, decimals as strings)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if column.type == "timestamp_tz" and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)  # MySQL TIMESTAMP read in a UTC session
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def from_jsonable(value: Any, column: Column) -> Any:
    """The inverse of `to_jsonable`, typed by the column, for use as a query parameter."""
    if value is None:
        return None
    try:
        kind = column.type
        if kind in ("timestamp", "timestamp_tz"):
            parsed = dt.datetime.fromisoformat(str(value))
            if kind == "timestamp_tz" and parsed.tzinfo is not None:
                parsed = parsed.astimezone(dt.UTC)
            return parsed
        if kind == "date":
            return dt.date.fromisoformat(str(value))
        if kind == "time":
            return dt.time.fromisoformat(str(value))
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "decimal":
            return decimal.Decimal(str(value))
        if kind == "binary":
            return bytes.fromhex(str(value))
        if kind == "boolean":
            return bool(value)
    except (ValueError, TypeError, decimal.InvalidOperation):
        raise SourceReadError(
            f"saved position value for column '{column.name}' is not a valid {column.type}; "
            "reset the stream's state and sync again"
        ) from None
    return value


class CsvBatchParser:
    """CSV text of one batch (one line per row, as the server wrote it) -> an Arrow table
    of the stream's schema, or FastPathUnavailable when a value does not parse exactly.

    Binary columns arrive as hex text; tz-aware timestamps as UTC text, with an offset
    (PostgreSQL's COPY: `zoned_text`) or without one (MySQL: read naive, then labelled
    UTC). A NULL is an unquoted empty field, `""` an empty string, and no other text
    ('NA', 'NULL', 'nan'...) is null.
    """

    def __init__(
        self,
        columns: Sequence[Column],
        true_values: list[str],
        false_values: list[str],
        *,
        zoned_text: bool = False,
    ) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        self._pa = pa
        self._pacsv = pacsv
        self.schema = arrow_schema(columns)
        self.binary = [i for i, c in enumerate(columns) if c.type == "binary"]

        def read_type(i: int, arrow_field: pa.Field) -> pa.DataType:
            if i in self.binary:
                return pa.string()
            if (
                not zoned_text
                and pa.types.is_timestamp(arrow_field.type)
                and arrow_field.type.tz is not None
            ):
                return pa.timestamp(arrow_field.type.unit)
            return arrow_field.type

        read_types = {f.name: read_type(i, f) for i, f in enumerate(self.schema)}
        # One thread, 1 MiB blocks: as fast as Arrow's thread pool on a batch, for half
        # the CPU (make bench), which the sync's writer and uploader threads need.
        self.read_options = pacsv.ReadOptions(
            column_names=[c.name for c in columns], block_size=1 << 20, use_threads=False
        )
        self.parse_options = pacsv.ParseOptions(newlines_in_values=True)
        self.convert_options = pacsv.ConvertOptions(
            column_types=read_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=true_values,
            false_values=false_values,
        )

    def parse(self, data: bytes | bytearray, rows: int) -> pa.Table:
        pa = self._pa
        try:
            table = self._pacsv.read_csv(
                pa.py_buffer(data),
                read_options=self.read_options,
                parse_options=self.parse_options,
                convert_options=self.convert_options,
            )
            if table.num_rows != rows:
                raise FastPathUnavailable
            if self.binary:
                arrays = list(table.columns)
                for i in self.binary:
                    arrays[i] = pa.array(
                        [None if v is None else bytes.fromhex(v) for v in arrays[i].to_pylist()],
                        type=pa.binary(),
                    )
                table = pa.Table.from_arrays(arrays, names=self.schema.names)
            if not table.schema.equals(self.schema):
                table = table.cast(self.schema)
            return table
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError):
            # A value text cannot carry exactly (a zero date, a flag of 2, a year > 9999):
            # the row path reads it with its notes and errors.
            raise FastPathUnavailable from None
