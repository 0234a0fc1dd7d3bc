"""The `file` connector: one stream of files from an object source, in one format.

It lists the objects (`s3.py`, `https.py`), fixes the run's schema from the first
non-empty file (`formats/`, `schema.py`), and yields resumable batches in sorted key
order, filtered by the cursor on incremental runs (`cursor.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from datasources.connectors.base import (
    Batch,
    CheckResult,
    ConnectorContext,
    StreamState,
    Table,
)
from datasources.connectors.file.cursor import CursorFilter
from datasources.connectors.file.formats import parquet
from datasources.connectors.file.formats.csv import CsvFormat
from datasources.connectors.file.formats.json import JsonFormat
from datasources.connectors.file.formats.jsonl import JsonLinesFormat
from datasources.connectors.file.https import HttpsObject
from datasources.connectors.file.messages import describe, short, timeout_error
from datasources.connectors.file.objects import (
    FileRef,
    ObjectSource,
    compression_of,
    confine_to_tenant,
    display_name,
    format_of,
    parse_location,
    stream_name,
)
from datasources.connectors.file.s3 import S3Objects, s3_error
from datasources.connectors.file.schema import RunSchema, conform, cursor_candidates
from datasources.connectors.file.streams import decoded_stream
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.limits import DeadlineExceeded, LimitExceeded
from datasources.models.connection import FileConfig

_READ_ERRORS = (pa.ArrowException, ValueError, OSError, EOFError, BotoCoreError)
_FORMATS_HINT = "set 'format' to csv, tsv, jsonl, json or parquet"


class FileConnector:
    """Reads files from S3 (one object or a prefix) or one https URL as a single stream."""

    def __init__(self, config: FileConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._location = parse_location(config.plain_url, config.pattern)
        confine_to_tenant(self._location, context)
        self._source: ObjectSource
        if self._location.scheme == "s3":
            self._source = S3Objects(config, context, self._location)
        else:
            self._source = HttpsObject(config.plain_url, self._location, context)
        self._files_cache: list[FileRef] | None = None
        self._format_cache: str | None = config.format
        self._schema_cache: RunSchema | None = None
        self.stream_name = stream_name(self._location)
        if self._format_cache is None and not self._location.is_prefix:
            self._format_cache = format_of(self._location.key)
            if self._format_cache is None:
                raise ValidationFailed(
                    f"cannot tell the format of '{display_name(self._location)}' from its "
                    f"extension: {_FORMATS_HINT}"
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
        columns = schema.columns()
        return [
            Table(
                name=self.stream_name,
                columns=columns,
                primary_key=[],
                cursor_candidates=cursor_candidates(columns),
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
        """Release the object source's connections."""
        self._source.close()

    # ------------------------------------------------------------------ reading

    def _read(self, state: StreamState, batch_size: int) -> Iterator[Batch]:
        files = self._files()
        schema = self._discover_schema(files)
        cursor = CursorFilter.build(state, schema.target)
        token = state.resume_token or {}
        start_key = token.get("file")
        start_row = int(token.get("row") or 0)
        if cursor is not None and token.get("max") is not None:
            cursor.restore(token["max"])
        if cursor is not None:
            cursor.null_rows_left_out = int(token.get("null_rows_left_out") or 0)

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
                        yield self._batch(pending, position, cursor, state)
                        pending, pending_rows = [], 0
        if pending_rows and position is not None:
            yield self._batch(pending, position, cursor, state)
        note = cursor.left_out_note() if cursor is not None else None
        if note is not None and position is not None:
            # Said once, at the end, with the run's whole count (the engine keeps notes).
            last = self._batch([schema.target.empty_table()], position, cursor, state)
            last.notes.append(note)
            yield last

    def _batch(
        self,
        pending: list[pa.Table],
        position: dict[str, Any],
        cursor: CursorFilter | None,
        state: StreamState,
    ) -> Batch:
        records = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
        token = dict(position)
        cursor_state: dict[str, Any] | None = None
        if cursor is not None:
            token["max"] = cursor.max_json()
            token["null_rows_left_out"] = cursor.null_rows_left_out
            # No row above the committed value yet: keep committing the old value.
            cursor_state = {"value": token["max"]} if token["max"] is not None else None
            if cursor_state is None and state.cursor_state is not None:
                cursor_state = dict(state.cursor_state)
        return Batch(records=records, resume_token=token, cursor_state=cursor_state)

    def _iter_file(self, ref: FileRef, schema: RunSchema, skip: int) -> Iterator[pa.Table]:
        """The rows of one file after the first `skip`, cast to the run's schema."""
        if ref.size == 0:
            return
        fmt = self._format()
        rows_seen = 0
        try:
            if fmt == "parquet":
                source: Iterator[pa.Table] = self._parquet_tables(ref, skip)
                rows_seen = skip  # row groups before `skip` are never read
                skip = 0
            else:
                source = self._text_tables(ref, fmt, schema)
            for table in source:
                if skip:
                    dropped = min(skip, table.num_rows)
                    table = table.slice(dropped)
                    skip -= dropped
                    rows_seen += dropped
                if table.num_rows:
                    yield conform(table, schema.target, ref.key, rows_seen)
                    rows_seen += table.num_rows
        except DeadlineExceeded as exc:
            raise timeout_error(exc) from None
        except _READ_ERRORS as exc:
            text = fmt != "parquet" and not isinstance(exc, LimitExceeded)
            misfit = self._find_misfit(ref, fmt, schema) if text else None
            raise misfit or SourceReadError(
                f"could not read '{ref.key}' as {fmt} (after row {rows_seen}): "
                f"{short(describe(exc))}"
            ) from None
        except ClientError as exc:
            raise s3_error(exc, self._location.bucket, ref.key) from None

    def _find_misfit(self, ref: FileRef, fmt: str, schema: RunSchema) -> SourceReadError | None:
        """Which decimal did not fit, by row: pyarrow parses decimals fast but its error
        names neither the row nor always the value, so the file is read again to find
        it. None when no decimal is at fault, or the second read cannot finish."""
        if not any(pa.types.is_decimal(f.type) for f in schema.target):
            return None
        try:
            with self._open_stream(ref) as stream:
                return self._text_format(fmt).find_misfit(stream, ref.key, schema)
        except (DeadlineExceeded, ConnectionFailed, SourceReadError, *_READ_ERRORS):
            return None

    def _text_tables(self, ref: FileRef, fmt: str, schema: RunSchema) -> Iterator[pa.Table]:
        with self._open_stream(ref) as stream:
            yield from self._text_format(fmt).tables(stream, ref.key, schema.read)

    def _parquet_tables(self, ref: FileRef, skip: int) -> Iterator[pa.Table]:
        with self._open_random(ref) as source:
            yield from parquet.tables(source, ref.key, skip)

    def _text_format(self, fmt: str) -> CsvFormat | JsonLinesFormat | JsonFormat:
        if fmt in ("csv", "tsv"):
            return CsvFormat(self._config.csv, tsv=fmt == "tsv")
        if fmt == "jsonl":
            return JsonLinesFormat()
        return JsonFormat()

    # ------------------------------------------------------------------ discovery

    def _discover_schema(self, files: list[FileRef]) -> RunSchema:
        if self._schema_cache is not None:
            return self._schema_cache
        fmt = self._format()
        first = next((f for f in files if f.size != 0), None)
        if first is None:
            schema = RunSchema.empty()
        else:
            try:
                if fmt == "parquet":
                    schema = parquet.run_schema(self._open_random, files, first)
                else:
                    schema = self._text_schema(first, fmt)
            except DeadlineExceeded as exc:
                raise timeout_error(exc) from None
            except _READ_ERRORS as exc:
                raise SourceReadError(
                    f"could not read '{first.key}' as {fmt}: {short(describe(exc))}"
                ) from None
            except ClientError as exc:
                raise s3_error(exc, self._location.bucket, first.key) from None
        self._schema_cache = schema
        return schema

    def _text_schema(self, ref: FileRef, fmt: str) -> RunSchema:
        with self._open_stream(ref) as stream:
            inferred = self._text_format(fmt).infer(stream, ref.key)
        if inferred is None:
            return RunSchema.empty()
        target, read = inferred
        return RunSchema(target=target, read=read, nullable={f.name: True for f in target})

    # ------------------------------------------------------------------ objects

    def _format(self) -> str:
        if self._format_cache is None:
            self._files()
        if self._format_cache is None:
            raise ValidationFailed(
                f"cannot tell the format of the files from their extensions: {_FORMATS_HINT}"
            )
        return self._format_cache

    def _files(self) -> list[FileRef]:
        """The objects of this source in sorted key order (cached for this connector)."""
        if self._files_cache is not None:
            return self._files_cache
        files = self._source.files()
        if not files:
            where = display_name(self._location)
            if self._config.pattern:
                where += f" matching '{self._config.pattern}'"
            raise ConnectionFailed(f"no objects match {where}", stage="read")
        if self._format_cache is None:
            formats = {format_of(f.key) for f in files}
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
                    f"cannot tell the format of '{files[0].key}' from its extension: "
                    f"{_FORMATS_HINT}"
                )
        if self._format_cache == "parquet" and self._config.compression == "gzip":
            raise ValidationFailed(
                "Parquet files carry their own compression: remove compression='gzip'"
            )
        self._files_cache = files
        return files

    def _open_stream(self, ref: FileRef) -> pa.NativeFile:
        """A sequential, decompressed byte stream of one file."""
        read, close = self._source.open(ref)
        fmt = self._format()
        return decoded_stream(
            read,
            close,
            ref.key,
            gzip=compression_of(ref.key, self._config.compression) == "gzip",
            deadline=self._context.deadline,
            json_lines=fmt == "jsonl",
            encoding=self._config.csv.encoding if fmt in ("csv", "tsv") else "utf-8",
        )

    def _open_random(self, ref: FileRef) -> pa.NativeFile:
        """A seekable view of one Parquet file (range GETs on S3, a spool file for https)."""
        if compression_of(ref.key, self._config.compression) == "gzip":
            raise SourceReadError(
                f"'{ref.key}' is a gzip-compressed Parquet file; Parquet carries its own "
                "compression, so store the .parquet file itself"
            )
        return self._source.open_random(ref)
