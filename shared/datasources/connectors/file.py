"""The `file` connector: CSV, TSV, JSON Lines, JSON and Parquet on S3 or behind one https URL.

A source is one stream: a single object (`s3://bucket/key.csv`), every object under a
prefix (`s3://bucket/prefix/`, optionally filtered by a `pattern` glob), or one
`https://` URL. Files are read in sorted key order and streamed through pyarrow, so
memory stays bounded by a parser block plus one batch whatever the object size.

Decisions a user of this connector should know (the README repeats them):
- One schema per run, fixed from a sample (the first ~1 MiB) of the first non-empty
  file. A later file that lacks a column gets nulls for it; a later file with a column
  the schema does not have fails the read with a SourceReadError naming the file and
  the column (narrow the `pattern`, or split the source), rather than silently dropping
  data or changing the schema of a run half way. A value that cannot be cast to the
  discovered type fails the read the same way.
- Glob semantics for `pattern`, relative to the prefix: `*` and `?` stay inside one
  path segment, `**/` crosses folders (`**/*.csv` matches at any depth).
- A prefix without a pattern selects every object with a data extension (`.csv`,
  `.tsv`, `.jsonl`, `.ndjson`, `.json`, `.parquet`, each optionally `.gz`); with an
  explicit `format`, every object. Folder markers and names starting with `_` or `.`
  (`_SUCCESS`, `.crc`) are skipped.
- `json` files hold a top-level array of objects or a sequence of objects; they are
  parsed element by element (one element may be at most 64 MiB), never whole.
- Before any parser sees them, bytes pass the checks of `datasources.limits`: JSON
  nesting depth (every jsonl line, every json element), values per json element,
  gzip inflation (ratio and cap), Parquet column chunk size (from the footer), and the
  deadline of the function the read runs in (stage `timeout`).
- https: one object, no redirect to another host, at most 2 GiB streamed; a Parquet
  file over https is spooled to local disk first and may be at most 512 MiB. Plain
  http is accepted in local mode only.
- Resume tokens name the file, its ETag and the rows consumed in it; a file whose ETag
  changed during a run fails the read instead of yielding a mix of two versions.
  Objects added during a run whose keys sort before the current file are not read by
  that run.
- Incremental runs keep rows whose cursor is greater than the committed value; rows
  with a null cursor are read by a first run only.
"""

from __future__ import annotations

import codecs
import http.client
import io
import json
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from datasources.connectors.base import (
    Batch,
    CheckResult,
    Column,
    ConnectorContext,
    NormalizedType,
    StreamState,
    Table,
)
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.lake import confine, is_landing_bucket, s3_key
from datasources.limits import (
    MAX_JSON_VALUES,
    MAX_PARQUET_CHUNK_BYTES,
    DeadlineExceeded,
    InflateGuard,
    LimitExceeded,
    check_json,
    depth_error,
    seconds_left,
    shut_at_deadline,
)
from datasources.models.connection import FileConfig, reveal
from datasources.netguard import resolve_host

_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GZIP_EXTENSIONS = (".gz", ".gzip")

SAMPLE_BYTES = 1 << 20  # discovery infers types from about this much of the first file
_SAMPLE_MAX_LINE_BYTES = 16 << 20  # a first line longer than this is not a text table
_READ_BLOCK_BYTES = 4 << 20  # pyarrow parser block while reading; bounds memory per file
_STREAM_BUFFER_BYTES = 1 << 20
_RANGE_CHUNK_BYTES = 8 << 20  # Parquet range reads fetch at least this much per request
JSON_MAX_ELEMENT_BYTES = 64 << 20
_JSON_CHUNK_ROWS = 5_000
# A .json element still incomplete past this many characters has its values counted
# (limits.MAX_JSON_VALUES) before Python's parser builds it.
_JSON_COUNT_AFTER_CHARS = 1 << 20
_JSON_WHITESPACE = re.compile("[ \t\r\n\ufeff]*")
HTTP_MAX_BYTES = 2 << 30
HTTP_PARQUET_MAX_BYTES = 512 << 20
_HTTP_TIMEOUT_SECONDS = 30.0
_HTTP_MAX_REDIRECTS = 3
_MAX_FILES = 100_000
_PARQUET_COUNT_MAX_FILES = 100  # beyond this many footers, row_count_estimate is None
_MESSAGE_CHARS = 300

# Preferred first: an update timestamp picks up changed rows, an insertion key only new ones.
_CURSOR_NAMES = (
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "last_updated",
    "date_modified",
    "updated",
    "modified",
    "created_at",
    "inserted_at",
    "created",
    "id",
)
_CURSOR_TYPES = ("timestamp", "timestamp_tz", "date", "integer")

_DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
_TIMESTAMP_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$"
_TIMESTAMP_TZ_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
_CSV_COLUMN_RE = re.compile(r"CSV column #(\d+)")


@dataclass(frozen=True)
class _FileRef:
    """One object to read: its key (or URL path), size and version tag when known."""

    key: str
    size: int | None
    etag: str | None


@dataclass(frozen=True)
class _Location:
    scheme: str  # "s3", "https" or "http"
    bucket: str  # the bucket, or the host for a URL
    key: str  # object key, prefix, or URL path
    is_prefix: bool


@dataclass
class _Schema:
    """The schema of a run: `target` is what every batch is cast to; `read` is what the
    parser is asked for (CSV column types, JSON explicit schema), None for Parquet."""

    target: pa.Schema
    read: pa.Schema | None
    nullable: dict[str, bool]
    row_count_estimate: int | None = None


class FileConnector:
    """Reads files from S3 (one object or a prefix) or one https URL as a single stream."""

    def __init__(self, config: FileConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._settings = context.settings
        self._location = _parse_location(config.plain_url, config.pattern)
        _confine_to_tenant(self._location, context)
        self._pattern = _glob_regex(config.pattern) if config.pattern else None
        self._s3: Any = None
        self._files_cache: list[_FileRef] | None = None
        self._format_cache: str | None = config.format
        self._schema_cache: _Schema | None = None
        self.stream_name = _stream_name(self._location)
        if self._format_cache is None and not self._location.is_prefix:
            self._format_cache = _format_of(self._location.key)
            if self._format_cache is None:
                raise ValidationFailed(
                    f"cannot tell the format of '{_display_name(self._location)}' from its "
                    "extension: set 'format' to csv, tsv, jsonl, json or parquet"
                )

    # ------------------------------------------------------------------ protocol

    def check(self) -> CheckResult:
        """Prove the object (or the first object under the prefix) exists and parses."""
        started = time.monotonic()
        try:
            files = self._files()
            fmt = self._format()
            schema = self._discover_schema(files)
        except SourceReadError as exc:
            raise ConnectionFailed(exc.message, stage="read") from None
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        total = sum(f.size or 0 for f in files)
        return CheckResult(
            reachable=True,
            latency_ms=latency_ms,
            details={
                "objects": len(files),
                "format": fmt,
                "bytes": total,
                "columns": len(schema.target),
            },
        )

    def discover(self) -> list[Table]:
        """One table: columns typed from a sample of the first non-empty file."""
        try:
            files = self._files()
            schema = self._discover_schema(files)
        except SourceReadError as exc:
            raise ConnectionFailed(exc.message, stage="read") from None
        columns = [
            Column(
                name=field.name,
                type=_normalized_type(field.type),
                native_type=str(field.type),
                nullable=schema.nullable.get(field.name, True),
            )
            for field in schema.target
        ]
        return [
            Table(
                name=self.stream_name,
                columns=columns,
                primary_key=[],
                cursor_candidates=_cursor_candidates(columns),
                row_count_estimate=schema.row_count_estimate,
                kind="file",
            )
        ]

    def read(self, stream: str, state: StreamState, batch_size: int) -> Iterator[Batch]:
        """Yield batches of at most `batch_size` rows, in sorted key order, resumable."""
        if stream != self.stream_name:
            raise SourceReadError(
                f"stream '{stream}' is not part of this source (its stream is '{self.stream_name}')"
            )
        try:
            yield from self._read(state, max(1, int(batch_size)))
        except ConnectionFailed as exc:
            # During a sync the source failing is a read error, whatever stage it was at.
            raise SourceReadError(exc.message, details=exc.details) from None

    def close(self) -> None:
        """Release the S3 client's connection pool."""
        client, self._s3 = self._s3, None
        closer = getattr(client, "close", None)
        if callable(closer):
            closer()

    # ------------------------------------------------------------------ reading

    def _read(self, state: StreamState, batch_size: int) -> Iterator[Batch]:
        files = self._files()
        schema = self._discover_schema(files)
        cursor = _CursorFilter.build(state, schema.target)
        token = state.resume_token or {}
        start_key = token.get("file")
        start_row = int(token.get("row") or 0)
        if cursor is not None and token.get("max") is not None:
            cursor.restore(token["max"])

        pending: list[pa.Table] = []
        pending_rows = 0
        position: dict[str, Any] | None = None
        for ref in files:
            if start_key is not None and ref.key < start_key:
                continue
            skip = 0
            if start_key is not None and ref.key == start_key:
                etag = token.get("etag")
                if etag and ref.etag and etag != ref.etag:
                    raise SourceReadError(
                        f"file '{ref.key}' changed while this sync was reading it; "
                        "run the sync again"
                    )
                skip = start_row
            consumed = skip
            for chunk in self._iter_file(ref, schema, skip):
                offset = 0
                while offset < chunk.num_rows:
                    take = min(batch_size - pending_rows, chunk.num_rows - offset)
                    piece = chunk.slice(offset, take)
                    offset += take
                    consumed += take
                    if cursor is not None:
                        piece = cursor.apply(piece)
                    if piece.num_rows:
                        pending.append(piece)
                        pending_rows += piece.num_rows
                    position = {"file": ref.key, "etag": ref.etag, "row": consumed}
                    if pending_rows >= batch_size:
                        yield self._batch(pending, schema, position, cursor, state)
                        pending, pending_rows = [], 0
        if pending_rows and position is not None:
            yield self._batch(pending, schema, position, cursor, state)

    def _batch(
        self,
        pending: list[pa.Table],
        schema: _Schema,
        position: dict[str, Any],
        cursor: _CursorFilter | None,
        state: StreamState,
    ) -> Batch:
        records = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
        token = dict(position)
        cursor_state: dict[str, Any] | None = None
        if cursor is not None:
            token["max"] = cursor.max_json()
            # No row above the committed value yet: keep committing the old value.
            cursor_state = {"value": token["max"]} if token["max"] is not None else None
            if cursor_state is None and state.cursor_state is not None:
                cursor_state = dict(state.cursor_state)
        return Batch(records=records, resume_token=token, cursor_state=cursor_state)

    def _iter_file(self, ref: _FileRef, schema: _Schema, skip: int) -> Iterator[pa.Table]:
        """The rows of one file after the first `skip`, cast to the run's schema."""
        if ref.size == 0:
            return
        fmt = self._format()
        rows_seen = 0
        try:
            if fmt == "parquet":
                source: Iterator[pa.Table] = self._iter_parquet(ref, skip)
                rows_seen = skip  # row groups before `skip` are never read
                skip = 0
            elif fmt in ("csv", "tsv"):
                source = self._iter_csv(ref, schema)
            elif fmt == "jsonl":
                source = self._iter_jsonl(ref, schema)
            else:
                source = self._iter_json(ref, schema)
            for table in source:
                if skip:
                    dropped = min(skip, table.num_rows)
                    table = table.slice(dropped)
                    skip -= dropped
                    rows_seen += dropped
                if table.num_rows:
                    yield _conform(table, schema.target, ref.key, rows_seen)
                    rows_seen += table.num_rows
        except DeadlineExceeded as exc:
            raise _timeout(exc) from None
        except (pa.ArrowException, ValueError, OSError, EOFError, BotoCoreError) as exc:
            raise SourceReadError(
                f"could not read '{ref.key}' as {fmt} (after row {rows_seen}): "
                f"{_short(_describe(exc))}"
            ) from None
        except ClientError as exc:
            raise _s3_error(exc, self._location.bucket, ref.key) from None

    def _iter_csv(self, ref: _FileRef, schema: _Schema) -> Iterator[pa.Table]:
        types = {f.name: f.type for f in schema.read} if schema.read is not None else None
        with self._open_stream(ref) as stream:
            head = stream.read(1 << 16)
            source = pa.PythonFile(_PrefixedReader(head, stream), mode="r")
            try:
                reader = self._csv_reader(source, ref, types, _READ_BLOCK_BYTES)
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                    yield pa.Table.from_batches([batch])
            except pa.ArrowInvalid as exc:
                # pyarrow numbers the column; the user knows it by its header name.
                raise ValueError(_name_csv_column(str(exc), self._csv_names(head))) from None

    def _csv_names(self, head: bytes) -> list[str]:
        """The column names of a CSV file from its first bytes (for error messages)."""
        try:
            reader = self._csv_reader(
                pa.BufferReader(head), _FileRef("", None, None), {}, len(head) + 1
            )
        except (pa.ArrowException, SourceReadError):
            return []
        return list(reader.schema.names)

    def _csv_reader(
        self,
        stream: pa.NativeFile,
        ref: _FileRef,
        types: dict[str, pa.DataType] | None,
        block_size: int,
    ) -> Any:
        options = self._config.csv
        delimiter = options.delimiter or ("\t" if self._format() == "tsv" else ",")
        read_options = pacsv.ReadOptions(
            block_size=block_size,
            use_threads=False,
            autogenerate_column_names=not options.has_header,
        )
        # Quoted values may span lines (exports of free text do); the chunker must know.
        parse_options = pacsv.ParseOptions(
            delimiter=delimiter, quote_char=options.quote_char, newlines_in_values=True
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
                f"'{ref.key}' has empty or repeated column names in its header: "
                "give every column a distinct name, or set csv.has_header to false"
            )
        return reader

    def _iter_jsonl(self, ref: _FileRef, schema: _Schema) -> Iterator[pa.Table]:
        with self._open_stream(ref) as stream:
            head = stream.read(1 << 16)
            if not head.strip():
                return
            source = pa.PythonFile(_PrefixedReader(head, stream), mode="r")
            parse_options = pajson.ParseOptions(
                explicit_schema=schema.read, unexpected_field_behavior="infer"
            )
            reader = pajson.open_json(
                source,
                read_options=pajson.ReadOptions(use_threads=False, block_size=_READ_BLOCK_BYTES),
                parse_options=parse_options,
            )
            for batch in reader:
                yield pa.Table.from_batches([batch])

    def _iter_json(self, ref: _FileRef, schema: _Schema) -> Iterator[pa.Table]:
        with self._open_stream(ref) as stream:
            chunk: list[bytes] = []
            for element in _iter_json_elements(stream):
                chunk.append(element)
                if len(chunk) >= _JSON_CHUNK_ROWS:
                    yield _json_lines_table(chunk, schema.read)
                    chunk = []
            if chunk:
                yield _json_lines_table(chunk, schema.read)

    def _iter_parquet(self, ref: _FileRef, skip: int) -> Iterator[pa.Table]:
        with self._open_random(ref) as source:
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
            _check_column_chunks(parquet.metadata, ref.key, groups)
            for batch in parquet.iter_batches(
                batch_size=65_536, row_groups=groups, use_threads=False
            ):
                table = pa.Table.from_batches([batch])
                if drop:
                    cut = min(drop, table.num_rows)
                    table = table.slice(cut)
                    drop -= cut
                if table.num_rows:
                    yield table

    # ------------------------------------------------------------------ discovery

    def _discover_schema(self, files: list[_FileRef]) -> _Schema:
        if self._schema_cache is not None:
            return self._schema_cache
        fmt = self._format()
        first = next((f for f in files if f.size != 0), None)
        if first is None:
            schema = _Schema(target=pa.schema([]), read=pa.schema([]), nullable={})
        elif fmt == "parquet":
            schema = self._parquet_schema(files, first)
        else:
            schema = self._text_schema(first, fmt)
        self._schema_cache = schema
        return schema

    def _text_schema(self, ref: _FileRef, fmt: str) -> _Schema:
        try:
            with self._open_stream(ref) as stream:
                if fmt == "json":
                    inferred = _infer_json(_json_sample(stream))
                elif fmt == "jsonl":
                    inferred = _infer_json(_read_sample(stream))
                else:
                    head = stream.read(1 << 16)
                    if not head.strip():
                        inferred = None
                    else:
                        # The streaming reader infers types from its first block, and its
                        # chunker keeps quoted newlines whole, unlike a cut sample would.
                        source = pa.PythonFile(_PrefixedReader(head, stream), mode="r")
                        reader = self._csv_reader(source, ref, None, SAMPLE_BYTES)
                        inferred = _csv_schema(reader.schema)
        except DeadlineExceeded as exc:
            raise _timeout(exc) from None
        except (pa.ArrowException, ValueError, OSError, EOFError, BotoCoreError) as exc:
            raise SourceReadError(
                f"could not read '{ref.key}' as {fmt}: {_short(_describe(exc))}"
            ) from None
        except ClientError as exc:
            raise _s3_error(exc, self._location.bucket, ref.key) from None
        if inferred is None:
            return _Schema(target=pa.schema([]), read=pa.schema([]), nullable={})
        target, read = inferred
        return _Schema(target=target, read=read, nullable={f.name: True for f in target})

    def _parquet_schema(self, files: list[_FileRef], first: _FileRef) -> _Schema:
        estimate: int | None = 0
        try:
            with self._open_random(first) as source:
                parquet = pq.ParquetFile(source)
                native = parquet.schema_arrow
                first_rows = parquet.metadata.num_rows
                _check_column_chunks(parquet.metadata, first.key, range(parquet.num_row_groups))
            non_empty = [f for f in files if f.size != 0]
            if len(non_empty) > _PARQUET_COUNT_MAX_FILES:
                estimate = None
            else:
                estimate = first_rows
                for ref in non_empty:
                    if ref is first:
                        continue
                    with self._open_random(ref) as source:
                        estimate += pq.ParquetFile(source).metadata.num_rows
        except DeadlineExceeded as exc:
            raise _timeout(exc) from None
        except (pa.ArrowException, ValueError, OSError, EOFError, BotoCoreError) as exc:
            raise SourceReadError(
                f"could not read '{first.key}' as parquet: {_short(_describe(exc))}"
            ) from None
        except ClientError as exc:
            raise _s3_error(exc, self._location.bucket, first.key) from None
        fields = [pa.field(f.name, _target_type(f.type, "parquet"), True) for f in native]
        return _Schema(
            target=pa.schema(fields),
            read=None,
            nullable={f.name: f.nullable for f in native},
            row_count_estimate=estimate,
        )

    # ------------------------------------------------------------------ locations

    def _format(self) -> str:
        if self._format_cache is None:
            self._files()
        if self._format_cache is None:
            raise ValidationFailed(
                "cannot tell the format of the files from their extensions: set 'format' "
                "to csv, tsv, jsonl, json or parquet"
            )
        return self._format_cache

    def _files(self) -> list[_FileRef]:
        """The objects of this source in sorted key order (cached for this connector)."""
        if self._files_cache is not None:
            return self._files_cache
        location = self._location
        files = self._s3_files() if location.scheme == "s3" else [self._http_ref()]
        if not files:
            where = _display_name(location)
            if self._config.pattern:
                where += f" matching '{self._config.pattern}'"
            raise ConnectionFailed(f"no objects match {where}", stage="read")
        if self._format_cache is None:
            formats = {_format_of(f.key) for f in files}
            formats.discard(None)
            if len(formats) > 1:
                raise ValidationFailed(
                    "the selected files have several formats "
                    f"({', '.join(sorted(str(f) for f in formats))}): set 'pattern' to select "
                    "one kind, or set 'format'"
                )
            self._format_cache = formats.pop() if formats else None
            if self._format_cache is None:
                raise ValidationFailed(
                    f"cannot tell the format of '{files[0].key}' from its extension: set "
                    "'format' to csv, tsv, jsonl, json or parquet"
                )
        if self._format_cache == "parquet" and self._config.compression == "gzip":
            raise ValidationFailed(
                "Parquet files carry their own compression: remove compression='gzip'"
            )
        self._files_cache = files
        return files

    def _s3_files(self) -> list[_FileRef]:
        location = self._location
        client = self._client()
        if not location.is_prefix:
            try:
                head = client.head_object(Bucket=location.bucket, Key=location.key)
            except ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    self._probe_bucket()
                    raise ConnectionFailed(
                        f"object '{location.key}' does not exist in bucket "
                        f"'{location.bucket}' (end the url with '/' to read a folder)",
                        stage="read",
                    ) from None
                raise _s3_error(exc, location.bucket, location.key) from None
            except BotoCoreError as exc:
                raise _connect_error(exc, location.bucket) from None
            return [
                _FileRef(
                    key=location.key,
                    size=int(head.get("ContentLength", 0)),
                    etag=head.get("ETag"),
                )
            ]
        list_prefix = location.key + _literal_prefix(self._config.pattern or "")
        files: list[_FileRef] = []
        try:
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=location.bucket, Prefix=list_prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if not self._may_read(key):
                        continue
                    if self._selected(key[len(location.key) :]):
                        files.append(
                            _FileRef(key=key, size=int(item.get("Size", 0)), etag=item.get("ETag"))
                        )
                        if len(files) > _MAX_FILES:
                            raise ValidationFailed(
                                f"more than {_MAX_FILES} objects match: narrow the url or "
                                "the pattern"
                            )
        except ClientError as exc:
            raise _s3_error(exc, location.bucket, location.key) from None
        except BotoCoreError as exc:
            raise _connect_error(exc, location.bucket) from None
        files.sort(key=lambda f: f.key)
        return files

    def _may_read(self, key: str) -> bool:
        """A listed key stays within the reader's allowance (only the landing bucket has one)."""
        if not is_landing_bucket(self._location.bucket, self._settings.bucket_name):
            return True
        lake = self._context.lake
        return lake is not None and lake.permits(key)

    def _selected(self, relative: str) -> bool:
        if not relative or relative.endswith("/"):
            return False  # the prefix itself or a folder marker
        if self._pattern is not None:
            return bool(self._pattern.match(relative))
        base = relative.rsplit("/", 1)[-1]
        if base.startswith(("_", ".")):
            return False  # _SUCCESS, .crc and other job markers next to the data
        fmt = _format_of(relative)
        if self._config.format is None:
            return fmt is not None
        return True

    def _probe_bucket(self) -> None:
        """Tell a missing bucket from a missing key (HEAD answers a bare 404 for both)."""
        try:
            self._client().list_objects_v2(Bucket=self._location.bucket, MaxKeys=1)
        except ClientError as exc:
            raise _s3_error(exc, self._location.bucket, self._location.key) from None

    def _client(self) -> Any:
        if self._s3 is not None:
            return self._s3
        kwargs: dict[str, Any] = {}
        creds = self._config.credentials
        if creds is not None:
            kwargs["aws_access_key_id"] = creds.aws_access_key_id
            kwargs["aws_secret_access_key"] = reveal(creds.aws_secret_access_key)
            if creds.aws_session_token is not None:
                kwargs["aws_session_token"] = reveal(creds.aws_session_token)
            if creds.region:
                kwargs["region_name"] = creds.region
        factory = self._context.s3_client_factory
        if factory is not None:
            self._s3 = factory(**kwargs)
        else:
            import boto3  # the Lambda runtime ships it; imported where a client is needed

            kwargs.setdefault("region_name", self._settings.aws_region)
            self._s3 = boto3.client("s3", endpoint_url=self._settings.aws_endpoint_url, **kwargs)
        return self._s3

    # ------------------------------------------------------------------ streams

    def _open_stream(self, ref: _FileRef) -> pa.NativeFile:
        """A sequential, decompressed byte stream of one file."""
        if self._location.scheme == "s3":
            kwargs: dict[str, Any] = {"Bucket": self._location.bucket, "Key": ref.key}
            if ref.etag:
                kwargs["IfMatch"] = ref.etag  # read the version that was listed, or fail
            try:
                body = self._client().get_object(**kwargs)["Body"]
            except ClientError as exc:
                raise _s3_error(exc, self._location.bucket, ref.key) from None
            read: Callable[[int], bytes] = body.read
            close: Callable[[], None] = body.close
        else:
            response, connection = self._http_get(self._config.plain_url)
            read = self._upstream_read(_capped(response.read, HTTP_MAX_BYTES))
            close = connection.release
        inflate = InflateGuard(ref.key) if self._compression(ref) == "gzip" else None
        if inflate is not None:
            read = inflate.counting(read)
        raw = _BodyReader(read, close)
        stream = pa.PythonFile(io.BufferedReader(raw, _STREAM_BUFFER_BYTES), mode="r")
        if inflate is not None:
            stream = pa.CompressedInputStream(stream, "gzip")
        # Every format passes the checks on its way to the parser (limits.py).
        checked = _CheckedStream(
            stream,
            ref.key,
            deadline=self._context.deadline,
            inflate=inflate,
            json_lines=self._format() == "jsonl",
        )
        stream = pa.PythonFile(checked, mode="r")
        encoding = self._config.csv.encoding
        if self._format() in ("csv", "tsv") and codecs.lookup(encoding).name != "utf-8":
            # pyarrow parses UTF-8 only; transcode other encodings on the way in.
            stream = pa.transcoding_input_stream(stream, encoding, "utf-8")
        return stream

    def _compression(self, ref: _FileRef) -> str:
        if self._config.compression is not None:
            return self._config.compression
        return "gzip" if ref.key.lower().endswith(_GZIP_EXTENSIONS) else "none"

    def _open_random(self, ref: _FileRef) -> pa.NativeFile:
        """A seekable view of one Parquet file (range GETs on S3, a spool file for https)."""
        if self._compression(ref) == "gzip":
            raise SourceReadError(
                f"'{ref.key}' is a gzip-compressed Parquet file; Parquet carries its own "
                "compression, so store the .parquet file itself"
            )
        if self._location.scheme == "s3":
            reader = _S3RangeReader(
                self._client(), self._location.bucket, ref.key, ref.size or 0, ref.etag
            )
            return pa.PythonFile(reader, mode="r")
        response, connection = self._http_get(self._config.plain_url)
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the returned PythonFile
        try:
            read = self._upstream_read(_capped(response.read, HTTP_PARQUET_MAX_BYTES))
            while chunk := read(_STREAM_BUFFER_BYTES):
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        finally:
            connection.release()
        spool.seek(0)
        return pa.PythonFile(spool, mode="r")

    def _upstream_read(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        """`read` of an https body, ended by the deadline: a read the watchdog cut short
        (an error or a premature end) is reported as the timeout it is."""
        deadline = self._context.deadline
        what = f"reading {_display_name(self._location)}"

        def upstream_read(size: int) -> bytes:
            try:
                data = read(size)
            except (OSError, http.client.HTTPException) as exc:
                seconds_left(deadline, what)
                raise OSError(
                    f"the connection broke during the body ({type(exc).__name__})"
                ) from None
            seconds_left(deadline, what)
            return data

        return upstream_read

    def _http_ref(self) -> _FileRef:
        response, connection = self._http_get(self._config.plain_url)
        try:
            length = response.getheader("Content-Length")
            size = int(length) if length and length.isdigit() else None
            if size is not None and size > HTTP_MAX_BYTES:
                raise ConnectionFailed(
                    f"{_display_name(self._location)} is {size} bytes; files over https may be "
                    f"at most {HTTP_MAX_BYTES} bytes (copy it to S3 instead)",
                    stage="read",
                )
            return _FileRef(key=self._location.key, size=size, etag=response.getheader("ETag"))
        finally:
            connection.release()

    def _http_get(self, url: str) -> tuple[http.client.HTTPResponse, _PinnedHTTPConnection]:
        """GET one URL over a connection to the address the SSRF guard approved."""
        current = url
        first_host = urlsplit(url).hostname
        for _ in range(_HTTP_MAX_REDIRECTS + 1):
            parts = urlsplit(current)
            host = parts.hostname or ""
            if parts.scheme == "http" and not self._settings.local_mode:
                raise ConnectionFailed(
                    "plain http is not accepted: use an https:// url", stage="config"
                )
            port = parts.port or (443 if parts.scheme == "https" else 80)
            resolved = resolve_host(
                host,
                port,
                local_mode=self._settings.local_mode,
                allowed_cidrs=self._settings.allowed_cidrs,
            )
            deadline = self._context.deadline
            try:
                left = seconds_left(deadline, f"GET {host}")
            except DeadlineExceeded as exc:
                raise _timeout(exc) from None
            timeout = min(_HTTP_TIMEOUT_SECONDS, left or _HTTP_TIMEOUT_SECONDS)
            connection: _PinnedHTTPConnection
            if parts.scheme == "https":
                connection = _PinnedHTTPSConnection(host, resolved.address, port, timeout, deadline)
            else:
                connection = _PinnedHTTPConnection(host, resolved.address, port, timeout, deadline)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            where = f"{host}{parts.path or '/'}"  # never the query: it may hold a signature
            try:
                connection.request(
                    "GET",
                    target,
                    headers={"Accept-Encoding": "identity", "User-Agent": "datasources-api"},
                )
                response = connection.getresponse()
            except ssl.SSLError:
                connection.release()
                raise ConnectionFailed(
                    f"TLS handshake with {host} failed (certificate not valid for this host?)",
                    stage="tls",
                ) from None
            except TimeoutError:
                connection.release()
                raise ConnectionFailed(f"{host} did not answer in time", stage="timeout") from None
            except (OSError, http.client.HTTPException):
                connection.release()
                if deadline is not None and time.monotonic() >= deadline:
                    # The watchdog ended a connection that was still sending its headers.
                    raise ConnectionFailed(
                        f"{host} did not answer before this function's time ran out",
                        stage="timeout",
                    ) from None
                raise ConnectionFailed(f"could not connect to {host}:{port}", stage="tcp") from None
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location") or ""
                connection.release()
                following = urljoin(current, location)
                follow_parts = urlsplit(following)
                if follow_parts.hostname != first_host or follow_parts.scheme not in (
                    "https",
                    parts.scheme,
                ):
                    raise ConnectionFailed(
                        f"{where} redirects to another host, which this service does not follow",
                        stage="http",
                    )
                current = following
                continue
            if response.status != 200:
                connection.release()
                stage = "permission" if response.status in (401, 403) else "http"
                raise ConnectionFailed(f"GET {where} answered HTTP {response.status}", stage=stage)
            return response, connection
        raise ConnectionFailed(f"{_display_name(self._location)} redirects too often", stage="http")


# ---------------------------------------------------------------------- incremental


class _CursorFilter:
    """Keeps rows whose cursor is above the committed value and tracks the running max."""

    def __init__(self, field: pa.Field, bound: Any) -> None:
        self.field = field
        self.bound = bound  # a pyarrow scalar of the column's type, or None on a first run
        self.max: Any = None

    @classmethod
    def build(cls, state: StreamState, schema: pa.Schema) -> _CursorFilter | None:
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
            table = table.filter(pc.greater(column, self.bound))
            column = table.column(self.field.name)
        if table.num_rows:
            top = pc.max(column).as_py()
            if top is not None and (self.max is None or top > self.max):
                self.max = top
        return table

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


# ---------------------------------------------------------------------- schema helpers


def _csv_schema(native: pa.Schema) -> tuple[pa.Schema, pa.Schema]:
    target = pa.schema([pa.field(f.name, _target_type(f.type, "csv")) for f in native])
    return target, target


def _infer_json(sample: bytes) -> tuple[pa.Schema, pa.Schema] | None:
    """Target and parser schemas for JSON records, from NDJSON sample bytes.

    pyarrow's JSON reader turns date strings into timestamps and drops offsets, so
    temporal columns are read as strings and typed here from their text instead.
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
    target_fields: list[pa.Field] = []
    read_fields: list[pa.Field] = []
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_string(field.type):
            target_fields.append(pa.field(field.name, _temporal_type(column)))
            read_fields.append(pa.field(field.name, pa.string()))
        elif pa.types.is_null(field.type):
            # Never seen with a value: string, and parsed as whatever comes, then cast.
            target_fields.append(pa.field(field.name, pa.string()))
        else:
            target_fields.append(pa.field(field.name, _target_type(field.type, "json")))
            read_fields.append(pa.field(field.name, field.type))
    return pa.schema(target_fields), pa.schema(read_fields)


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


def _target_type(arrow_type: pa.DataType, fmt: str) -> pa.DataType:
    """The type a column is synced as: no null or dictionary columns, timestamps in µs."""
    if pa.types.is_null(arrow_type):
        return pa.string()
    if pa.types.is_dictionary(arrow_type):
        return _target_type(arrow_type.value_type, fmt)
    if pa.types.is_timestamp(arrow_type) and fmt != "parquet":
        return pa.timestamp("us", tz="UTC" if arrow_type.tz else None)
    if pa.types.is_float16(arrow_type):
        return pa.float32()
    return arrow_type


def _normalized_type(arrow_type: pa.DataType) -> NormalizedType:
    t = pa.types
    if t.is_boolean(arrow_type):
        return "boolean"
    if t.is_integer(arrow_type):
        return "integer"
    if t.is_floating(arrow_type):
        return "number"
    if t.is_decimal(arrow_type):
        return "decimal"
    if t.is_date(arrow_type):
        return "date"
    if t.is_time(arrow_type):
        return "time"
    if t.is_timestamp(arrow_type):
        return "timestamp_tz" if arrow_type.tz else "timestamp"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type):
        return "binary"
    if t.is_fixed_size_binary(arrow_type):
        return "binary"
    if t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type):
        return "array"
    if t.is_struct(arrow_type) or t.is_map(arrow_type):
        return "json"
    return "string"


def _cursor_candidates(columns: list[Column]) -> list[str]:
    by_name = {c.name.lower(): c for c in columns if c.type in _CURSOR_TYPES}
    return [by_name[name].name for name in _CURSOR_NAMES if name in by_name]


def _conform(table: pa.Table, target: pa.Schema, key: str, row: int) -> pa.Table:
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
                    f"a value cannot be read as {field.type}: {_short(str(exc))}"
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def _name_csv_column(message: str, names: list[str]) -> str:
    match = _CSV_COLUMN_RE.search(message)
    if match and int(match.group(1)) < len(names):
        return f"column '{names[int(match.group(1))]}': {message}"
    return message


# ---------------------------------------------------------------------- JSON parsing


def _iter_json_elements(stream: pa.NativeFile) -> Iterator[bytes]:
    """Each object of a top-level JSON array (or of a sequence of objects), re-encoded
    as one compact JSON line, without holding the whole document in memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    parser = json.JSONDecoder()
    buffer = ""
    pos = 0
    eof = False
    in_array: bool | None = None
    count = 0

    def fill(at_least: int = _STREAM_BUFFER_BYTES) -> None:
        nonlocal buffer, pos, eof
        data = stream.read(max(at_least, _STREAM_BUFFER_BYTES))
        if not data:
            eof = True
        buffer = buffer[pos:] + decoder.decode(data, final=eof)
        pos = 0

    def next_char() -> str:
        nonlocal pos
        while True:
            # A regex, not a loop per character: 256 MiB of whitespace took 22 s before.
            pos = _JSON_WHITESPACE.match(buffer, pos).end()  # type: ignore[union-attr]
            if pos < len(buffer) or eof:
                return buffer[pos] if pos < len(buffer) else ""
            fill()

    while True:
        char = next_char()
        if in_array is None:
            if char == "":
                return
            in_array = char == "["
            if in_array:
                pos += 1
                char = next_char()
                if char == "]":
                    return
        elif in_array:
            if char == "]":
                return
            if char != ",":
                raise ValueError(f"expected ',' or ']' after element {count} of the JSON array")
            pos += 1
            char = next_char()
        elif char == "":
            return
        if char != "{":
            raise ValueError(
                f"element {count} is not a JSON object: a json file holds an array of "
                "objects or a sequence of objects"
            )
        while True:
            try:
                value, end = parser.raw_decode(buffer, pos)
                break
            except RecursionError:
                raise depth_error(f"element {count}") from None
            except json.JSONDecodeError as exc:
                if eof:
                    raise ValueError(f"malformed JSON in element {count}: {exc.msg}") from None
                if len(buffer) - pos > JSON_MAX_ELEMENT_BYTES:
                    raise ValueError(
                        f"element {count} is malformed or larger than "
                        f"{JSON_MAX_ELEMENT_BYTES} bytes"
                    ) from None
                fill(len(buffer) - pos)  # grow geometrically so a big element parses in O(n)
                if len(buffer) - pos > _JSON_COUNT_AFTER_CHARS:
                    # The element runs on: bound what Python would build from it. The
                    # count may include elements after it, so it errs on refusing.
                    check_json(
                        buffer[pos:].encode(), f"element {count}", max_values=MAX_JSON_VALUES
                    )
        pos = end
        count += 1
        yield json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json_sample(stream: pa.NativeFile) -> bytes:
    lines: list[bytes] = []
    size = 0
    for line in _iter_json_elements(stream):
        lines.append(line)
        size += len(line) + 1
        if size >= SAMPLE_BYTES:
            break
    return b"\n".join(lines)


def _json_lines_table(lines: list[bytes], read_schema: pa.Schema | None) -> pa.Table:
    data = b"\n".join(lines)
    check_json(data, "a JSON element", max_values=None)  # before pyarrow's recursive parser
    return pajson.read_json(
        pa.BufferReader(data),
        read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pajson.ParseOptions(
            explicit_schema=read_schema, unexpected_field_behavior="infer"
        ),
    )


def _read_sample(stream: pa.NativeFile) -> bytes:
    """About SAMPLE_BYTES from the start of a JSON Lines file, cut after the last full line
    (safe for JSON Lines: a newline inside a JSON value is always escaped)."""
    data = stream.read(SAMPLE_BYTES)
    if len(data) < SAMPLE_BYTES:
        return bytes(data)
    while b"\n" not in data and len(data) < _SAMPLE_MAX_LINE_BYTES:
        more = stream.read(SAMPLE_BYTES)
        if not more:
            return bytes(data)
        data += more
    cut = data.rfind(b"\n")
    return bytes(data[: cut + 1]) if cut >= 0 else bytes(data)


# ---------------------------------------------------------------------- streams


class _BodyReader(io.RawIOBase):
    """A raw, read-only file over a `read(n)` callable (boto3 StreamingBody, HTTP body)."""

    def __init__(self, read: Callable[[int], bytes], on_close: Callable[[], None]) -> None:
        super().__init__()
        self._read = read
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size

    def close(self) -> None:
        if not self.closed:
            self._on_close()
        super().close()


class _CheckedStream(io.RawIOBase):
    """The (decompressed) bytes of one file on their way to a parser, checked against
    limits.py: the deadline, the inflated size of gzip input, and for JSON Lines the
    nesting depth of every line before pyarrow's recursive parser sees it."""

    def __init__(
        self,
        source: pa.NativeFile,
        name: str,
        *,
        deadline: float | None,
        inflate: InflateGuard | None,
        json_lines: bool,
    ) -> None:
        super().__init__()
        self._source = source
        self._name = name
        self._deadline = deadline
        self._inflate = inflate
        self._json_lines = json_lines
        self._tail = b""  # the start of a line whose end has not been read yet

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        seconds_left(self._deadline, f"reading '{self._name}'")
        data = self._source.read(len(buffer))
        if self._inflate is not None:
            self._inflate.add(len(data))
        if self._json_lines:
            self._check_lines(data)
        size = len(data)
        buffer[:size] = data
        return size

    def _check_lines(self, data: bytes) -> None:
        # pyarrow parses a line only once its end (a newline or the end of the file) has
        # been read, so checking whole lines as they complete is checking in time.
        what = f"a line of '{self._name}'"
        if not data:
            if self._tail:
                check_json(self._tail, what, max_values=None)
                self._tail = b""
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail += data
            if len(self._tail) > _SAMPLE_MAX_LINE_BYTES:
                raise LimitExceeded(f"{what} is longer than {_SAMPLE_MAX_LINE_BYTES} bytes")
            return
        check_json(self._tail + data[: cut + 1], what, max_values=None)
        self._tail = data[cut + 1 :]

    def close(self) -> None:
        if not self.closed:
            self._source.close()
        super().close()


class _PrefixedReader(io.RawIOBase):
    """Bytes already read from a stream, followed by the rest of it."""

    def __init__(self, head: bytes, rest: pa.NativeFile) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _S3RangeReader(io.RawIOBase):
    """A seekable file over one S3 object, fetched with ranged GETs (for Parquet footers and
    row groups) so only the parts a reader asks for ever leave S3."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str | None) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._etag = etag
        self._pos = 0
        self._cache = b""
        self._cache_start = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = self._size + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        offset = self._pos - self._cache_start
        if not (offset >= 0 and offset + want <= len(self._cache)):
            length = max(want, _RANGE_CHUNK_BYTES)
            self._cache = self._fetch(self._pos, min(self._size, self._pos + length) - 1)
            self._cache_start = self._pos
            offset = 0
        buffer[:want] = self._cache[offset : offset + want]
        self._pos += want
        return want

    def _fetch(self, first: int, last: int) -> bytes:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "Range": f"bytes={first}-{last}",
        }
        if self._etag:
            kwargs["IfMatch"] = self._etag
        body = self._client.get_object(**kwargs)["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data


def _capped(read: Callable[[int], bytes], limit: int) -> Callable[[int], bytes]:
    """`read`, failing once more than `limit` bytes came through (a size cap for https)."""
    total = 0

    def capped_read(size: int) -> bytes:
        nonlocal total
        data = read(size)
        total += len(data)
        if total > limit:
            raise ValueError(f"the file is larger than the {limit} bytes allowed over https")
        return data

    return capped_read


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address the SSRF guard approved, not to a fresh resolution, and
    ends the connection at the deadline however slowly the upstream sends."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, deadline: float | None
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._deadline = deadline
        self._watchdog: threading.Timer | None = None

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self._watchdog = shut_at_deadline(sock, self._deadline)
        return sock

    def connect(self) -> None:
        self.sock = self._open()

    def release(self) -> None:
        """Close, and stop the watchdog. Not `close()`: http.client closes a connection
        whose response says `Connection: close` before its body has been read."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.close()


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    """TLS to the approved address, with the certificate verified for the URL's host."""

    def __init__(
        self, host: str, address: str, port: int, timeout: float, deadline: float | None
    ) -> None:
        self._tls = ssl.create_default_context()
        http.client.HTTPSConnection.__init__(self, host, port, timeout=timeout, context=self._tls)
        self._address = address
        self._deadline = deadline
        self._watchdog = None

    def connect(self) -> None:
        self.sock = self._tls.wrap_socket(self._open(), server_hostname=self.host)


# ---------------------------------------------------------------------- names and errors


def _confine_to_tenant(location: _Location, context: ConnectorContext) -> None:
    """Keep a source inside what its reader may read of the service's landing bucket.

    The service's role can read the landing bucket, which holds every tenant's uploads
    and synced data; the services layer resolved which prefixes this reader may see
    (`context.lake`). The rule follows the bucket, never the credentials: keys supplied
    with the source do not lift it.
    """
    if location.scheme == "s3":
        confine(context.lake, context.settings.bucket_name, location.bucket, location.key)


def _parse_location(url: str, pattern: str | None) -> _Location:
    parts = urlsplit(url)
    if parts.scheme == "s3":
        bucket, key, is_prefix = s3_key(url, pattern)
        # 'keys@bucket' or 'bucket:port' is no bucket name, and must not slip past the
        # landing-bucket comparison either.
        if not bucket or "@" in bucket or ":" in bucket:
            raise ValidationFailed(
                "an s3 url names a bucket: s3://bucket/key or s3://bucket/prefix/ "
                "(keys for another bucket go in 'credentials')"
            )
        return _Location("s3", bucket, key, is_prefix)
    if parts.scheme in ("https", "http"):
        if not parts.hostname:
            raise ValidationFailed("the url has no host")
        if pattern:
            raise ValidationFailed("'pattern' applies to s3 prefixes, not to https urls")
        return _Location(parts.scheme, parts.hostname, unquote(parts.path) or "/", False)
    raise ValidationFailed("url must start with s3:// or https://")


def _display_name(location: _Location) -> str:
    if location.scheme == "s3":
        return f"s3://{location.bucket}/{location.key}"
    return f"{location.scheme}://{location.bucket}{location.key}"


def _split_extension(name: str) -> tuple[str, str | None]:
    """(name without its data extensions, format or None)."""
    lowered = name.lower()
    for gz in _GZIP_EXTENSIONS:
        if lowered.endswith(gz):
            name, lowered = name[: -len(gz)], lowered[: -len(gz)]
            break
    for extension, fmt in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return name[: -len(extension)], fmt
    return name, None


def _format_of(key: str) -> str | None:
    return _split_extension(key.rsplit("/", 1)[-1])[1]


def _stream_name(location: _Location) -> str:
    """The stream's name: the file name without extensions, or the prefix's last folder."""
    segments = [s for s in location.key.split("/") if s]
    if segments:
        raw = segments[-1] if location.is_prefix else _split_extension(segments[-1])[0]
    else:
        raw = location.bucket
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", raw).strip(".") or "file"
    return name[:128]


def _literal_prefix(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: listed with S3's Prefix."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head[: head.rfind("/") + 1]


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex over keys relative to the prefix (`*` stays in a segment)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _check_column_chunks(metadata: Any, key: str, groups: Any) -> None:
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


def _timeout(exc: DeadlineExceeded) -> ConnectionFailed:
    return ConnectionFailed(str(exc), stage="timeout")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _s3_error(exc: ClientError, bucket: str, key: str) -> ConnectionFailed | SourceReadError:
    """A ClientError as a domain error that says what to fix (never the raw response)."""
    code = _error_code(exc)
    if code == "NoSuchBucket":
        return ConnectionFailed(f"bucket '{bucket}' does not exist", stage="read")
    if code in ("NoSuchKey", "404", "NotFound"):
        return ConnectionFailed(f"object '{key}' does not exist in bucket '{bucket}'", stage="read")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "AccountProblem"):
        return ConnectionFailed(
            f"access to s3://{bucket}/{key} was denied: grant s3:GetObject and s3:ListBucket "
            "to the credentials of this source",
            stage="permission",
        )
    if code in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
    ):
        return ConnectionFailed(
            f"S3 rejected the credentials of this source ({code})", stage="auth"
        )
    if code in ("PreconditionFailed", "412"):
        return SourceReadError(
            f"file '{key}' changed while this sync was reading it; run the sync again"
        )
    if code == "PermanentRedirect":
        return ConnectionFailed(
            f"bucket '{bucket}' is in another region: set credentials.region", stage="read"
        )
    return ConnectionFailed(
        f"S3 answered {code or 'an error'} for s3://{bucket}/{key}", stage="read"
    )


def _connect_error(exc: BotoCoreError, bucket: str) -> ConnectionFailed:
    return ConnectionFailed(
        f"could not reach S3 for bucket '{bucket}' ({type(exc).__name__})", stage="tcp"
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
