"""CSV and TSV: pyarrow's streaming reader, typed from its first block."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from datasources.connectors.file.schema import target_type
from datasources.connectors.file.streams import READ_BLOCK_BYTES, SAMPLE_BYTES, PrefixedReader
from datasources.errors import SourceReadError
from datasources.models.connection import CsvOptions

_CSV_COLUMN_RE = re.compile(r"CSV column #(\d+)")


class CsvFormat:
    """Delimited text with the source's `csv` options (a tab by default for TSV)."""

    def __init__(self, options: CsvOptions, *, tsv: bool) -> None:
        self._options = options
        self._delimiter = options.delimiter or ("\t" if tsv else ",")

    def infer(self, stream: pa.NativeFile, key: str) -> tuple[pa.Schema, pa.Schema] | None:
        """Target and parser schemas from the first block of the file, None when empty."""
        head = stream.read(1 << 16)
        if not head.strip():
            return None
        # The streaming reader infers types from its first block, and its chunker keeps
        # quoted newlines whole, unlike a cut sample would.
        source = pa.PythonFile(PrefixedReader(head, stream), mode="r")
        reader = self._reader(source, key, None, SAMPLE_BYTES)
        target = pa.schema([pa.field(f.name, target_type(f.type, "csv")) for f in reader.schema])
        return target, target

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
        options = self._options
        read_options = pacsv.ReadOptions(
            block_size=block_size,
            use_threads=False,
            autogenerate_column_names=not options.has_header,
        )
        # Quoted values may span lines (exports of free text do); the chunker must know.
        parse_options = pacsv.ParseOptions(
            delimiter=self._delimiter, quote_char=options.quote_char, newlines_in_values=True
        )
        convert_options = pacsv.ConvertOptions(
            null_values=list(options.null_values),
            strings_can_be_null=True,
            column_types=types or {},
        )
        reader = pacsv.open_csv(
            stream,
            read_options=read_options,
            parse_options=parse_options,
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


def _name_csv_column(message: str, names: list[str]) -> str:
    match = _CSV_COLUMN_RE.search(message)
    if match and int(match.group(1)) < len(names):
        return f"column '{names[int(match.group(1))]}': {message}"
    return message
