"""The schema of a run: fixed once from a sample, then every chunk is cast to it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from datasources import types
from datasources.connectors.base import Column
from datasources.connectors.file.messages import short
from datasources.errors import SourceReadError


@dataclass
class RunSchema:
    """The schema of a run: `target` is what every batch is cast to; `read` is what the
    parser is asked for (CSV column types, JSON explicit schema), None for Parquet."""

    target: pa.Schema
    read: pa.Schema | None
    nullable: dict[str, bool]
    row_count_estimate: int | None = None

    @classmethod
    def empty(cls) -> RunSchema:
        return cls(target=pa.schema([]), read=pa.schema([]), nullable={})

    def columns(self) -> list[Column]:
        return [
            Column(
                name=field.name,
                type=types.normalized_type(field.type),
                native_type=str(field.type),
                nullable=self.nullable.get(field.name, True),
            )
            for field in self.target
        ]


def cursor_candidates(columns: list[Column]) -> list[str]:
    """The shared cursor ranking, with an `id` column last: a file has no key, and its
    `id` always ranked after the creation columns."""
    ranked = types.cursor_candidates([(c.name, c.type) for c in columns])
    ids = [name for name in ranked if name.lower() == "id"]
    return [name for name in ranked if name not in ids] + ids


def decimal_type(literals: Iterable[str]) -> pa.DataType | None:
    """`decimal128(p, s)` when every sampled literal of a text column is an exact decimal
    (`types.infer_decimal`), None when the column is better read as a float."""
    inferred = types.infer_decimal(literals)
    if inferred is None:
        return None
    precision, scale = inferred
    return types.arrow_type("decimal", precision=precision, scale=scale)


def target_type(arrow_type: pa.DataType, fmt: str) -> pa.DataType:
    """The type a column is synced as: no null or dictionary columns, timestamps in µs."""
    if pa.types.is_null(arrow_type):
        return pa.string()
    if pa.types.is_dictionary(arrow_type):
        return target_type(arrow_type.value_type, fmt)
    if pa.types.is_timestamp(arrow_type) and fmt != "parquet":
        return pa.timestamp("us", tz="UTC" if arrow_type.tz else None)
    if pa.types.is_float16(arrow_type):
        return pa.float32()
    return arrow_type


def conform(table: pa.Table, target: pa.Schema, key: str, row: int) -> pa.Table:
    """Cast one chunk of a file to the run's schema; missing columns become nulls."""
    extra = [name for name in table.column_names if target.get_field_index(name) < 0]
    if extra:
        raise SourceReadError(
            f"file '{key}' has columns that the schema discovered from the first file does "
            f"not have: {', '.join(extra[:10])}; every file of a source needs the same "
            "columns (narrow 'pattern' or make a separate source)"
        )
    if table.schema == target:
        return table
    columns = []
    for field in target:
        if table.schema.get_field_index(field.name) < 0:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise _cast_error(key, field, column.combine_chunks(), row, exc) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def misfit_error(key: str, field: pa.Field, row: int, value: Any, why: str) -> SourceReadError:
    """A value that does not fit its column's type, by file, column and row (from 1)."""
    return SourceReadError(
        f"file '{key}', column '{field.name}', row {row}: {short(repr(value))} cannot be read "
        f"as {field.type}, the type sampled from the first file: {why}"
    )


def decimal_misfit(value: Any, decimal: pa.Decimal128Type) -> str | None:
    """Why a text or JSON value does not fit a decimal column exactly, None when it fits."""
    if not isinstance(value, str):
        return "it is not a number"
    try:
        pa.array([value]).cast(decimal)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        return None
    match = _DECIMAL_TEXT.fullmatch(value.strip())
    if match is None:
        return "it is not a decimal number"
    fraction = match.group(2) or ""
    if len(fraction) > decimal.scale:
        return f"it has more than {decimal.scale} digits after the point (values are never rounded)"
    return f"it has more than {decimal.precision - decimal.scale} digits before the point"


_DECIMAL_TEXT = re.compile(r"[+-]?(\d*)(?:\.(\d*))?")


def _cast_error(
    key: str, field: pa.Field, column: pa.Array, row: int, exc: pa.ArrowException
) -> SourceReadError:
    """The first value of a chunk that does not cast, found by halving the chunk."""
    low, high = 0, len(column)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            column.slice(low, middle - low).cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
        else:
            low = middle
    value = column[low].as_py() if len(column) else None
    why = decimal_misfit(value, field.type) if pa.types.is_decimal(field.type) else None
    return misfit_error(key, field, row + low + 1, value, why or short(str(exc)))
