"""The `database` connector: PostgreSQL (psycopg 3), MySQL and MariaDB (PyMySQL).

`open_database_connector` is the registry's factory; it picks the engine module, which
imports its driver lazily. This module holds what the engines share and contains no
driver import: the read plan (keyset resumption on `(cursor, primary key)` with an upper
bound fixed at the start of a run), the Arrow schema derived from discovered columns,
cursor-candidate heuristics, include/exclude filters, TLS defaults and the sanitising of
driver messages. The type tables and caveats are in docs/database-types.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import fnmatch
import ipaddress
import json
import os
import re
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasources.connectors.base import (
    UPDATE_CURSOR_NAMES,
    Batch,
    CheckResult,
    Column,
    Connector,
    ConnectorContext,
    StreamState,
    Table,
)
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.models.connection import DatabaseConfig, reveal
from datasources.netguard import ResolvedHost, resolve_host

if TYPE_CHECKING:
    import pyarrow as pa

TOKEN_VERSION = 1

INSERT_CURSOR_NAMES = (
    "created_at",
    "inserted_at",
    "created",
    "created_on",
    "creation_time",
    "create_time",
    "date_created",
    "createdat",
    "inserted",
)
_CURSOR_TYPES = {"timestamp", "timestamp_tz", "integer", "date"}


# ---------------------------------------------------------------- helpers


def effective_ssl_mode(config: DatabaseConfig, resolved: ResolvedHost) -> str:
    """The TLS mode to use: the configured one; else `verify-full` with a CA bundle given,
    else `require` unless the host is loopback.

    A database across a network must not be read in clear text by default; a loopback
    server (local mode) usually has no certificate, so it gets `prefer`.
    """
    if config.ssl_mode is not None:
        return config.ssl_mode
    if config.ssl_root_cert:
        return "verify-full"  # a CA given is a CA to verify against
    try:
        address = ipaddress.ip_address(resolved.address)
    except ValueError:
        return "require"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return "prefer" if address.is_loopback else "require"


@contextmanager
def tls_files(config: DatabaseConfig) -> Iterator[dict[str, str]]:
    """The config's PEM material in private temporary files, removed on exit.

    Drivers take certificates and keys as file paths. Keys `root`, `cert`, `key` are
    present when the config has them; the files exist only while the connection is made
    (0600 in a 0700 folder, as libpq insists for a key).
    """
    pems = {
        "root": config.ssl_root_cert,
        "cert": config.ssl_cert,
        "key": reveal(config.ssl_key),
    }
    if not any(pems.values()):
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="ds-tls-") as folder:
        paths: dict[str, str] = {}
        for name, text in pems.items():
            if text:
                path = os.path.join(folder, f"{name}.pem")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                paths[name] = path
        yield paths


# Driver and OpenSSL phrases -> which TLS check failed, most specific first (a name
# mismatch is also a "certificate verify failed" in Python's ssl).
_TLS_FAILURES = (
    (
        ("does not support ssl", "doesn't support it", "ssl is required but", "no tls offered"),
        "the server does not offer TLS",
    ),
    (
        ("does not match host name", "hostname mismatch", "ip address mismatch"),
        "the server certificate is for another name than the host (name mismatch)",
    ),
    (
        ("certificate verify failed", "unable to get local issuer", "self-signed certificate"),
        "the server certificate is not signed by a trusted CA (untrusted CA)",
    ),
    (
        (
            "certificate required",
            "client certificate",
            "certificate authentication failed",
            "alert unknown ca",
            "alert bad certificate",
            "key values mismatch",
        ),
        "the client certificate or key was refused",
    ),
)
_TLS_WORDS = ("ssl", "tls", "certificate")


def tls_failure(where: str, ssl_mode: str, text: str) -> ConnectionFailed | None:
    """A ConnectionFailed(stage='tls') naming the check that failed, if `text` is about TLS."""
    low = text.lower()
    reason = next(
        (why for phrases, why in _TLS_FAILURES if any(phrase in low for phrase in phrases)), None
    )
    if reason is None:
        if not any(word in low for word in _TLS_WORDS):
            return None
        reason = "the TLS handshake failed"
    return ConnectionFailed(
        f"TLS to {where} failed: {reason} (ssl_mode '{ssl_mode}'): {text}",
        stage="tls",
        details={"ssl_mode": ssl_mode},
    )


_URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_KV_SECRET_RE = re.compile(
    r"\b(password|passwd|pwd|secret|token|api[_-]?key)\s*[=:]\s*('[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)


def sanitize_message(text: str, secrets: Sequence[str | None] = ()) -> str:
    """A driver message made safe to show: no DSN/URL, no `password=...`, no known secret."""
    cleaned = _URL_RE.sub("<url>", text)
    cleaned = _KV_SECRET_RE.sub(lambda m: f"{m.group(1)}=<hidden>", cleaned)
    for secret in secrets:
        if secret and len(secret) >= 3:
            cleaned = cleaned.replace(secret, "<hidden>")
    # Drivers add hints over several lines ("Is the server running ..."): keep it short.
    lines = [line.strip() for line in cleaned.strip().splitlines() if line.strip()]
    return " ".join(lines)[:500]


def name_matches(patterns: Sequence[str], stream: str, table: str) -> bool:
    """True when a pattern names the stream (`schema.table`) or the bare table; `*` globs."""
    for pattern in patterns:
        if pattern in (stream, table):
            return True
        if any(ch in pattern for ch in "*?[") and (
            fnmatch.fnmatchcase(stream, pattern) or fnmatch.fnmatchcase(table, pattern)
        ):
            return True
    return False


def is_selected(config: DatabaseConfig, stream: str, table: str) -> bool:
    """Whether the config's `tables` / `exclude_tables` lists keep this table."""
    if config.tables and not name_matches(config.tables, stream, table):
        return False
    return not (config.exclude_tables and name_matches(config.exclude_tables, stream, table))


def cursor_candidates(columns: Sequence[Column], primary_key: Sequence[str]) -> list[str]:
    """Columns that look monotonic, best first: update timestamps, integer key, creation time."""
    by_lower = {c.name.lower(): c for c in columns}
    chosen: list[str] = []

    def add(column: Column | None, types: set[str]) -> None:
        if column is not None and column.type in types and column.name not in chosen:
            chosen.append(column.name)

    for name in UPDATE_CURSOR_NAMES:
        add(by_lower.get(name), {"timestamp", "timestamp_tz", "date", "integer"})
    if len(primary_key) == 1:
        add(next((c for c in columns if c.name == primary_key[0]), None), {"integer"})
    add(by_lower.get("id"), {"integer"})
    for name in INSERT_CURSOR_NAMES:
        add(by_lower.get(name), {"timestamp", "timestamp_tz", "date", "integer"})
    return chosen


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
    return ps is not None and 0 < ps[0] <= 38 and 0 <= ps[1] <= ps[0]


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type a column's values are written with (docs/database-types.md)."""
    import pyarrow as pa

    kind = column.type
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "decimal":
        if decimal_fits_arrow(column):
            ps = decimal_precision(column.native_type)
            assert ps is not None
            return pa.decimal128(ps[0], ps[1])
        if column.native_type.lower().startswith("bigint"):
            return pa.decimal128(20, 0)  # MySQL BIGINT UNSIGNED (no width since 8.0)
        return pa.string()
    if kind == "boolean":
        return pa.bool_()
    if kind == "date":
        return pa.date32()
    if kind == "time":
        return pa.time64("us")
    if kind == "timestamp":
        return pa.timestamp("us")
    if kind == "timestamp_tz":
        return pa.timestamp("us", tz="UTC")
    if kind == "binary":
        return pa.binary()
    # string, json (JSON text) and array (JSON text of the array).
    return pa.string()


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
                raise SourceReadError(
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


class FastPathUnavailable(Exception):
    """Raised by an engine's `_stream_arrow` to go on with `_stream_rows` instead."""


class CsvBatchParser:
    """CSV text of one batch (one line per row, as the server wrote it) -> an Arrow table
    of the stream's schema, or FastPathUnavailable when a value does not parse exactly.

    Binary columns arrive as hex text; tz-aware timestamps as UTC text without an
    offset (read naive, then labelled UTC). A NULL is an unquoted empty field, `""` an
    empty string.
    """

    def __init__(
        self, columns: Sequence[Column], true_values: list[str], false_values: list[str]
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
            if pa.types.is_timestamp(arrow_field.type) and arrow_field.type.tz is not None:
                return pa.timestamp(arrow_field.type.unit)
            return arrow_field.type

        read_types = {f.name: read_type(i, f) for i, f in enumerate(self.schema)}
        # One thread: the sync's writer and uploader threads need the other core.
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


# ---------------------------------------------------------------- read plan


@dataclass
class StreamMeta:
    """What `read` needs about one stream, looked up fresh at the start of each read."""

    table: Table
    schema_name: str
    table_name: str
    # One SQL select expression per column (engine-specific casts), same order as columns.
    select_exprs: list[str] = field(default_factory=list)


@dataclass
class ReadPlan:
    """The query shape of one read call: what to order by and where to start and stop.

    mode "keyset": ORDER BY key (cursor, pk... or pk...); WHERE key > after AND cursor <= upper.
    mode "offset": tables without a primary key; ORDER BY cursor (incremental) or none,
    resumed by row offset (no exactly-once guarantee if the table changes mid-run).
    """

    mode: str
    cursor: Column | None
    key: list[Column]
    upper: Any = None  # typed value (parameter), fixed at the start of the run
    upper_json: Any = None
    lower: dict[str, Any] | None = None  # committed {"value", "pk"} from the previous run
    after: list[Any] | None = None  # typed key values to start strictly after
    offset: int = 0

    @property
    def key_names(self) -> list[str]:
        return [c.name for c in self.key]

    def lower_cursor_value(self) -> Any:
        if self.lower is None or self.cursor is None:
            return None
        return from_jsonable(self.lower.get("value"), self.cursor)


class SqlConnector(ABC):
    """Shared check/discover/read skeleton; engines supply the SQL and the driver calls."""

    engine: str = ""
    # The driver's exception types: converted to SourceReadError while reading.
    driver_errors: tuple[type[Exception], ...] = (OSError,)

    def __init__(self, config: DatabaseConfig, context: ConnectorContext) -> None:
        self.config = config
        self.context = context
        self._resolved: ResolvedHost | None = None
        # True when the engine was asked of the server (no `engine`, no well-known port).
        self.engine_detected = False

    # ---- engine hooks

    @abstractmethod
    def _check(self) -> dict[str, Any]:
        """Connect (fresh), run a trivial query, return details for CheckResult."""

    @abstractmethod
    def _discover(self) -> list[Table]: ...

    @abstractmethod
    def _lookup(self, stream: str) -> StreamMeta | None:
        """The stream's current columns and primary key, or None when it does not exist."""

    @abstractmethod
    def _max_cursor(self, meta: StreamMeta, cursor: Column) -> Any:
        """SELECT max(cursor): the run's upper bound (a typed value or None)."""

    @abstractmethod
    def _stream_rows(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """Rows in plan order, after the plan's position, in lists of at most batch_size."""

    def _stream_arrow(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[pa.Table, None, None] | None:
        """Optional fast path: Arrow tables typed as `arrow_schema(columns)`, else None.

        Same order, position and batch sizes as `_stream_rows`, which serves the reads
        this returns None for. It may raise `FastPathUnavailable` before any table or
        between tables: the read then goes on with `_stream_rows` from the position of
        the last table yielded (the plan's `after` and `offset` follow every batch).
        """
        return None

    @abstractmethod
    def _read_error(self, exc: Exception, stream: str) -> Exception:
        """A driver error raised while reading, as SourceReadError/ConnectionFailed."""

    @abstractmethod
    def close(self) -> None: ...

    # ---- shared

    def resolve(self) -> ResolvedHost:
        """Resolve the host once through the SSRF guard; connections use the address."""
        if self._resolved is None:
            settings = self.context.settings
            self._resolved = resolve_host(
                self.config.host,
                self.config.port,
                local_mode=settings.local_mode,
                allowed_cidrs=settings.allowed_cidrs,
            )
        return self._resolved

    @property
    def password(self) -> str:
        return reveal(self.config.password) or ""

    def sanitize(self, text: str) -> str:
        return sanitize_message(text, [self.password])

    def check(self) -> CheckResult:
        """Connect, authenticate and run a trivial query; ConnectionFailed(stage=...) if not."""
        started = time.perf_counter()
        details = self._check()
        latency = (time.perf_counter() - started) * 1000.0
        return CheckResult(
            reachable=True,
            latency_ms=round(latency, 1),
            details={"engine": self.engine, "engine_detected": self.engine_detected, **details},
        )

    def discover(self) -> list[Table]:
        """Tables and views of the selected schemas, filtered by the include/exclude lists."""
        return self._discover()

    def read(self, stream: str, state: StreamState, batch_size: int) -> Iterator[Batch]:
        """Stream a table's rows in batches with resume tokens (see connectors/base.py)."""
        if batch_size < 1:
            raise ValidationFailed("batch_size must be at least 1")
        meta = self._guarded(stream, lambda: self._lookup(stream))
        if meta is None:
            raise SourceReadError(
                f"stream '{stream}' was not found in the {self.engine} database: the table may "
                "have been dropped or renamed, or it is excluded by the source's table lists; "
                "run schema discovery again"
            )
        plan = self._plan(meta, state)
        return self._batches(meta, plan, state, batch_size, stream)

    def _guarded(self, stream: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (ConnectionFailed, SourceReadError, ValidationFailed):
            raise
        except self.driver_errors as exc:
            raise self._read_error(exc, stream) from None

    def _plan(self, meta: StreamMeta, state: StreamState) -> ReadPlan:
        columns = {c.name: c for c in meta.table.columns}
        cursor: Column | None = None
        if state.cursor_field:
            cursor = columns.get(state.cursor_field)
            if cursor is None:
                raise SourceReadError(
                    f"cursor column '{state.cursor_field}' does not exist in stream "
                    f"'{meta.table.name}' any more; choose another cursor or reset the stream"
                )
        pk = [columns[name] for name in meta.table.primary_key if name in columns]
        # Incremental order is (cursor, pk...): ties on the cursor are broken by the key.
        key = [cursor, *[c for c in pk if c.name != cursor.name]] if cursor is not None else pk
        mode = "keyset" if pk else "offset"
        plan = ReadPlan(mode=mode, cursor=cursor, key=key)
        token = state.resume_token
        if token is None:
            plan.lower = state.cursor_state if cursor is not None else None
            if plan.lower is not None and mode == "keyset":
                plan.after = self._after_from_state(plan, plan.lower)
            if cursor is not None:
                plan.upper = self._guarded(meta.table.name, lambda: self._max_cursor(meta, cursor))
                plan.upper_json = to_jsonable(plan.upper, cursor)
            return plan
        # A continuation: everything that defines the run comes from the token.
        if token.get("v") != TOKEN_VERSION or token.get("mode") != mode:
            raise SourceReadError(
                f"the saved position of stream '{meta.table.name}' does not match the table any "
                "more (its primary key changed?); reset the stream's state and sync again"
            )
        if token.get("cursor") != (cursor.name if cursor else None) or token.get("key") != [
            c.name for c in key
        ]:
            raise SourceReadError(
                f"the saved position of stream '{meta.table.name}' was made with another cursor "
                "or primary key; reset the stream's state and sync again"
            )
        plan.lower = token.get("lower")
        plan.upper_json = token.get("upper")
        if cursor is not None:
            plan.upper = from_jsonable(plan.upper_json, cursor)
        last = token.get("last")
        if mode == "keyset":
            if last is not None:
                plan.after = [from_jsonable(v, c) for v, c in zip(last, key, strict=True)]
            elif plan.lower is not None:
                plan.after = self._after_from_state(plan, plan.lower)
        plan.offset = int(token.get("offset") or 0)
        return plan

    @staticmethod
    def _after_from_state(plan: ReadPlan, committed: dict[str, Any]) -> list[Any] | None:
        assert plan.cursor is not None
        pk_values = committed.get("pk") or []
        value = from_jsonable(committed.get("value"), plan.cursor)
        if value is None:
            return None
        if len(pk_values) == len(plan.key) - 1:
            return [
                value,
                *(from_jsonable(v, c) for v, c in zip(pk_values, plan.key[1:], strict=True)),
            ]
        # The key changed since that state was saved: start after the cursor value alone.
        return [value]

    def _token(self, plan: ReadPlan, last: list[Any] | None) -> dict[str, Any]:
        return {
            "v": TOKEN_VERSION,
            "mode": plan.mode,
            "cursor": plan.cursor.name if plan.cursor else None,
            "key": plan.key_names,
            "upper": plan.upper_json,
            "lower": plan.lower,
            "last": last,
            "offset": plan.offset,
        }

    def _batches(
        self, meta: StreamMeta, plan: ReadPlan, state: StreamState, batch_size: int, stream: str
    ) -> Iterator[Batch]:
        columns = meta.table.columns
        schema = arrow_schema(columns)
        index = {c.name: i for i, c in enumerate(columns)}
        key_idx = [index[c.name] for c in plan.key]
        cursor_idx = index[plan.cursor.name] if plan.cursor is not None else None
        cursor_state = state.cursor_state if plan.cursor is not None else None
        last_json: list[Any] | None = None
        if state.resume_token is not None:
            last_json = state.resume_token.get("last")
        produced = 0
        nothing_to_read = plan.cursor is not None and plan.upper is None
        if not nothing_to_read:
            source: Generator[Any, None, None] | None = self._guarded(
                stream, lambda: self._stream_arrow(meta, plan, batch_size)
            )
            fast = source is not None
            if source is None:
                source = self._stream_rows(meta, plan, batch_size)
            try:
                while True:
                    try:
                        item = next(source, None)
                    except FastPathUnavailable:
                        # Go on with the row path from the last batch yielded.
                        source.close()
                        source = self._stream_rows(meta, plan, batch_size)
                        fast = False
                        continue
                    except (ConnectionFailed, SourceReadError, ValidationFailed):
                        raise
                    except self.driver_errors as exc:
                        raise self._read_error(exc, stream) from None
                    if item is None:
                        break
                    if fast:
                        records: pa.Table = item
                        notes: list[str] = []
                        count = records.num_rows
                        if not count:
                            break
                        last_row: Any = _last_row(records, key_idx, cursor_idx)
                    else:
                        if not item:
                            break
                        records, notes = rows_to_arrow(schema, columns, item)
                        count = len(item)
                        last_row = item[-1]
                    plan.offset += count
                    if key_idx:
                        last_json = [
                            to_jsonable(last_row[i], c)
                            for i, c in zip(key_idx, plan.key, strict=True)
                        ]
                        if plan.mode == "keyset":
                            # Typed as a resumed run would read them from the token.
                            plan.after = [
                                from_jsonable(v, c)
                                for v, c in zip(last_json, plan.key, strict=True)
                            ]
                    if plan.cursor is not None and cursor_idx is not None:
                        cursor_state = {
                            "value": to_jsonable(last_row[cursor_idx], plan.cursor),
                            "pk": (last_json or [])[1:] if plan.mode == "keyset" else [],
                        }
                    produced += count
                    yield Batch(
                        records=records,
                        resume_token=self._token(plan, last_json),
                        cursor_state=cursor_state,
                        notes=notes,
                    )
            finally:
                # Closing the row generator now (not at garbage collection) ends the
                # server-side cursor / unbuffered result / COPY when the caller stops early.
                try:
                    source.close()
                except self.driver_errors:
                    self.close()
        if produced == 0:
            # One empty batch so the engine learns the schema and that the stream is done.
            records, _ = rows_to_arrow(schema, columns, [])
            yield Batch(
                records=records,
                resume_token=self._token(plan, last_json),
                cursor_state=cursor_state,
                notes=["no rows to read"]
                if plan.cursor is None
                else ["no new rows since last sync"],
            )


def _last_row(table: pa.Table, key_idx: Sequence[int], cursor_idx: int | None) -> dict[int, Any]:
    """The last row's key and cursor values of an Arrow batch, by column index, as Python."""
    last = table.num_rows - 1
    wanted = {*key_idx, *([cursor_idx] if cursor_idx is not None else [])}
    return {i: table.column(i)[last].as_py() for i in wanted}


def open_database_connector(config: DatabaseConfig, context: ConnectorContext) -> Connector:
    """The registry factory: the connector for the config's engine (driver imported lazily).

    Without an engine (a port that names none), the server is asked first, through the
    SSRF-checked address, which the connector then keeps using.
    """
    from datasources.connectors.engine_probe import complete_engine

    config, resolved = complete_engine(config, context.settings)
    connector: SqlConnector
    if config.engine == "postgresql":
        from datasources.connectors.postgres import PostgresConnector

        connector = PostgresConnector(config, context)
    elif config.engine in ("mysql", "mariadb"):
        from datasources.connectors.mysql import MySqlConnector

        connector = MySqlConnector(config, context)
    else:
        raise ValidationFailed(f"unknown database engine '{config.engine}'")
    if resolved is not None:
        connector._resolved = resolved
        connector.engine_detected = True
    return connector
