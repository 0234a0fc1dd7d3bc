"""PostgreSQL engine of the `database` connector (psycopg 3, imported here only).

Reads stream through a server-side (named) cursor inside a read-only transaction, so
memory stays bounded by the batch size whatever the table's size. Catalog facts come
from pg_catalog in one query per kind (relations, columns, primary keys).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import psycopg
from psycopg import sql

from datasources.connectors.base import Column, ConnectorContext, NormalizedType, Table
from datasources.connectors.database import (
    ReadPlan,
    SqlConnector,
    StreamMeta,
    cursor_candidates,
    decimal_fits_arrow,
    effective_ssl_mode,
    is_selected,
)
from datasources.errors import ConnectionFailed, SourceReadError
from datasources.models.connection import DatabaseConfig

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


def normalize_pg_type(base_typname: str, typcategory: str) -> NormalizedType:
    """The normalized type of a column from its base type name and category."""
    if typcategory == "A":
        return "array"
    return _PG_TYPES.get(base_typname, "string")


def _select_expr(column: Column, base_typname: str) -> sql.Composable:
    ident = sql.SQL("t.") + sql.Identifier(column.name)
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
    return sql.SQL("{} AS {}").format(expr, sql.Identifier(column.name))


class PostgresConnector(SqlConnector):
    """A PostgreSQL database; streams are named `schema.table`."""

    engine = "postgresql"
    driver_errors = (psycopg.Error, OSError)

    def __init__(self, config: DatabaseConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._conn: psycopg.Connection[Any] | None = None
        self._select_exprs: dict[str, list[sql.Composable]] = {}
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
        if sslmode in ("verify-ca", "verify-full"):
            params["sslrootcert"] = "system"
        try:
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
        if "ssl" in low or "certificate" in low or "tls" in low:
            return ConnectionFailed(
                f"TLS to {where} failed (ssl_mode '{self.config.ssl_mode or 'default'}'): {text}",
                stage="tls",
            )
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
        if isinstance(exc, psycopg.Error):
            state = getattr(exc, "sqlstate", None) or ""
            text = self.sanitize(str(exc))
            broken = isinstance(exc, psycopg.OperationalError) or (
                self._conn is not None and self._conn.closed
            )
            self._drop()
            if state == "42P01":
                return SourceReadError(
                    f"stream '{stream}' no longer exists (the table was dropped or renamed); "
                    "run schema discovery again"
                )
            if state == "42703":
                return SourceReadError(
                    f"a column of stream '{stream}' changed while reading: {text}; sync again"
                )
            if state == "42501":
                return SourceReadError(f"permission denied reading stream '{stream}': {text}")
            if state == "57014":
                return SourceReadError(
                    f"reading stream '{stream}' exceeded the statement timeout of "
                    f"{self.config.statement_timeout_seconds} s: {text}"
                )
            if isinstance(exc, psycopg.DataError) and not state:
                # Raised by a loader, not the server: e.g. 'infinity' dates or year > 9999.
                return SourceReadError(
                    f"stream '{stream}' holds a value that cannot be converted ({text}); "
                    "exclude the table or cast the value in a view"
                )
            if broken or state.startswith("57P") or state.startswith("08"):
                return SourceReadError(
                    f"the connection to PostgreSQL was lost while reading stream '{stream}' "
                    f"({text}); the sync can resume from its last checkpoint"
                )
            return SourceReadError(f"reading stream '{stream}' failed: {text}")
        return SourceReadError(f"reading stream '{stream}' failed: {type(exc).__name__}")

    # ---- check

    def _check(self) -> dict[str, Any]:
        # A connection of its own whose statements are bounded by connect_timeout, so a
        # test-connection request can never wait on a stuck server for long.
        conn = self._connect(statement_timeout_s=self.config.connect_timeout)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('server_version'), current_database(), 1")
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
    ) -> list[tuple[Table, str, str, list[sql.Composable]]]:
        """(table, schema, name, select expressions) for the relations the filter keeps."""
        conn = self._connection()
        rel_where = sql.SQL(
            "c.relkind IN " + _RELKINDS + " AND NOT c.relispartition AND {}"
        ).format(rel_filter)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT n.nspname, c.relname, c.relkind, c.reltuples::float8 "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE {} AND has_table_privilege(c.oid, 'SELECT') "
                    "ORDER BY n.nspname, c.relname"
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
        for schema, rel, name, native, notnull, base, category in column_rows:
            column = Column(
                name=name,
                type=normalize_pg_type(base, category),
                native_type=native,
                nullable=not notnull,
            )
            columns.setdefault((schema, rel), []).append(column)
            exprs.setdefault((schema, rel), []).append(_select_expr(column, base))
        pks: dict[tuple[str, str], list[str]] = {}
        for schema, rel, name in pk_rows:
            pks.setdefault((schema, rel), []).append(name)

        out = []
        for schema, rel, kind, reltuples in relations:
            cols = columns.get((schema, rel), [])
            pk = pks.get((schema, rel), [])
            estimate = None
            if kind in ("r", "m", "p") and reltuples is not None and reltuples >= 0:
                estimate = int(reltuples)
            table = Table(
                name=f"{schema}.{rel}",
                columns=cols,
                primary_key=pk,
                cursor_candidates=cursor_candidates(cols, pk),
                row_count_estimate=estimate,
                kind=_KINDS.get(kind, "table"),
            )
            out.append((table, schema, rel, exprs.get((schema, rel), [])))
        return out

    def _discover(self) -> list[Table]:
        where, params = self._schema_filter()
        try:
            catalog = self._catalog(where, params)
        except psycopg.Error as exc:
            self._drop()
            raise self._connect_error(exc) from None
        return [t for t, schema, rel, _ in catalog if is_selected(self.config, t.name, rel)]

    # ---- read

    def _lookup(self, stream: str) -> StreamMeta | None:
        where, params = self._schema_filter()
        # Names may contain dots, so match the whole `schema.table` text, not a split.
        where = sql.SQL("{} AND n.nspname || '.' || c.relname = %(stream)s").format(where)
        catalog = self._catalog(where, {**params, "stream": stream})
        for table, schema, rel, exprs in catalog:
            if table.name == stream and is_selected(self.config, stream, rel):
                self._select_exprs[stream] = exprs
                return StreamMeta(table=table, schema_name=schema, table_name=rel)
        return None

    @staticmethod
    def _relation(meta: StreamMeta) -> sql.Composable:
        return sql.SQL("{}.{}").format(
            sql.Identifier(meta.schema_name), sql.Identifier(meta.table_name)
        )

    def _max_cursor(self, meta: StreamMeta, cursor: Column) -> Any:
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT max({}) FROM {}").format(
                    sql.Identifier(cursor.name), self._relation(meta)
                )
            )
            row = cur.fetchone()
        return row[0] if row else None

    def _query(self, meta: StreamMeta, plan: ReadPlan) -> tuple[sql.Composed, list[Any]]:
        exprs = self._select_exprs[meta.table.name]
        where: list[sql.Composable] = []
        params: list[Any] = []
        cursor = plan.cursor
        if cursor is not None:
            ident = sql.SQL("t.") + sql.Identifier(cursor.name)
            where.append(sql.SQL("{} IS NOT NULL AND {} <= %s").format(ident, ident))
            params.append(plan.upper)
            if plan.mode == "offset":
                lower = plan.lower_cursor_value()
                if lower is not None:
                    where.append(sql.SQL("{} > %s").format(ident))
                    params.append(lower)
        if plan.mode == "keyset" and plan.after:
            # Row comparison: PostgreSQL turns it into one index range scan on the key.
            key_cols = [sql.SQL("t.") + sql.Identifier(c.name) for c in plan.key[: len(plan.after)]]
            where.append(
                sql.SQL("({}) > ({})").format(
                    sql.SQL(", ").join(key_cols),
                    sql.SQL(", ").join(sql.Placeholder() * len(plan.after)),
                )
            )
            params.extend(plan.after)
        order = [sql.SQL("t.") + sql.Identifier(c.name) for c in plan.key]
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
