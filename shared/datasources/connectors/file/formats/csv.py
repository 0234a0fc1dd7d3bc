"""CSV and TSV: pyarrow's streaming reader, typed from its first block."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from datasources.connectors.file.schema import RunSchema, conform, decimal_type, target_type
from datasources.connectors.file.streams import (
    READ_BLOCK_BYTES,
    SAMPLE_BYTES,
    PrefixedReader,
    read_up_to,
)
from datasources.errors import SourceReadError
from datasources.models.connection import CsvOptions

_CSV_COLUMN_RE = re.compile(r"CSV column #(\d+)")


class CsvFormat:
    """Delimited text with the source's `csv` options (a tab by default for TSV)."""

    def __init__(self, options: CsvOptions, *, tsv: bool) -> None:
        self._options = options
        self._delimiter = options.delimiter or ("\t" if tsv else ",")

    def infer(self, stream: pa.NativeFile, key: str) -> tuple[pa.Schema, pa.Schema] | None:
        """Target and parser schemas from the first block of the file, None when empty.

        A column pyarrow reads as float is an exact decimal instead when its sampled
        literals all are (`schema.decimal_type`); pyarrow parses it as one, exactly.
        """
        head = read_up_to(stream, SAMPLE_BYTES)
        if not head.strip():
            return None
        # The streaming reader infers types from its first block, and its chunker keeps
        # quoted newlines whole, unlike a cut sample would.
        source = pa.PythonFile(PrefixedReader(head, stream), mode="r")
        reader = self._reader(source, key, None, SAMPLE_BYTES)
        floats = [f.name for f in reader.schema if pa.types.is_floating(f.type)]
        literals = self._literals(head, floats, cut=len(head) >= SAMPLE_BYTES) if floats else {}
        target: list[pa.Field] = []
        for field in reader.schema:
            decimal = decimal_type(literals[field.name]) if field.name in literals else None
            kind = decimal if decimal is not None else target_type(field.type, "csv")
            target.append(pa.field(field.name, kind))
        return pa.schema(target), pa.schema(target)

    def tables(self, stream: pa.NativeFile, key: str, read: pa.Schema | None) -> Iterator[pa.Table]:
        types = {f.name: f.type for f in read} if read is not None else None
        head = stream.read(1 << 16)
        source = pa.PythonFile(PrefixedReader(head, stream), mode="r")
        try:
            reader = self._reader(source, key, types, READ_BLOCK_BYTES)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            # pyarrow numbers the column; the user knows it by its header name.
            raise ValueError(_name_csv_column(str(exc), self._names(head))) from None

    def find_misfit(
        self, stream: pa.NativeFile, key: str, schema: RunSchema
    ) -> SourceReadError | None:
        """The first value that does not fit its decimal column, with its row: the file
        read again with those columns as text, each chunk cast exactly (`conform`)."""
        read = pa.schema(
            [
                pa.field(f.name, pa.string()) if pa.types.is_decimal(f.type) else f
                for f in schema.target
            ]
        )
        rows = 0
        for table in self.tables(stream, key, read):
            try:
                conform(table, schema.target, key, rows)
            except SourceReadError as misfit:
                return misfit
            rows += table.num_rows
        return None

    def _literals(self, head: bytes, names: list[str], *, cut: bool) -> dict[str, list[str]]:
        """The text of columns `names` in the sample, nulls left out. A sample `cut` from a
        longer file loses its last row, which may be cut short. Nothing when the sample
        does not parse as text (its columns then stay floats)."""
        try:
            table = pacsv.read_csv(
                pa.BufferReader(head),
                read_options=self._read_options(len(head) + 1),
                parse_options=self._parse_options(skip_invalid=True),
                convert_options=pacsv.ConvertOptions(
                    null_values=list(self._options.null_values),
                    strings_can_be_null=True,
                    column_types={name: pa.string() for name in names},
                    include_columns=names,
                ),
            )
        except pa.ArrowException:
            return {}
        if cut and table.num_rows:
            table = table.slice(0, table.num_rows - 1)
        return {name: table.column(name).drop_null().to_pylist() for name in names}

    def _names(self, head: bytes) -> list[str]:
        """The column names of a CSV file from its first bytes (for error messages)."""
        try:
            reader = self._reader(pa.BufferReader(head), "", {}, len(head) + 1)
        except (pa.ArrowException, SourceReadError):
            return []
        return list(reader.schema.names)

    def _reader(
        self,
        stream: pa.NativeFile,
        key: str,
        types: dict[str, pa.DataType] | None,
        block_size: int,
    ) -> Any:
        convert_options = pacsv.ConvertOptions(
            null_values=list(self._options.null_values),
            strings_can_be_null=True,
            column_types=types or {},
        )
        reader = pacsv.open_csv(
            stream,
            read_options=self._read_options(block_size),
            parse_options=self._parse_options(),
            convert_options=convert_options,
        )
        names = reader.schema.names
        if len(set(names)) != len(names) or "" in names:
            # Types are keyed by column name, so two columns with one name (or none) could
            # not be told apart: say so instead of guessing which one a type belongs to.
            raise SourceReadError(
                f"'{key}' has empty or repeated column names in its header: "
                "give every column a distinct name, or set csv.has_header to false"
            )
        return reader

    def _read_options(self, block_size: int) -> pacsv.ReadOptions:
        return pacsv.ReadOptions(
            block_size=block_size,
            use_threads=False,
            autogenerate_column_names=not self._options.has_header,
        )

    def _parse_options(self, *, skip_invalid: bool = False) -> pacsv.ParseOptions:
        # Quoted values may span lines (exports of free text do); the chunker must know.
        return pacsv.ParseOptions(
            delimiter=self._delimiter,
            quote_char=self._options.quote_char,
            newlines_in_values=True,
            invalid_row_handler=(lambda _row: "skip") if skip_invalid else None,
        )


def _name_csv_column(message: str, names: list[str]) -> str:
    match = _CSV_COLUMN_RE.search(message)
    if match and int(match.group(1)) < len(names):
        return f"column '{names[int(match.group(1))]}': {message}"
    return message
