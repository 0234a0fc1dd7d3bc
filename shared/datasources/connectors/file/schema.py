"""The schema of a run: fixed once from a sample, then every chunk is cast to it."""

from __future__ import annotations

from dataclasses import dataclass

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
                raise SourceReadError(
                    f"file '{key}', column '{field.name}' (rows {row}-{row + table.num_rows}): "
                    f"a value cannot be read as {field.type}: {short(str(exc))}"
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)
