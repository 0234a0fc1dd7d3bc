"""Parquet: typed by its footer, read by row group from a seekable source.

A resumed read skips whole row groups before its position without fetching them, and
no column chunk larger than `limits.MAX_PARQUET_CHUNK_BYTES` is ever decompressed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datasources.connectors.file.objects import FileRef
from datasources.connectors.file.schema import RunSchema, target_type
from datasources.limits import MAX_PARQUET_CHUNK_BYTES, LimitExceeded

_PARQUET_COUNT_MAX_FILES = 100  # beyond this many footers, row_count_estimate is None


def run_schema(
    open_random: Callable[[FileRef], pa.NativeFile], files: list[FileRef], first: FileRef
) -> RunSchema:
    """The first file's footer schema, with a row count summed from every footer."""
    with open_random(first) as source:
        parquet = pq.ParquetFile(source)
        native = parquet.schema_arrow
        first_rows = parquet.metadata.num_rows
        check_column_chunks(parquet.metadata, first.key, range(parquet.num_row_groups))
    non_empty = [f for f in files if f.size != 0]
    estimate: int | None
    if len(non_empty) > _PARQUET_COUNT_MAX_FILES:
        estimate = None
    else:
        estimate = first_rows
        for ref in non_empty:
            if ref is first:
                continue
            with open_random(ref) as source:
                estimate += pq.ParquetFile(source).metadata.num_rows
    fields = [pa.field(f.name, target_type(f.type, "parquet"), True) for f in native]
    return RunSchema(
        target=pa.schema(fields),
        read=None,
        nullable={f.name: f.nullable for f in native},
        row_count_estimate=estimate,
    )


def tables(source: pa.NativeFile, key: str, skip: int) -> Iterator[pa.Table]:
    """The rows of one file after the first `skip`; row groups before them are not read."""
    parquet = pq.ParquetFile(source)
    groups: list[int] = []
    drop = 0
    position = 0
    for index in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(index).num_rows
        if position + rows <= skip:
            position += rows  # wholly before the resume point: never fetched
            continue
        if not groups:
            drop = skip - position
        groups.append(index)
        position += rows
    if not groups:
        return
    check_column_chunks(parquet.metadata, key, groups)
    for batch in parquet.iter_batches(batch_size=65_536, row_groups=groups, use_threads=False):
        table = pa.Table.from_batches([batch])
        if drop:
            cut = min(drop, table.num_rows)
            table = table.slice(cut)
            drop -= cut
        if table.num_rows:
            yield table


def check_column_chunks(metadata: Any, key: str, groups: Iterable[int]) -> None:
    """Refuse row groups with a column chunk larger than MAX_PARQUET_CHUNK_BYTES
    uncompressed, from the footer, before any of their pages is read: a few KiB of
    zstd can hold a value of hundreds of MiB."""
    for index in groups:
        group = metadata.row_group(index)
        for column in range(group.num_columns):
            chunk = group.column(column)
            if chunk.total_uncompressed_size > MAX_PARQUET_CHUNK_BYTES:
                raise LimitExceeded(
                    f"'{key}' row group {index}, column '{chunk.path_in_schema}' is "
                    f"{chunk.total_uncompressed_size} bytes uncompressed, over "
                    f"{MAX_PARQUET_CHUNK_BYTES} (limit: Parquet column chunk size); "
                    "write the file with smaller row groups"
                )
