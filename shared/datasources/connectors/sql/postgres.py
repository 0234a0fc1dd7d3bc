"""PostgreSQL engine of the `database` connector (psycopg 3, imported here only).

Keyset reads whose key leads a btree index run `COPY (SELECT ... LIMIT n) TO STDOUT
(FORMAT csv)` statements of a few batches each, cut into batches on the client and
parsed by Arrow's CSV reader straight into the stream's Arrow schema (no Python object
per value), one batch parsed while the next is read. Other reads
(resumed by offset, an unindexed key, a time column) and any batch holding a value text
cannot carry exactly (NaN numeric, infinite or BC dates...) go through a server-side
(named) cursor with binary transfer, from the last batch's position. Either way memory
stays bounded by the batch size whatever the table's size. Catalog facts come from
pg_catalog in one query per kind (relations, columns, primary keys).
"""

from __future__ import annotations

import select
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq, sql

from datasources.connectors.base import Column, ConnectorContext, NormalizedType, Table
from datasources.connectors.sql.base import (
    PHASE_NULLS,
    ReadPlan,
    SqlConnector,
    StreamMeta,
    cursor_candidates,
    is_selected,
)
from datasources.connectors.sql.connection import effective_ssl_mode, tls_failure, tls_files
from datasources.connectors.sql.errors import Cause, pg_cause, stream_error
from datasources.connectors.sql.values import (
    CsvBatchParser,
    decimal_fits_arrow,
)
from datasources.errors import ConnectionFailed
from datasources.models.connection import DatabaseConfig
from datasources.types import is_update_cursor_name

if TYPE_CHECKING:
    import pyarrow as pa

# Base type name (domains resolved) -> normalized type. Anything else is a string.
_PG_TYPES: dict[str, NormalizedType] = {
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "oid": "integer",
    "xid": "integer",
    "float4": "number",
    "float8": "number",
    "numeric": "decimal",
    "money": "decimal",
    "bool": "boolean",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamptz": "timestamp_tz",
    "json": "json",
    "jsonb": "json",
    "bytea": "binary",
}
# Text types psycopg already returns as str; other "string" types are cast to text in SQL
# so the value is PostgreSQL's own canonical text (uuid, inet, interval, timetz, enums,
# extension types...). Reads use binary transfer, and a type without a binary loader in
# psycopg (citext, hstore, PostGIS...) would otherwise arrive as raw bytes.
_NATIVE_TEXT = {"text", "varchar", "bpchar"}

_SYSTEM_SCHEMA_FILTER = (
    "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%' "
    "AND has_schema_privilege(n.oid, 'USAGE')"
)
_RELKINDS = "('r', 'p', 'v', 'm', 'f')"
_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized_view", "f": "foreign_table"}
# Relations whose rows carry xmin as written by their own transactions.
_ROW_VERSION_KINDS = ("r", "p")
# age() compares 32-bit transaction ids modulo 2^32: a distance from the last run at or
# past 2^31 cannot be told from one in the future. The margin covers the transactions
# that start while a run (possibly chained over many invocations) is reading.
_XMIN_MAX_DISTANCE = 2**31 - 2**26


def normalize_pg_type(base_typname: str, typcategory: str) -> NormalizedType:
    """The normalized type of a column from its base type name and category."""
    if typcategory == "A":
        return "array"
    return _PG_TYPES.get(base_typname, "string")


def _ident(name: str) -> sql.Identifier:
    """An identifier for a statement run with parameters (every read statement is).

    psycopg reads each `%` of the composed text as a placeholder, quoted names included,
    so a table `pct%s` or a column `100%` would break the statement: `%` is doubled,
    which the driver turns back into one `%` when it binds the parameters.
    """
    return sql.Identifier(name.replace("%", "%%"))


def _quoted(name: str) -> str:
    """An identifier as PostgreSQL's quote_ident would show it in a statement to run."""
    if (
        name
        and (name[0].isalpha() or name[0] == "_")
        and all(ch.isalnum() or ch == "_" for ch in name)
        and name == name.lower()
    ):
        return name
    return '"' + name.replace('"', '""') + '"'


def _quoted_stream(stream: str) -> str:
    """`schema.table` of a stream name, each part quoted where it needs it (for messages)."""
    schema, _, table = stream.partition(".")
    return f"{_quoted(schema)}.{_quoted(table)}" if table else _quoted(schema)


def _select_expr(column: Column, base_typname: str) -> sql.Composable:
    ident = sql.SQL("t.") + _ident(column.name)
    if column.type == "json":
        expr: sql.Composable = sql.SQL("{}::text").format(ident)
    elif column.type == "array":
        # JSON text keeps nesting, order and NULL elements of any dimension.
        expr = sql.SQL("to_json({})::text").format(ident)
    elif column.type == "decimal" and base_typname == "money":
        expr = sql.SQL("{}::numeric::text").format(ident)
    elif column.type == "decimal" and not decimal_fits_arrow(column):
        # Written as text anyway: PostgreSQL's own text is exact and never in E-notation.
        expr = sql.SQL("{}::text").format(ident)
    elif column.type == "string" and base_typname not in _NATIVE_TEXT:
        expr = sql.SQL("{}::text").format(ident)
    else:
        expr = ident
    return sql.SQL("{} AS {}").format(expr, _ident(column.name))


# Column kinds the COPY (CSV) path reads; a stream with any other kind (time: PostgreSQL's
# 24:00:00 and the loader's handling of it) is read by the row path.
_COPY_KINDS = {
    "integer",
    "number",
    "decimal",
    "boolean",
    "date",
    "timestamp",
    "timestamp_tz",
    "string",
    "json",
    "array",
    "binary",
}


def _copy_expr(column: Column, base_typname: str) -> sql.Composable:
    """The select expression of a column in the COPY path: its text must parse exactly."""
    ident = sql.SQL("t.") + _ident(column.name)
    if column.type == "binary":
        # Hex whatever bytea_output says; decoded after parsing.
        expr: sql.Composable = sql.SQL("encode({}, 'hex')").format(ident)
    elif column.type == "number" and base_typname == "float4":
        # The exact float8 of the float4 value, as binary transfer gives it; float8 text
        # is the shortest exact form (extra_float_digits >= 1, PostgreSQL 12+).
        expr = sql.SQL("{}::float8").format(ident)
    else:
        return _select_expr(column, base_typname)
    return sql.SQL("{} AS {}").format(expr, _ident(column.name))


# Batches one COPY statement may span (see PostgresConnector._copy_tables).
_BATCHES_PER_COPY = 8
# A batch also ends once it holds this much CSV text, whatever batch_size says: the
# memory of a sync then stays bounded on wide rows too (50,000 rows of 40 columns are
# 20 MB of text, and several batches are in flight). 8 MiB keeps narrow batches whole
# and is as fast as unbounded batches on wide ones (make bench).
_MAX_BATCH_BYTES = 8 << 20


def _read_copy(
    conn: psycopg.Connection[Any],
    copy: psycopg.Copy,
    data: bytearray,
    limit: int,
    max_bytes: int,
) -> tuple[int, bool]:
    """Append up to `limit` rows (fewer once `data` holds `max_bytes`) of a COPY TO to
    `data`: (rows, whether the COPY ended).

    One COPY message is one row. Rows libpq already holds are taken with non-blocking
    PQgetCopyData calls, which cost a fraction of psycopg's `Copy.read()` per row; only
    when libpq's buffer is empty does `Copy.read()` wait for the socket, so timeouts and
    interrupts work as they always do. Stopping at `limit` leaves the COPY open: the
    server goes on producing into the socket while the caller parses this batch.
    """
    pgconn = conn.pgconn
    get = pgconn.get_copy_data
    read = copy.read
    rows = 0
    while rows < limit and len(data) < max_bytes:
        nbytes, chunk = get(1)
        if nbytes > 0:
            data += chunk
            rows += 1
        elif nbytes == 0:
            waited = read()
            if not waited:
                return rows, True
            data += waited
            rows += 1
        else:
            break
    else:
        return rows, False
    # -1: the end of the COPY was in libpq's buffer too; collect its result here
    # (psycopg raises on -2). The final result says whether the statement succeeded.
    results = []
    while True:
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [], 1.0)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        results.append(result)
    for result in results:
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    return rows, True


class PostgresConnector(SqlConnector):
    """A PostgreSQL database; streams are named `schema.table`."""

    engine = "postgresql"
    driver_errors = (psycopg.Error, OSError)
    row_version_cursor = "xmin"

    def __init__(self, config: DatabaseConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._conn: psycopg.Connection[Any] | None = None
        self._select_exprs: dict[str, list[sql.Composable]] = {}
        self._copy_exprs: dict[str, list[sql.Composable]] = {}
        # The connection whose session settings were found fit for the COPY path.
        self._copy_checked: psycopg.Connection[Any] | None = None
        self._copy_fit = False
        self._server_version = 0
        # Unique cursor names: a read abandoned without close must not block the next one.
        self._cursor_seq = 0

    # ---- connection

    def _connect(self, statement_timeout_s: int | None = None) -> psycopg.Connection[Any]:
        resolved = self.resolve()
        sslmode = effective_ssl_mode(self.config, resolved)
        params: dict[str, Any] = {
            # host keeps the name for TLS verification; hostaddr is the address the
            # SSRF guard checked, so libpq never resolves the name again.
            "host": self.config.host,
            "hostaddr": resolved.address,
            "port": self.config.port,
            "dbname": self.config.database,
            "user": self.config.username,
            "password": self.password,
            "connect_timeout": self.config.connect_timeout,
            "sslmode": sslmode,
            "application_name": "datasources",
            # A peer that vanishes without a FIN is noticed instead of hanging a read.
            "keepalives": 1,
            "keepalives_idle": 15,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": (self.config.statement_timeout_seconds + 30) * 1000,
            "autocommit": True,
        }
        try:
            with tls_files(self.config) as files:
                if sslmode in ("verify-ca", "verify-full"):
                    params["sslrootcert"] = files.get("root", "system")
                if "cert" in files:
                    params["sslcert"] = files["cert"]
                    params["sslkey"] = files["key"]
                conn = psycopg.connect(**params)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        try:
            timeout_ms = (statement_timeout_s or self.config.statement_timeout_seconds) * 1000
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        "SET statement_timeout = {}; SET default_transaction_read_only = on; "
                        "SET TimeZone = 'UTC'; SET synchronize_seqscans = off; "
                        "SET idle_in_transaction_session_timeout = {}"
                    ).format(sql.Literal(timeout_ms), sql.Literal(timeout_ms * 3))
                )
        except psycopg.Error as exc:
            conn.close()
            raise self._connect_error(exc) from None
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _drop(self) -> None:
        try:
            self.close()
        except psycopg.Error:
            self._conn = None

    def _connect_error(self, exc: psycopg.Error) -> ConnectionFailed:
        text = self.sanitize(str(exc))
        low = text.lower()
        state = getattr(exc, "sqlstate", None) or ""
        where = f"{self.config.host}:{self.config.port}"
        user = self.config.username
        if state in ("28P01",) or "password authentication failed" in low:
            return ConnectionFailed(
                f"authentication failed for user '{user}': check the username and password",
                stage="auth",
            )
        if state == "3D000" or ("database" in low and "does not exist" in low):
            return ConnectionFailed(
                f"database '{self.config.database}' does not exist on {where}: check the "
                "database name",
                stage="database",
            )
        if "pg_hba.conf" in low or state == "28000":
            return ConnectionFailed(
                f"the server at {where} does not accept user '{user}' from this address "
                f"(pg_hba.conf or role settings): {text}",
                stage="auth",
            )
        if state == "42501" or "permission denied" in low:
            return ConnectionFailed(f"user '{user}' lacks a permission: {text}", stage="permission")
        tls = tls_failure(where, effective_ssl_mode(self.config, self.resolve()), text)
        if tls is not None:
            return tls
        if "timeout expired" in low or "timed out" in low:
            return ConnectionFailed(
                f"connecting to {where} timed out after {self.config.connect_timeout} s: check "
                "the host, port and firewall rules",
                stage="timeout",
            )
        if "connection refused" in low:
            return ConnectionFailed(
                f"connection to {where} was refused: no PostgreSQL server listens on that port",
                stage="tcp",
            )
        if "could not translate host name" in low:
            return ConnectionFailed(f"could not resolve host '{self.config.host}'", stage="dns")
        if "no route to host" in low or "network is unreachable" in low:
            return ConnectionFailed(f"{where} is unreachable: {text}", stage="tcp")
        if state == "57014":
            return ConnectionFailed(f"the query timed out: {text}", stage="timeout")
        if isinstance(exc, psycopg.OperationalError) and "connection" in low:
            return ConnectionFailed(f"could not connect to {where}: {text}", stage="tcp")
        return ConnectionFailed(f"query failed on {where}: {text}", stage="query")

    def _read_error(self, exc: Exception, stream: str) -> Exception:
        if not isinstance(exc, psycopg.Error):
            # A socket error under the driver: the session is gone.
            self._drop()
            return stream_error(
                "connection_lost",
                engine="PostgreSQL",
                stream=stream,
                text=type(exc).__name__,
                remedy="",
                statement_timeout=self.config.statement_timeout_seconds,
            )
        state = getattr(exc, "sqlstate", None)
        text = self.sanitize(str(exc))
        session_ended = self._conn is None or self._conn.closed
        self._drop()
        if not state and isinstance(exc, psycopg.DataError):
            # Raised by a loader, not the server: e.g. 'infinity' dates or year > 9999.
            cause: Cause = "invalid_value"
        else:
            cause = pg_cause(state, session_ended=session_ended)
        return stream_error(
            cause,
            engine="PostgreSQL",
            stream=stream,
            text=text,
            remedy=self._remedy(cause, stream, text),
            statement_timeout=self.config.statement_timeout_seconds,
        )

    def _remedy(self, cause: Cause, stream: str, text: str) -> str:
        relation = _quoted_stream(stream)
        if cause == "permission":
            user = _quoted(self.config.username)
            return f"run GRANT SELECT ON {relation} TO {user} as its owner"
        if cause == "not_ready" and "materialized view" in text.lower():
            return f"run REFRESH MATERIALIZED VIEW {relation} on the source"
        return "fix the relation on the source"

    # ---- check

    def _check(self) -> dict[str, Any]:
        # A connection of its own whose statements are bounded by connect_timeout, so a
        # test-connection request can never wait on a stuck server for long.
        conn = self._connect(statement_timeout_s=self.config.connect_timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('server_version'), current_database(), s.version, "
                    "s.cipher FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
                )
                row = cur.fetchone()
            tls = bool(conn.pgconn.ssl_in_use)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        finally:
            conn.close()
        assert row is not None
        return {
            "server_version": row[0],
            "database": row[1],
            "tls": tls,
            "tls_version": row[2] if tls else None,
            "tls_cipher": row[3] if tls else None,
            "ssl_mode": effective_ssl_mode(self.config, self.resolve()),
        }

    # ---- discover

    def _schema_filter(self) -> tuple[sql.Composable, dict[str, Any]]:
        schemas = self.config.selected_schemas
        if schemas:
            return sql.SQL("n.nspname = ANY(%(schemas)s)"), {"schemas": schemas}
        return sql.SQL(_SYSTEM_SCHEMA_FILTER), {}

    def _catalog(
        self, rel_filter: sql.Composable, params: dict[str, Any]
    ) -> list[tuple[Table, str, str, list[sql.Composable], list[sql.Composable]]]:
        """(table, schema, name, select and COPY expressions) of the relations kept."""
        conn = self._connection()
        rel_where = sql.SQL(
            "c.relkind IN " + _RELKINDS + " AND NOT c.relispartition AND {}"
        ).format(rel_filter)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT n.nspname, c.relname, c.relkind, c.reltuples::float8, "
                    "has_table_privilege(c.oid, 'SELECT'), c.relispopulated "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE {} ORDER BY n.nspname, c.relname"
                ).format(rel_where),
                params,
            )
            relations = cur.fetchall()
            cur.execute(
                sql.SQL(
                    "SELECT n.nspname, c.relname, a.attname, "
                    "format_type(a.atttypid, a.atttypmod), a.attnotnull, bt.typname, "
                    "bt.typcategory "
                    "FROM pg_attribute a "
                    "JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_type t ON t.oid = a.atttypid "
                    "JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' "
                    "THEN t.typbasetype ELSE t.oid END "
                    "WHERE {} AND a.attnum > 0 AND NOT a.attisdropped "
                    "ORDER BY n.nspname, c.relname, a.attnum"
                ).format(rel_where),
                params,
            )
            column_rows = cur.fetchall()
            cur.execute(
                sql.SQL(
                    "SELECT n.nspname, c.relname, a.attname "
                    "FROM pg_constraint k "
                    "JOIN pg_class c ON c.oid = k.conrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord) "
                    "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum "
                    "WHERE k.contype = 'p' AND {} "
                    "ORDER BY n.nspname, c.relname, u.ord"
                ).format(rel_where),
                params,
            )
            pk_rows = cur.fetchall()

        columns: dict[tuple[str, str], list[Column]] = {}
        exprs: dict[tuple[str, str], list[sql.Composable]] = {}
        copy_exprs: dict[tuple[str, str], list[sql.Composable]] = {}
        for schema, rel, name, native, notnull, base, category in column_rows:
            column = Column(
                name=name,
                type=normalize_pg_type(base, category),
                native_type=native,
                nullable=not notnull,
            )
            columns.setdefault((schema, rel), []).append(column)
            exprs.setdefault((schema, rel), []).append(_select_expr(column, base))
            copy_exprs.setdefault((schema, rel), []).append(_copy_expr(column, base))
        pks: dict[tuple[str, str], list[str]] = {}
        for schema, rel, name in pk_rows:
            pks.setdefault((schema, rel), []).append(name)

        out = []
        for schema, rel, kind, reltuples, may_select, populated in relations:
            cols = columns.get((schema, rel), [])
            pk = pks.get((schema, rel), [])
            estimate = None
            if kind in ("r", "m", "p") and reltuples is not None and reltuples >= 0:
                estimate = int(reltuples)
            name = f"{schema}.{rel}"
            # Listed even when unreadable, with why: a table left out without a word
            # would look synced when it was never read.
            reason = None
            if not may_select:
                reason = f"permission denied: {self._remedy('permission', name, '')}"
            elif not populated:
                reason = (
                    "the materialized view has not been populated: "
                    f"{self._remedy('not_ready', name, 'materialized view')}"
                )
            candidates = cursor_candidates(cols, pk)
            if kind in _ROW_VERSION_KINDS and not any(map(is_update_cursor_name, candidates)):
                # No column says "updated": the row version sees updates where a key
                # or a creation time sees inserts only. (No user column is named xmin.)
                candidates = ["xmin", *candidates]
            table = Table(
                name=name,
                columns=cols,
                primary_key=pk,
                cursor_candidates=candidates,
                row_count_estimate=estimate,
                kind=_KINDS.get(kind, "table"),
                readable=reason is None,
                reason=reason,
            )
            out.append(
                (
                    table,
                    schema,
                    rel,
                    exprs.get((schema, rel), []),
                    copy_exprs.get((schema, rel), []),
                )
            )
        return out

    def _discover(self) -> list[Table]:
        where, params = self._schema_filter()
        try:
            catalog = self._catalog(where, params)
        except psycopg.Error as exc:
            self._drop()
            raise self._connect_error(exc) from None
        return [t for t, _, rel, _, _ in catalog if is_selected(self.config, t.name, rel)]

    # ---- read

    def _lookup(self, stream: str) -> StreamMeta | None:
        where, params = self._schema_filter()
        # Names may contain dots, so match the whole `schema.table` text, not a split.
        where = sql.SQL("{} AND n.nspname || '.' || c.relname = %(stream)s").format(where)
        catalog = self._catalog(where, {**params, "stream": stream})
        for table, schema, rel, exprs, copy_exprs in catalog:
            if table.name == stream and is_selected(self.config, stream, rel):
                self._select_exprs[stream] = exprs
                self._copy_exprs[stream] = copy_exprs
                return StreamMeta(table=table, schema_name=schema, table_name=rel)
        return None

    @staticmethod
    def _relation(meta: StreamMeta) -> sql.Composable:
        return sql.SQL("{}.{}").format(_ident(meta.schema_name), _ident(meta.table_name))

    def _max_cursor(self, meta: StreamMeta, cursor: Column) -> Any:
        """The run's upper bound, held below the start of the oldest transaction still
        writing to the table.

        A row's timestamp cursor is usually its transaction's start (now()); such a
        transaction can commit after this run fixed its bound, with a cursor below it:
        the next run would start past the row and miss it for good. A transaction that
        has written to the table holds RowExclusiveLock on it until it ends, so rows
        from its start on wait for the next run. Needs its xact_start to be visible
        (the same role, or pg_read_all_stats); only timestamp cursors are held.
        """
        conn = self._connection()
        column = _ident(cursor.name)
        query = sql.SQL("SELECT max({}) FROM {}").format(column, self._relation(meta))
        params: list[Any] = []
        if cursor.native_type.startswith("timestamp"):
            query = sql.SQL(
                "SELECT max({col}) FROM {rel} WHERE {col} < coalesce(("
                "SELECT min(a.xact_start) FROM pg_locks l JOIN pg_stat_activity a"
                " ON a.pid = l.pid WHERE l.locktype = 'relation' AND l.relation = %s::regclass"
                " AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
                "), 'infinity')"
            ).format(col=column, rel=self._relation(meta))
            # A bound value, not statement text: the name as written, `%` not doubled.
            relation = sql.SQL("{}.{}").format(
                sql.Identifier(meta.schema_name), sql.Identifier(meta.table_name)
            )
            params.append(relation.as_string(conn))
        with conn.cursor() as cur:
            # Every read statement runs with a parameter list: see _ident.
            cur.execute(query, params)
            row = cur.fetchone()
        return row[0] if row else None

    def _row_version_position(self) -> int:
        """The oldest transaction still running now, as a 64-bit position (epoch included).

        Every transaction before it has ended, so the rows it wrote are visible to this
        run; the next run selects the rows written from this position on.
        """
        conn = self._connection()
        function = (
            "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            if conn.info.server_version >= 130000
            else "txid_snapshot_xmin(txid_current_snapshot())"
        )
        with conn.cursor() as cur:
            cur.execute(f"SELECT {function}", ())
            row = cur.fetchone()
        assert row is not None
        return int(row[0])

    def _row_version_reread(self, plan: ReadPlan) -> bool:
        lower = (plan.lower or {}).get("value")
        # A position ahead of now: the state came from another cluster (a restore).
        return lower is None or not 0 <= int(plan.upper) - int(lower) < _XMIN_MAX_DISTANCE

    def _count_null_cursor(self, meta: StreamMeta, cursor: Column) -> int:
        conn = self._connection()
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
            self._relation(meta), _ident(cursor.name)
        )
        with conn.cursor() as cur:
            cur.execute(query, ())
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def _query(
        self, meta: StreamMeta, plan: ReadPlan, exprs: list[sql.Composable] | None = None
    ) -> tuple[sql.Composed, list[Any]]:
        if exprs is None:
            exprs = self._select_exprs[meta.table.name]
        where: list[sql.Composable] = []
        params: list[Any] = []
        cursor = plan.cursor
        lower = plan.lower.get("value") if plan.row_version and plan.lower else None
        if lower is not None:
            # Rows written by the transactions from the last run's position on, by their
            # distance from now: xid has no order, age() is modulo 2^32 (see
            # _XMIN_MAX_DISTANCE). Transactions still open then are read again.
            where.append(sql.SQL("age(t.xmin) <= age(%s::text::xid)"))
            params.append(str(int(lower) % 2**32))
        elif plan.row_version:
            pass  # a first run or a re-read: every row
        elif cursor is not None and plan.phase == PHASE_NULLS:
            where.append(sql.SQL("{} IS NULL").format(sql.SQL("t.") + _ident(cursor.name)))
        elif cursor is not None and plan.include_nulls:
            ident = sql.SQL("t.") + _ident(cursor.name)
            where.append(sql.SQL("({} IS NULL OR {} <= %s)").format(ident, ident))
            params.append(plan.upper)
        elif cursor is not None:
            ident = sql.SQL("t.") + _ident(cursor.name)
            where.append(sql.SQL("{} IS NOT NULL AND {} <= %s").format(ident, ident))
            params.append(plan.upper)
            if plan.mode == "offset":
                after = plan.lower_cursor_value()
                if after is not None:
                    where.append(sql.SQL("{} > %s").format(ident))
                    params.append(after)
        if plan.mode == "keyset" and plan.after:
            # Row comparison: PostgreSQL turns it into one index range scan on the key.
            key_cols = [sql.SQL("t.") + _ident(c.name) for c in plan.key[: len(plan.after)]]
            where.append(
                sql.SQL("({}) > ({})").format(
                    sql.SQL(", ").join(key_cols),
                    sql.SQL(", ").join(sql.Placeholder() * len(plan.after)),
                )
            )
            params.extend(plan.after)
        order: list[sql.Composable] = [sql.SQL("t.") + _ident(c.name) for c in plan.key]
        if plan.include_nulls and order:
            # NULL cursors first, so the last row read holds the highest value.
            order[0] = order[0] + sql.SQL(" NULLS FIRST")
        query = sql.SQL("SELECT {} FROM {} AS t").format(
            sql.SQL(", ").join(exprs), self._relation(meta)
        )
        if where:
            query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        if order:
            query += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order)
        if plan.mode == "offset" and plan.offset:
            query += sql.SQL(" OFFSET %s")
            params.append(plan.offset)
        return query, params

    def _stream_rows(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        conn = self._connection()
        query, params = self._query(meta, plan)
        finished = False
        try:
            # Binary transfer: numbers, timestamps and bytea load without text parsing.
            self._cursor_seq += 1
            name = f"ds_read_{self._cursor_seq}"
            with conn.transaction(), conn.cursor(name=name, binary=True) as cur:
                cur.itersize = batch_size
                cur.execute(query, params)
                while True:
                    rows = cur.fetchmany(batch_size)
                    if not rows:
                        break
                    yield rows
                    if len(rows) < batch_size:
                        break
            finished = True
        finally:
            if not finished and self._conn is not None and self._conn.closed:
                self._conn = None

    # ---- read: COPY

    def _copy_session_fit(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether this session's text output parses back exactly (checked once per connection)."""
        if self._copy_checked is not conn:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('DateStyle') LIKE 'ISO%%' "
                    "AND current_setting('extra_float_digits')::int >= 1, "
                    "current_setting('server_version_num')::int"
                )
                row = cur.fetchone()
            self._copy_fit = (
                row is not None
                and bool(row[0])
                and int(row[1]) >= 120000
                and conn.info.encoding == "utf-8"
            )
            self._server_version = int(row[1]) if row else 0
            self._copy_checked = conn
        return self._copy_fit

    def _key_indexed(self, conn: psycopg.Connection[Any], meta: StreamMeta, key: list[str]) -> bool:
        """Whether a btree index leads with the key, so each batch is one short index scan.

        A key the index covers only in part (cursor, pk...) is served with an incremental
        sort (PostgreSQL 13+). Without such an index every batch would sort the rest of
        the table: those reads keep one server-side cursor (the row path).
        """
        with conn.cursor() as cur:
            cur.execute(
                "SELECT array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) "
                "WITH ORDINALITY AS u(attnum, ord) LEFT JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = u.attnum ORDER BY u.ord) "
                "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
                "JOIN pg_am am ON am.oid = ic.relam "
                "JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND i.indisvalid "
                "AND i.indpred IS NULL AND am.amname = 'btree'",
                (meta.schema_name, meta.table_name),
            )
            indexes = [list(row[0]) for row in cur.fetchall()]
        for columns in indexes:
            prefix = 0
            while prefix < min(len(columns), len(key)) and columns[prefix] == key[prefix]:
                prefix += 1
            if prefix == len(key) or (prefix >= 1 and self._server_version >= 130000):
                return True
        return False

    def _stream_arrow(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[pa.Table, None, None] | None:
        columns = meta.table.columns
        if plan.mode != "keyset" or not plan.key:
            return None  # resumed by offset: one server-side cursor reads it in one pass
        if not columns or any(c.type not in _COPY_KINDS for c in columns):
            return None
        conn = self._connection()
        if not self._copy_session_fit(conn) or not self._key_indexed(conn, meta, plan.key_names):
            return None
        return self._copy_tables(meta, plan, batch_size)

    def _copy_tables(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[pa.Table, None, None]:
        """Arrow tables of batch_size rows, from COPYs of a few batches each.

        One COPY spans up to _BATCHES_PER_COPY batches: while a batch is parsed (and
        waits for the engine to take it), the server goes on producing the next one
        instead of waiting for the next statement. A COPY is bounded, so the statement
        timeout still bounds a few batches rather than the whole read, and the next COPY
        starts after the last key yielded. A COPY left early (the reader was closed, or a
        batch needs the row path) is cancelled by psycopg.
        """
        conn = self._connection()
        parser = CsvBatchParser(meta.table.columns, ["t"], ["f"], zoned_text=True)
        exprs = self._copy_exprs[meta.table.name]
        limit = batch_size * _BATCHES_PER_COPY
        # Batch k is parsed (Arrow releases the GIL) while this thread reads batch k+1,
        # so the socket is drained without pause: at most one raw and one parsed batch
        # more are held.
        parsing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-copy-parse")
        finished = False
        try:
            while True:
                # plan.after is the last key of the batch yielded before (see _batches).
                query, params = self._query(meta, plan, exprs)
                # The limit is a parameter so there always is one: psycopg merges COPY
                # parameters client-side only when there are some, and only then turns
                # the doubled `%` of the identifiers back into one (see _ident).
                statement = sql.SQL("COPY ({} LIMIT %s) TO STDOUT (FORMAT csv)").format(query)
                params = [*params, limit]
                total = yielded = 0
                try:
                    with (
                        conn.transaction(),
                        conn.cursor() as cur,
                        cur.copy(statement, params) as copy,
                    ):
                        ended = False
                        parsed: Future[pa.Table] | None = None
                        while not ended:
                            data = bytearray()
                            rows, ended = _read_copy(conn, copy, data, batch_size, _MAX_BATCH_BYTES)
                            total += rows
                            previous = parsed
                            parsed = parsing.submit(parser.parse, data, rows) if rows else None
                            if previous is not None:
                                yield previous.result()
                                yielded += 1
                        if parsed is not None:
                            yield parsed.result()
                except psycopg.errors.QueryCanceled:
                    # The statement timeout ran out while the engine held batches of this
                    # COPY (a slow writer, a short timeout): go on with a new statement
                    # after the last batch yielded. A batch that alone outlasts the
                    # timeout still fails the read.
                    if not yielded:
                        raise
                    continue
                if total < limit:
                    break
            finished = True
        finally:
            parsing.shutdown(wait=True, cancel_futures=True)
            if not finished and self._conn is not None and self._conn.closed:
                self._conn = None
