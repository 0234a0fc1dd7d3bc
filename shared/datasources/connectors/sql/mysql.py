"""MySQL and MariaDB engine of the `database` connector (PyMySQL, imported here only).

Streams are named by the bare table name: a MySQL connection is scoped to one database
(`database` in the config), which is also its "schema". Reads with a primary key run
keyset statements (`ORDER BY key LIMIT n`): the CSV path selects one server-written
CSV line per row, 8 batches per statement, parsed by Arrow; the row path (TIME or BIT
columns, values the CSV text cannot carry) one batch per statement through PyMySQL
rows. Each statement stays short enough for the statement timeout. Tables without a
key stream through a single unbuffered query resumed by offset.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

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
from datasources.connectors.sql.errors import Cause, mysql_cause, stream_error
from datasources.connectors.sql.values import CsvBatchParser
from datasources.errors import ConnectionFailed, ValidationFailed
from datasources.models.connection import DatabaseConfig

if TYPE_CHECKING:
    import pyarrow as pa

_MY_TYPES: dict[str, NormalizedType] = {
    "tinyint": "integer",
    "smallint": "integer",
    "mediumint": "integer",
    "int": "integer",
    "integer": "integer",
    "bigint": "integer",
    "year": "integer",
    "float": "number",
    "double": "number",
    "real": "number",
    "decimal": "decimal",
    "numeric": "decimal",
    "date": "date",
    "time": "time",
    "datetime": "timestamp",
    "timestamp": "timestamp_tz",
    "json": "json",
    "binary": "binary",
    "varbinary": "binary",
    "tinyblob": "binary",
    "blob": "binary",
    "mediumblob": "binary",
    "longblob": "binary",
    "bit": "binary",
    "geometry": "binary",
    "point": "binary",
    "linestring": "binary",
    "polygon": "binary",
    "multipoint": "binary",
    "multilinestring": "binary",
    "multipolygon": "binary",
    "geometrycollection": "binary",
}
_TABLE_TYPES = {"BASE TABLE": "table", "VIEW": "view", "SYSTEM VERSIONED": "table"}
_JSON_CHECK_RE = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.IGNORECASE)
# Error codes (server and client) -> check stage.
_AUTH_CODES = {1045, 1130, 1698, 1251}
_PERMISSION_CODES = {1044, 1142, 1143, 1227, 1129, 1370}
_TIMEOUT_CODES = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time


def normalize_mysql_type(data_type: str, column_type: str) -> NormalizedType:
    """The normalized type of a MySQL/MariaDB column from DATA_TYPE and COLUMN_TYPE."""
    data_type = data_type.lower()
    column_type = column_type.lower()
    # BOOLEAN is an alias of TINYINT(1); BIT(1) is the other common flag type.
    if column_type.startswith("tinyint(1)") or column_type == "bit(1)":
        return "boolean"
    if data_type == "bigint" and "unsigned" in column_type:
        return "decimal"  # up to 2^64-1 does not fit int64; written as decimal(20,0)
    return _MY_TYPES.get(data_type, "string")


def quote_ident(name: str) -> str:
    """A MySQL identifier in backticks, with embedded backticks doubled."""
    return "`" + name.replace("`", "``") + "`"


def _ident(name: str) -> str:
    """An identifier for a statement run with parameters (every read statement is).

    PyMySQL formats the statement with Python's `%` operator whenever parameters are
    passed, quoted names included: `%` is doubled so `pct%s` or `100%` stay names.
    """
    return quote_ident(name).replace("%", "%%")


def _csv_expr(column: Column) -> str | None:
    """The column's value as one CSV field in the server's text form, or None when the
    row path must read it (TIME beyond a day, BIT flags)."""
    col = _ident(column.name)
    kind = column.type
    native = column.native_type.lower()
    if kind in ("integer", "number", "decimal", "date", "timestamp", "timestamp_tz"):
        return col
    if kind == "boolean":
        return col if native.startswith("tinyint") else None
    if kind in ("string", "json"):
        # Quoted, quotes doubled; NULL stays NULL, so it becomes an unquoted empty field.
        return f"CONCAT('\"', REPLACE(CONVERT({col} USING utf8mb4), '\"', '\"\"'), '\"')"
    if kind == "binary" and not native.startswith("bit"):
        # Quoted: an empty value is "" (b''), NULL an unquoted empty field.
        return f"CONCAT('\"', HEX({col}), '\"')"
    return None


def _csv_line(table: Table) -> str | None:
    """The select of one CSV line per row, or None when a column needs the row path.

    CONCAT_WS skips NULL arguments, so a nullable field becomes an empty one through
    IFNULL. IFNULL was the dearest part of the server's work per row: the binary empty
    string spares it a character-set conversion per value, and a base table's NOT NULL
    columns go without it (README, Performance); the bytes are the same. A view's
    nullability is the server's guess from its definition, so every column of a view
    keeps its IFNULL.
    """
    fields: list[str] = []
    for column in table.columns:
        expr = _csv_expr(column)
        if expr is None:
            return None
        fields.append(
            expr if table.kind == "table" and not column.nullable else f"IFNULL({expr}, _binary'')"
        )
    return "CAST(CONCAT_WS(',', " + ", ".join(fields) + ") AS BINARY)"


_MAX_PACKET = 0xFFFFFF
# Batches one keyset statement of the CSV path may span (see _csv_batches), and the
# text one batch may hold whatever batch_size says, as on PostgreSQL (make bench).
_BATCHES_PER_QUERY = 8
_MAX_BATCH_BYTES = 8 << 20


def _read_lines(
    conn: pymysql.connections.Connection[Any], limit: int, max_bytes: int
) -> tuple[list[bytes], bool]:
    """Up to `limit` rows (fewer once they hold `max_bytes`) of an unbuffered one-column
    result of non-NULL bytes values: (the values, whether the result ended).

    PyMySQL's row loop builds a packet object and runs a converter per value, which was
    most of the CSV path's time (README, Performance). A one-column text-protocol row
    is one length-prefixed string, so this reads the row packets from PyMySQL's own
    buffered socket file, up to the EOF packet (PyMySQL never asks for
    DEPRECATE_EOF), and then marks the result finished as PyMySQL itself does. An
    error packet is raised as PyMySQL would raise it.

    The rows whole in the file's buffer are cut out of one peek and consumed at once:
    two reads and their checks per row were half of this loop's time (make bench).
    Any other packet (EOF, error, a row of 64 KiB or more, one cut by the buffer's
    end) goes through _read_packet.
    """
    rfile = conn._rfile
    lines: list[bytes] = []
    append = lines.append
    count = size = 0
    while count < limit and size < max_bytes:
        buf = rfile.peek(1)
        n = len(buf)
        pos = 0
        while count < limit and size < max_bytes and pos + 7 <= n:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + 4 + length
            if end > n:
                break
            first = buf[pos + 4]
            if first < 251:
                if first + 1 != length:
                    break
                append(buf[pos + 5 : end])
            elif first == 0xFC:
                if (buf[pos + 5] | buf[pos + 6] << 8) + 3 != length:
                    break
                append(buf[pos + 7 : end])
            else:
                break
            size += length
            count += 1
            pos = end
        if pos:
            rfile.read(pos)
            continue
        if count >= limit or size >= max_bytes:
            break
        line, ended = _read_packet(conn)
        if ended:
            return lines, True
        append(line)
        size += len(line)
        count += 1
    return lines, False


def _read_packet(conn: pymysql.connections.Connection[Any]) -> tuple[bytes, bool]:
    """One packet of the result of _read_lines: (its value, False), or (b"", True) at EOF."""
    read = conn._rfile.read
    header = read(4)
    if len(header) < 4:
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")
    length = header[0] | header[1] << 8 | header[2] << 16
    payload = read(length)
    while length == _MAX_PACKET:  # a row of 16 MiB or more continues in more packets
        header = read(4)
        length = header[0] | header[1] << 8 | header[2] << 16 if len(header) == 4 else -1
        payload += read(length) if length >= 0 else b""
    if len(payload) < 1 or (length >= 0 and len(payload) < length):
        raise pymysql.err.OperationalError(2013, "Lost connection to server during query")
    first = payload[0]
    if first < 251:
        return payload[1 : 1 + first], False
    if first == 0xFC:
        return payload[3 : 3 + (payload[1] | payload[2] << 8)], False
    if first == 0xFD:
        return payload[4:], False
    if first == 0xFE and len(payload) < 9:
        # EOF: the end of the rows.
        result = conn._result
        if result is not None:
            result.unbuffered_active = False
        conn._result = None
        return b"", True
    if first == 0xFE:
        return payload[9:], False
    if first == 0xFF:
        conn._result = None
        pymysql.err.raise_mysql_exception(payload)
    return b"", False  # 0xFB, NULL: never written by the CSV path's select


class _HostnameContext(ssl.SSLContext):
    """TLS context that verifies the configured host name while the socket goes to the
    address the SSRF guard resolved (PyMySQL would otherwise verify the IP)."""

    verify_name: str = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["server_hostname"] = self.verify_name
        return super().wrap_socket(sock, *args, **kwargs)


class MySqlConnector(SqlConnector):
    """A MySQL or MariaDB database; streams are named by table."""

    driver_errors = (pymysql.err.MySQLError, OSError)

    def __init__(self, config: DatabaseConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.engine = config.engine or "mysql"
        extra = [s for s in (config.selected_schemas or []) if s != config.database]
        if extra:
            raise ValidationFailed(
                "for MySQL and MariaDB the schema is the database: set 'database' to the one "
                f"to read instead of schema {extra!r}"
            )
        self._conn: pymysql.connections.Connection[Any] | None = None
        self._mariadb = config.engine == "mariadb"
        self._tls = False
        self._tls_version: str | None = None
        self._tls_cipher: str | None = None

    # ---- connection

    def _tls_context(self, sslmode: str) -> ssl.SSLContext | None:
        """The TLS context for a mode, with the same meaning as libpq's sslmode."""
        if sslmode == "disable":
            return None
        ctx: ssl.SSLContext
        if sslmode == "verify-full":
            named = _HostnameContext(ssl.PROTOCOL_TLS_CLIENT)
            named.verify_name = self.config.host
            ctx = named
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            if sslmode in ("prefer", "require"):
                ctx.verify_mode = ssl.CERT_NONE
        if sslmode in ("verify-ca", "verify-full"):
            if self.config.ssl_root_cert:
                ctx.load_verify_locations(cadata=self.config.ssl_root_cert)
            else:
                ctx.load_default_certs()
        with tls_files(self.config) as files:
            if "cert" in files:
                ctx.load_cert_chain(files["cert"], files["key"])
        return ctx

    def _connect(self, io_timeout: float | None = None) -> pymysql.connections.Connection[Any]:
        resolved = self.resolve()
        sslmode = effective_ssl_mode(self.config, resolved)
        # The socket read timeout is the last line against a server that stops answering.
        io_timeout = io_timeout or self.config.statement_timeout_seconds + 30
        try:
            ctx = self._tls_context(sslmode)
            conn = pymysql.connect(
                host=resolved.address,
                port=self.config.port,
                user=self.config.username,
                password=self.password,
                database=self.config.database,
                connect_timeout=self.config.connect_timeout,
                read_timeout=io_timeout,
                write_timeout=io_timeout,
                charset="utf8mb4",
                autocommit=True,
                program_name="datasources",
                ssl=ctx,
                ssl_disabled=ctx is None,
                defer_connect=True,
            )
            if sslmode == "prefer":
                # TLS when the server offers it, clear text when it does not (PyMySQL
                # requires TLS whenever it is handed a context).
                conn._ssl_required = False
                conn.client_flag &= ~CLIENT.SSL
            conn.connect()
        except (pymysql.err.MySQLError, OSError, ssl.SSLError) as exc:
            raise self._connect_error(exc) from None
        version = conn.get_server_info() or ""
        self._mariadb = "mariadb" in version.lower()
        timeout = self.config.statement_timeout_seconds
        statements = [
            "SET time_zone = '+00:00'",
            "SET SESSION TRANSACTION READ ONLY",
            # A slow consumer between two fetches must not make the server drop us.
            "SET SESSION net_write_timeout = 600",
            f"SET SESSION max_statement_time = {int(timeout)}"
            if self._mariadb
            else f"SET SESSION max_execution_time = {int(timeout) * 1000}",
        ]
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                cur.execute(
                    "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_cipher', 'Ssl_version')"
                )
                status = {str(k).lower(): v for k, v in cur.fetchall()}
                self._tls = bool(status.get("ssl_cipher"))
                self._tls_version = status.get("ssl_version") or None
                self._tls_cipher = status.get("ssl_cipher") or None
        except pymysql.err.MySQLError as exc:
            conn.close()
            raise self._connect_error(exc) from None
        return conn

    def _connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None or not self._conn.open:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.open:
            try:
                conn.close()
            except pymysql.err.MySQLError:
                conn._force_close()

    def _drop(self) -> None:
        """Close without a goodbye: the socket may be mid-result or already dead."""
        conn, self._conn = self._conn, None
        if conn is not None:
            result = getattr(conn, "_result", None)
            if result is not None:
                # Otherwise the result's finaliser tries to drain rows from a closed socket.
                result.unbuffered_active = False
            conn._force_close()

    @staticmethod
    def _code(exc: BaseException) -> int:
        args = getattr(exc, "args", ())
        return args[0] if args and isinstance(args[0], int) else -1

    def _connect_error(self, exc: BaseException) -> ConnectionFailed:
        code = self._code(exc)
        text = self.sanitize(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        low = text.lower()
        where = f"{self.config.host}:{self.config.port}"
        user = self.config.username
        if code in _AUTH_CODES:
            return ConnectionFailed(
                f"authentication failed for user '{user}': check the username and password",
                stage="auth",
            )
        if code == 1049:
            return ConnectionFailed(
                f"database '{self.config.database}' does not exist on {where}: check the "
                "database name",
                stage="database",
            )
        if code in _PERMISSION_CODES:
            return ConnectionFailed(f"user '{user}' lacks a permission: {text}", stage="permission")
        sslmode = effective_ssl_mode(self.config, self.resolve())
        tls = tls_failure(where, sslmode, text)
        if tls is None and code in (2026, 3159):
            tls = tls_failure(where, sslmode, f"TLS error: {text}")
        if tls is not None:
            return tls
        if "refused" in low:
            return ConnectionFailed(
                f"connection to {where} was refused: no MySQL/MariaDB server listens on that port",
                stage="tcp",
            )
        if "timed out" in low or "timeout" in low:
            return ConnectionFailed(
                f"connecting to {where} timed out after {self.config.connect_timeout} s: check "
                "the host, port and firewall rules",
                stage="timeout",
            )
        if code in _TIMEOUT_CODES:
            return ConnectionFailed(f"the query timed out: {text}", stage="timeout")
        if code in (2003, 2013, 2006) or isinstance(exc, OSError):
            return ConnectionFailed(f"could not connect to {where}: {text}", stage="tcp")
        return ConnectionFailed(f"query failed on {where}: {text}", stage="query")

    def _read_error(self, exc: Exception, stream: str) -> Exception:
        code = self._code(exc)
        text = self.sanitize(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        session_ended = self._conn is None or not self._conn.open
        self._drop()
        cause = mysql_cause(code)
        if cause == "other" and (isinstance(exc, OSError) or (code < 0 and session_ended)):
            # A socket error, or the driver's own complaint about a closed connection.
            cause = "connection_lost"
        return stream_error(
            cause,
            engine=self.engine,
            stream=stream,
            text=text or type(exc).__name__,
            remedy=self._remedy(cause, stream),
            statement_timeout=self.config.statement_timeout_seconds,
        )

    def _remedy(self, cause: Cause, stream: str) -> str:
        relation = f"{quote_ident(self.config.database)}.{quote_ident(stream)}"
        if cause == "permission":
            user = "'" + self.config.username.replace("'", "''") + "'@'%'"
            return f"run GRANT SELECT ON {relation} TO {user} (with the user's host)"
        if cause == "not_ready":
            return f"recreate view {relation} or give its definer access to the tables it reads"
        return "fix the table on the source"

    # ---- check

    def _check(self) -> dict[str, Any]:
        # A connection of its own whose socket reads (handshake included) time out after
        # connect_timeout, so a test-connection request never waits long on a stuck server.
        conn = self._connect(io_timeout=self.config.connect_timeout)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION(), DATABASE(), 1")
                row = cur.fetchone()
        except (pymysql.err.MySQLError, OSError) as exc:
            raise self._connect_error(exc) from None
        finally:
            try:
                conn.close()
            except pymysql.err.MySQLError:
                conn._force_close()
        assert row is not None
        return {
            "server_version": row[0],
            "database": row[1],
            "flavor": "mariadb" if self._mariadb else "mysql",
            "tls": self._tls,
            "tls_version": self._tls_version if self._tls else None,
            "tls_cipher": self._tls_cipher if self._tls else None,
            "ssl_mode": effective_ssl_mode(self.config, self.resolve()),
        }

    # ---- discover

    def _catalog(self, table_name: str | None) -> list[Table]:
        conn = self._connection()
        db = self.config.database
        only = " AND TABLE_NAME = %s" if table_name is not None else ""
        args: tuple[str, ...] = (db, table_name) if table_name is not None else (db,)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME, TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s" + only + " ORDER BY TABLE_NAME",
                args,
            )
            relations = list(cur.fetchall())
            cur.execute(
                "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s" + only + " "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION",
                args,
            )
            column_rows = list(cur.fetchall())
            cur.execute(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                "WHERE TABLE_SCHEMA = %s" + only + " AND CONSTRAINT_NAME = 'PRIMARY' "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION",
                args,
            )
            pk_rows = list(cur.fetchall())
            json_columns: set[tuple[str, str]] = set()
            if self._mariadb:
                # MariaDB's JSON is LONGTEXT plus a json_valid() check constraint.
                cur.execute(
                    "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = %s" + only + " AND CHECK_CLAUSE LIKE %s",
                    (*args, "%json_valid%"),
                )
                for tname, clause in cur.fetchall():
                    for match in _JSON_CHECK_RE.finditer(clause or ""):
                        json_columns.add((tname, match.group(1).replace("``", "`")))

        columns: dict[str, list[Column]] = {}
        for tname, cname, data_type, column_type, nullable in column_rows:
            kind = normalize_mysql_type(data_type, column_type)
            if (tname, cname) in json_columns:
                kind = "json"
            columns.setdefault(tname, []).append(
                Column(
                    name=cname,
                    type=kind,
                    native_type=str(column_type),
                    nullable=str(nullable).upper() == "YES",
                )
            )
        pks: dict[str, list[str]] = {}
        for tname, cname in pk_rows:
            pks.setdefault(tname, []).append(cname)
        out = []
        for tname, ttype, rows in relations:
            if ttype not in _TABLE_TYPES:
                continue
            cols = columns.get(tname, [])
            pk = pks.get(tname, [])
            out.append(
                Table(
                    name=tname,
                    columns=cols,
                    primary_key=pk,
                    cursor_candidates=cursor_candidates(cols, pk),
                    row_count_estimate=int(rows) if rows is not None and ttype != "VIEW" else None,
                    kind=_TABLE_TYPES[ttype],
                )
            )
        return out

    def _discover(self) -> list[Table]:
        try:
            tables = self._catalog(None)
        except pymysql.err.MySQLError as exc:
            self._drop()
            raise self._connect_error(exc) from None
        return [t for t in tables if is_selected(self.config, t.name, t.name)]

    # ---- read

    def _lookup(self, stream: str) -> StreamMeta | None:
        for table in self._catalog(stream):
            # information_schema may compare names case-insensitively: insist on exact.
            if table.name == stream and is_selected(self.config, stream, stream):
                return StreamMeta(table=table, schema_name=self.config.database, table_name=stream)
        return None

    @staticmethod
    def _relation(meta: StreamMeta) -> str:
        return f"{_ident(meta.schema_name)}.{_ident(meta.table_name)}"

    def _count_null_cursor(self, meta: StreamMeta, cursor: Column) -> int:
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT COUNT(*) FROM {self._relation(meta)} WHERE {_ident(cursor.name)} IS NULL",
                (),
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def _max_cursor(self, meta: StreamMeta, cursor: Column) -> Any:
        conn = self._connection()
        with conn.cursor() as cur:
            # Run with (no) parameters like every read statement: see _ident.
            cur.execute(f"SELECT MAX({_ident(cursor.name)}) FROM {self._relation(meta)}", ())
            row = cur.fetchone()
        return row[0] if row else None

    @staticmethod
    def _after_clause(names: list[str], values: list[Any]) -> tuple[str, list[Any]]:
        """`(a, b) > (x, y)` spelled out, since MySQL/MariaDB range-optimise this form best."""
        first = _ident(names[0])
        clause = f"{_ident(names[-1])} > %s"
        params: list[Any] = [values[-1]]
        for name, value in zip(reversed(names[:-1]), reversed(values[:-1]), strict=True):
            col = _ident(name)
            clause = f"{col} > %s OR ({col} = %s AND ({clause}))"
            params = [value, value, *params]
        # The leading `a >= x` lets the optimizer pick a range scan on the key's index.
        return f"{first} >= %s AND ({clause})", [values[0], *params]

    def _query(
        self,
        meta: StreamMeta,
        plan: ReadPlan,
        after: list[Any] | None,
        limit: int | None,
        select: str | None = None,
    ) -> tuple[str, list[Any]]:
        select = select or ", ".join(_ident(c.name) for c in meta.table.columns)
        where: list[str] = []
        params: list[Any] = []
        if plan.cursor is not None and plan.phase == PHASE_NULLS:
            where.append(f"{_ident(plan.cursor.name)} IS NULL")
        elif plan.cursor is not None and plan.include_nulls:
            # ASC puts NULL first here, so the last row read holds the highest value.
            col = _ident(plan.cursor.name)
            where.append(f"({col} IS NULL OR {col} <= %s)")
            params.append(plan.upper)
        elif plan.cursor is not None:
            col = _ident(plan.cursor.name)
            where.append(f"{col} IS NOT NULL AND {col} <= %s")
            params.append(plan.upper)
            if plan.mode == "offset":
                lower = plan.lower_cursor_value()
                if lower is not None:
                    where.append(f"{col} > %s")
                    params.append(lower)
        if plan.mode == "keyset" and after:
            clause, clause_params = self._after_clause(plan.key_names[: len(after)], after)
            where.append(f"({clause})")
            params.extend(clause_params)
        query = f"SELECT {select} FROM {self._relation(meta)}"
        if where:
            query += " WHERE " + " AND ".join(where)
        if plan.key:
            query += " ORDER BY " + ", ".join(_ident(n) for n in plan.key_names)
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        elif plan.offset:
            query += f" LIMIT 18446744073709551615 OFFSET {int(plan.offset)}"
        return query, params

    def _stream_arrow(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[pa.Table, None, None] | None:
        """Keyset batches as one CSV line per row, written by the server, parsed by Arrow.

        PyMySQL turns every value into a Python object in pure Python (most of a read's
        time: README, Performance); one bytes value per row and Arrow's CSV reader do
        the same work in C. The text is the server's own text form of each value, the
        same the row path parses, so values are identical; a batch holding one that
        does not parse (a zero date...) goes on through the row path.
        """
        if plan.mode != "keyset":
            return None
        line = _csv_line(meta.table)
        if line is None:
            return None
        parser = CsvBatchParser(meta.table.columns, true_values=["1"], false_values=["0"])
        return self._csv_batches(meta, plan, batch_size, line, parser)

    def _csv_batches(
        self,
        meta: StreamMeta,
        plan: ReadPlan,
        batch_size: int,
        line: str,
        parser: CsvBatchParser,
    ) -> Generator[pa.Table, None, None]:
        """Arrow tables of batch_size rows, from keyset statements of a few batches each.

        As the PostgreSQL COPY path: batch k is parsed in a thread (Arrow releases the
        GIL) while this one reads batch k+1 of the same unbuffered result, so the
        server keeps producing; a statement spans _BATCHES_PER_QUERY batches, so the
        statement timeout bounds a few batches, and the next one starts after the last
        key yielded. A result left mid-way is dropped with the connection.
        """
        limit = batch_size * _BATCHES_PER_QUERY
        parsing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="my-csv-parse")
        open_result = False
        try:
            while True:
                conn = self._connection()
                # plan.after is the last key of the batch yielded before (see _batches).
                query, params = self._query(meta, plan, plan.after, limit, select=line)
                total = yielded = 0
                try:
                    cur = conn.cursor(pymysql.cursors.SSCursor)
                    cur.execute(query, params)
                    open_result = True
                    ended = False
                    parsed: Future[pa.Table] | None = None
                    while not ended:
                        lines, ended = _read_lines(conn, batch_size, _MAX_BATCH_BYTES)
                        open_result = not ended
                        total += len(lines)
                        previous = parsed
                        parsed = None
                        if lines:
                            lines.append(b"")
                            data = b"\n".join(lines)
                            parsed = parsing.submit(parser.parse, data, len(lines) - 1)
                        if previous is not None:
                            yield previous.result()
                            yielded += 1
                    if parsed is not None:
                        yield parsed.result()
                    cur.close()
                except pymysql.err.MySQLError as exc:
                    open_result = False
                    # The statement timeout ran out while the engine held batches of
                    # this statement: go on after the last batch yielded.
                    if self._code(exc) in _TIMEOUT_CODES and yielded:
                        continue
                    raise
                if total < limit:
                    return
        finally:
            parsing.shutdown(wait=True, cancel_futures=True)
            if open_result:
                # Stopped mid-result (closed early, or a batch needs the row path):
                # reading the rest would drain the table, so drop the connection.
                self._drop()

    def _stream_rows(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        if plan.mode == "keyset":
            yield from self._keyset_rows(meta, plan, batch_size)
        else:
            yield from self._offset_rows(meta, plan, batch_size)

    def _keyset_rows(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        index = {c.name: i for i, c in enumerate(meta.table.columns)}
        key_idx = [index[name] for name in plan.key_names]
        after = plan.after
        while True:
            conn = self._connection()
            query, params = self._query(meta, plan, after, batch_size)
            cur = conn.cursor(pymysql.cursors.SSCursor)
            cur.execute(query, params)
            rows = list(cur.fetchall_unbuffered())
            cur.close()
            if not rows:
                return
            yield rows
            if len(rows) < batch_size:
                return
            # The driver's own typed values: no JSON round trip between two chunks.
            after = [rows[-1][i] for i in key_idx]

    def _offset_rows(
        self, meta: StreamMeta, plan: ReadPlan, batch_size: int
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        conn = self._connection()
        query, params = self._query(meta, plan, None, None)
        # One long unbuffered statement: the per-statement timeout would cut a large
        # table, so it is lifted for it; the socket read timeout still bounds a stall.
        variable = "max_statement_time" if self._mariadb else "max_execution_time"
        with conn.cursor() as setup:
            setup.execute(f"SET SESSION {variable} = 0")
        finished = False
        try:
            cur = conn.cursor(pymysql.cursors.SSCursor)
            cur.execute(query, params)
            while True:
                rows = list(cur.fetchmany(batch_size))
                if not rows:
                    break
                yield rows
            cur.close()
            finished = True
        finally:
            if finished:
                timeout = self.config.statement_timeout_seconds
                value = timeout if self._mariadb else timeout * 1000
                with conn.cursor() as setup:
                    setup.execute(f"SET SESSION {variable} = {int(value)}")
            else:
                # Stopped mid-result (time budget or error): closing the cursor would
                # drain the rest of the table, so drop the connection instead.
                self._drop()
