"""JSON Lines: pyarrow's streaming JSON reader, typed from a sample of whole lines.

The typing here also serves `json` files, whose elements are re-encoded as lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from datasources.connectors.file.schema import (
    RunSchema,
    decimal_misfit,
    decimal_type,
    misfit_error,
    target_type,
)
from datasources.connectors.file.streams import (
    READ_BLOCK_BYTES,
    SAMPLE_BYTES,
    SAMPLE_MAX_LINE_BYTES,
    PrefixedReader,
)
from datasources.errors import SourceReadError
from datasources.limits import check_json

_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_TIMESTAMP_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$"
_TIMESTAMP_TZ_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"


class JsonLinesFormat:
    """One JSON object per line."""

    def infer(self, stream: pa.NativeFile, key: str) -> tuple[pa.Schema, pa.Schema] | None:
        return infer_records(_read_sample(stream))

    def tables(self, stream: pa.NativeFile, key: str, read: pa.Schema | None) -> Iterator[pa.Table]:
        head = stream.read(1 << 16)
        if not head.strip():
            return
        source = pa.PythonFile(PrefixedReader(head, stream), mode="r")
        parse_options = pajson.ParseOptions(explicit_schema=read, unexpected_field_behavior="infer")
        reader = pajson.open_json(
            source,
            read_options=pajson.ReadOptions(use_threads=False, block_size=READ_BLOCK_BYTES),
            parse_options=parse_options,
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])

    def find_misfit(
        self, stream: pa.NativeFile, key: str, schema: RunSchema
    ) -> SourceReadError | None:
        """The first value that does not fit its decimal column, with its row: the file's
        lines read again, each decimal taken from its literal text."""
        decimals = [f for f in schema.target if pa.types.is_decimal(f.type)]
        row = 0
        tail = b""
        while True:
            data = stream.read(READ_BLOCK_BYTES)
            block = tail + data
            if data:
                cut = block.rfind(b"\n") + 1
                block, tail = block[:cut], block[cut:]
            misfit, row = decimal_misfit_in(block, decimals, key, row)
            if misfit is not None or not data:
                return misfit


class Literal(str):
    """The text of a JSON number, as written (`json.loads(parse_float=Literal)`)."""


def infer_records(sample: bytes) -> tuple[pa.Schema, pa.Schema] | None:
    """Target and parser schemas for JSON records, from NDJSON sample bytes.

    pyarrow's JSON reader turns date strings into timestamps and drops offsets, so
    temporal columns are read as strings and typed here from their text instead. It
    reads `0.99` as a float: a float column whose sampled literals are all exact
    decimals (`schema.decimal_type`) is read as a decimal instead, from the literal.
    """
    if not sample.strip():
        return None
    check_json(sample, "a JSON record", max_values=None)  # before pyarrow's recursive parser
    options = pajson.ReadOptions(use_threads=False, block_size=len(sample) + 1)
    table = pajson.read_json(pa.BufferReader(sample), read_options=options)
    as_text = pa.schema(
        [
            pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) else f
            for f in table.schema
        ]
    )
    if as_text != table.schema:
        table = pajson.read_json(
            pa.BufferReader(sample),
            read_options=options,
            parse_options=pajson.ParseOptions(explicit_schema=as_text),
        )
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    literals = _literals(sample, floats) if floats else {}
    target_fields: list[pa.Field] = []
    read_fields: list[pa.Field] = []
    for field in table.schema:
        column = table.column(field.name)
        decimal = decimal_type(literals[field.name]) if field.name in literals else None
        if decimal is not None:
            target_fields.append(pa.field(field.name, decimal))
            read_fields.append(pa.field(field.name, decimal))
        elif pa.types.is_string(field.type):
            target_fields.append(pa.field(field.name, _temporal_type(column)))
            read_fields.append(pa.field(field.name, pa.string()))
        elif pa.types.is_null(field.type):
            # Never seen with a value: string, and parsed as whatever comes, then cast.
            target_fields.append(pa.field(field.name, pa.string()))
        else:
            target_fields.append(pa.field(field.name, target_type(field.type, "json")))
            read_fields.append(pa.field(field.name, field.type))
    return pa.schema(target_fields), pa.schema(read_fields)


def records_table(data: bytes, read: pa.Schema | None, key: str, row: int) -> pa.Table:
    """One table from whole JSON lines, parsed with the run's parser schema; `row` is the
    number of records of the file before these. A decimal that does not fit fails with
    its file, column and row, never rounded."""
    check_json(data, "a JSON element", max_values=None)  # before pyarrow's recursive parser
    try:
        return pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pajson.ParseOptions(
                explicit_schema=read, unexpected_field_behavior="infer"
            ),
        )
    except pa.ArrowInvalid:
        decimals = [f for f in read or [] if pa.types.is_decimal(f.type)]
        misfit, _ = decimal_misfit_in(data, decimals, key, row)
        if misfit is not None:
            raise misfit from None
        raise


def decimal_misfit_in(
    data: bytes, decimals: list[pa.Field], key: str, row: int
) -> tuple[SourceReadError | None, int]:
    """The first decimal value in JSON lines `data` that does not fit its column (None if
    every one fits), and the rows counted so far (`row` were before `data`)."""
    for line in data.splitlines():
        if not line.strip():
            continue
        row += 1
        try:
            record = json.loads(line, parse_float=Literal, parse_int=Literal)
        except ValueError:
            return None, row  # malformed: pyarrow's own message says so
        if not isinstance(record, dict):
            return None, row
        for field in decimals:
            value = record.get(field.name)
            why = decimal_misfit(value, field.type) if value is not None else None
            if why is not None:
                return misfit_error(key, field, row, value, why), row
    return None, row


def _literals(sample: bytes, names: list[str]) -> dict[str, list[str]]:
    """The literal text of the numbers of columns `names` in NDJSON sample bytes. A column
    holding anything but numbers and nulls has no literals (it stays what it was)."""
    literals: dict[str, list[str]] = {name: [] for name in names}
    for line in sample.splitlines():
        if not line.strip():
            continue
        record = json.loads(line, parse_float=Literal, parse_int=Literal)
        if not isinstance(record, dict):
            continue
        for name in list(literals):
            value = record.get(name)
            if isinstance(value, Literal):
                literals[name].append(value)
            elif value is not None:
                del literals[name]
    return literals


def _temporal_type(column: pa.ChunkedArray) -> pa.DataType:
    """date / timestamp / timestamp with zone when every sampled value parses as one."""
    values = column.drop_null()
    if len(values) == 0:
        return pa.string()
    for regex, candidate in (
        (_DATE_RE, pa.date32()),
        (_TIMESTAMP_RE, pa.timestamp("us")),
        (_TIMESTAMP_TZ_RE, pa.timestamp("us", tz="UTC")),
    ):
        if pc.all(pc.match_substring_regex(values, regex)).as_py():
            try:
                values.cast(candidate)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return pa.string()
            return candidate
    return pa.string()


def _read_sample(stream: pa.NativeFile) -> bytes:
    """About SAMPLE_BYTES from the start of a JSON Lines file, cut after the last full line
    (safe for JSON Lines: a newline inside a JSON value is always escaped)."""
    data = stream.read(SAMPLE_BYTES)
    if len(data) < SAMPLE_BYTES:
        return bytes(data)
    while b"\n" not in data and len(data) < SAMPLE_MAX_LINE_BYTES:
        more = stream.read(SAMPLE_BYTES)
        if not more:
            return bytes(data)
        data += more
    cut = data.rfind(b"\n")
    return bytes(data[: cut + 1]) if cut >= 0 else bytes(data)
