"""What the SQL engines share, with no driver import: the check/discover/read skeleton
(`SqlConnector`), the read plan (keyset resumption on `(cursor, primary key)` with an
upper bound fixed at the start of a run) and the include/exclude table filters.

No row is dropped by cursor semantics: a first incremental run reads the rows whose
cursor is NULL in a phase of their own (keyed by the primary key, resumable like the
rest), before the rows with a value. Later incremental runs read rows whose cursor is
past the committed one, so they do not read NULL-cursor rows again: `incremental_notes`
counts them into the job's notes, and a full refresh reads them. An engine may offer a
row-version pseudo-column as a cursor (PostgreSQL's `xmin`): it sees updates, and is
read in primary-key order with a filter the engine spells (`ReadPlan.row_version`). Each
engine module (postgres, mysql) subclasses `SqlConnector` and imports its own driver;
`factory` picks the engine. The type tables and caveats are in docs/database-types.md.
"""

from __future__ import annotations

import fnmatch
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from datasources import types
from datasources.connectors.base import (
    Batch,
    CheckResult,
    Column,
    ConnectorContext,
    StreamState,
    Table,
)
from datasources.connectors.sql.connection import sanitize_message
from datasources.connectors.sql.values import (
    FastPathUnavailable,
    arrow_schema,
    from_jsonable,
    rows_to_arrow,
    to_jsonable,
)
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.models.connection import DatabaseConfig, reveal
from datasources.netguard import ResolvedHost, resolve_host

if TYPE_CHECKING:
    import pyarrow as pa

TOKEN_VERSION = 1
# Read phases of an incremental run: NULL-cursor rows by primary key, then the rest.
PHASE_NULLS = "nulls"
PHASE_VALUES = "values"


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
    """The table's cursor columns, best first, by the rules every connector shares."""
    return types.cursor_candidates([(c.name, c.type) for c in columns], primary_key)


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
    # PHASE_NULLS: rows whose cursor is NULL, keyset on the primary key alone.
    phase: str = PHASE_VALUES
    # Offset mode of a first run: NULL cursors first, then the values up to `upper`.
    include_nulls: bool = False
    # The cursor is the engine's row version (`row_version_cursor`): keyset on the
    # primary key; `lower`/`upper` are the engine's transaction positions.
    row_version: bool = False

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
    # A pseudo-column whose value changes on every insert and update (PostgreSQL's
    # xmin), offered as a cursor of tables without an update column; None: no such thing.
    row_version_cursor: str | None = None

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

    def _row_version_position(self) -> Any:
        """The engine's transaction position at the start of a run (row-version cursors)."""
        raise NotImplementedError

    def _row_version_reread(self, plan: ReadPlan) -> bool:
        """Whether a row-version read cannot select the rows changed since `plan.lower`
        (too many transactions since: wraparound) and must read every row."""
        return False

    def _count_null_cursor(self, meta: StreamMeta, cursor: Column) -> int:
        """How many rows of the stream have a NULL cursor now."""
        raise NotImplementedError

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
        row_version = False
        if state.cursor_field:
            cursor = columns.get(state.cursor_field)
            if cursor is None and state.cursor_field in meta.table.cursor_candidates:
                cursor = self._row_version_column(meta)
                row_version = cursor is not None
            if cursor is None:
                raise SourceReadError(
                    f"cursor column '{state.cursor_field}' does not exist in stream "
                    f"'{meta.table.name}' any more; choose another cursor or reset the stream"
                )
        pk = [columns[name] for name in meta.table.primary_key if name in columns]
        # Incremental order is (cursor, pk...): ties on the cursor are broken by the key.
        # A row version does not order rows: it only selects them, read by primary key.
        key = (
            [cursor, *[c for c in pk if c.name != cursor.name]]
            if cursor is not None and not row_version
            else pk
        )
        mode = "keyset" if pk else "offset"
        plan = ReadPlan(mode=mode, cursor=cursor, key=key, row_version=row_version)
        token = state.resume_token
        if token is None:
            plan.lower = state.cursor_state if cursor is not None else None
            if row_version:
                plan.upper = self._guarded(meta.table.name, self._row_version_position)
                plan.upper_json = plan.upper
                if plan.lower is not None and self._row_version_reread(plan):
                    plan.lower = None  # the job's notes say why (incremental_notes)
                return plan
            if cursor is not None and plan.lower is None:
                # A first run: NULL cursors are read too (a later one commits a state).
                if mode == "keyset" and cursor.nullable:
                    plan.phase = PHASE_NULLS
                    plan.key = pk
                plan.include_nulls = mode == "offset" and cursor.nullable
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
        phase = token.get("phase") or PHASE_VALUES
        if phase == PHASE_NULLS:
            key = pk
        if token.get("cursor") != (cursor.name if cursor else None) or token.get("key") != [
            c.name for c in key
        ]:
            raise SourceReadError(
                f"the saved position of stream '{meta.table.name}' was made with another cursor "
                "or primary key; reset the stream's state and sync again"
            )
        plan.key = key
        plan.phase = phase
        plan.include_nulls = bool(token.get("include_nulls"))
        plan.lower = token.get("lower")
        plan.upper_json = token.get("upper")
        if row_version:
            plan.upper = plan.upper_json
        elif cursor is not None:
            plan.upper = from_jsonable(plan.upper_json, cursor)
        last = token.get("last")
        if mode == "keyset":
            if last is not None:
                plan.after = [from_jsonable(v, c) for v, c in zip(last, key, strict=True)]
            elif plan.lower is not None and not row_version:
                plan.after = self._after_from_state(plan, plan.lower)
        plan.offset = int(token.get("offset") or 0)
        return plan

    def _row_version_column(self, meta: StreamMeta) -> Column | None:
        """The row-version pseudo-column, when the engine offers it for this table."""
        name = self.row_version_cursor
        if name is None or name not in meta.table.cursor_candidates:
            return None
        return Column(name=name, type="integer", native_type=name, nullable=False)

    def incremental_notes(self, stream: str, state: StreamState) -> list[str]:
        """What an incremental run from `state` will deliberately not read, and why.

        Asked by the engine when it plans the run: rows whose cursor is NULL are read
        by a first run only, and a row-version read past the engine's horizon reads
        every row again.
        """
        if not state.cursor_field:
            return []
        meta = self._guarded(stream, lambda: self._lookup(stream))
        if meta is None:
            return []
        columns = {c.name: c for c in meta.table.columns}
        cursor = columns.get(state.cursor_field)
        if cursor is None:
            pseudo = self._row_version_column(meta)
            if pseudo is None or pseudo.name != state.cursor_field or state.cursor_state is None:
                return []
            plan = ReadPlan(mode="keyset", cursor=pseudo, key=[], row_version=True)
            plan.lower = state.cursor_state
            plan.upper = self._guarded(stream, self._row_version_position)
            if self._row_version_reread(plan):
                return [
                    f"the last sync's row-version ('{pseudo.name}') position is 2^31 or more "
                    "transactions behind the server (wraparound) or ahead of it (another "
                    "cluster): it cannot tell which rows changed, so every row is read again"
                ]
            return []
        if not cursor.nullable or state.cursor_state is None:
            # A first run reads them (no count: planning runs inside POST /sync's time).
            return []
        nulls = int(self._guarded(stream, lambda: self._count_null_cursor(meta, cursor)))
        if not nulls:
            return []
        return [
            f"{nulls} row(s) with a NULL '{cursor.name}' were not read: an incremental run "
            "reads rows whose cursor is past the last sync's; a full refresh reads them"
        ]

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
            "phase": plan.phase,
            "include_nulls": plan.include_nulls,
        }

    def _batches(
        self, meta: StreamMeta, plan: ReadPlan, state: StreamState, batch_size: int, stream: str
    ) -> Iterator[Batch]:
        columns = meta.table.columns
        schema = arrow_schema(columns)
        index = {c.name: i for i, c in enumerate(columns)}
        cursor_state = state.cursor_state if plan.cursor is not None else None
        if plan.cursor is not None and cursor_state is None:
            # Committed even when no row has a cursor value yet, so that the next run
            # is not a first run (which would read the NULL-cursor rows again).
            cursor_state = {"value": None, "pk": []}
        if plan.row_version:
            # Rows changed after this run's start are read by the next run.
            cursor_state = {"value": plan.upper_json, "pk": []}
        last_json: list[Any] | None = None
        if state.resume_token is not None:
            last_json = state.resume_token.get("last")
        produced = 0
        while True:
            key_idx = [index[c.name] for c in plan.key]
            cursor_idx = (
                index[plan.cursor.name]
                if plan.cursor is not None and plan.phase == PHASE_VALUES and not plan.row_version
                else None
            )
            nothing_to_read = (
                plan.cursor is not None
                and plan.upper is None
                and plan.phase == PHASE_VALUES
                and not plan.include_nulls
                and not plan.row_version
            )
            if not nothing_to_read:
                for records, notes, count, last_row in self._phase_rows(
                    meta, plan, schema, key_idx, cursor_idx, batch_size, stream
                ):
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
            if plan.phase != PHASE_NULLS:
                break
            # The NULL-cursor rows are all read: on to the rows with a value, from the start.
            assert plan.cursor is not None
            plan.phase = PHASE_VALUES
            plan.key = [plan.cursor, *plan.key]
            plan.after = None
            plan.offset = 0
            last_json = None
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

    def _phase_rows(
        self,
        meta: StreamMeta,
        plan: ReadPlan,
        schema: pa.Schema,
        key_idx: list[int],
        cursor_idx: int | None,
        batch_size: int,
        stream: str,
    ) -> Iterator[tuple[pa.Table, list[str], int, Any]]:
        """(records, notes, row count, last row) of each batch of the plan's current phase."""
        columns = meta.table.columns
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
                yield records, notes, count, last_row
        finally:
            # Closing the row generator now (not at garbage collection) ends the
            # server-side cursor / unbuffered result / COPY when the caller stops early.
            try:
                source.close()
            except self.driver_errors:
                self.close()


def _last_row(table: pa.Table, key_idx: Sequence[int], cursor_idx: int | None) -> dict[int, Any]:
    """The last row's key and cursor values of an Arrow batch, by column index, as Python."""
    last = table.num_rows - 1
    wanted = {*key_idx, *([cursor_idx] if cursor_idx is not None else [])}
    return {i: table.column(i)[last].as_py() for i in wanted}
