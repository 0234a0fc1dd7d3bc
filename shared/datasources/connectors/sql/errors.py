"""Database errors raised while reading a stream, classified by their cause.

The cause comes from the server's own code: PostgreSQL's SQLSTATE (its class, the first
two characters, or the exact state) and MySQL/MariaDB's error number. A driver's
exception class says little: psycopg files "materialized view has not been populated"
(55000) under OperationalError beside a dropped connection, so classes would call a
permanent condition a lost connection. Only a real connection loss is retried; a
lasting condition of one stream fails that stream with what to do about it.
"""

from __future__ import annotations

from typing import Literal

from datasources.errors import SourceConnectionLost, SourceReadError, StreamUnreadable

Cause = Literal[
    "connection_lost",  # the session ended under the read: resume from the checkpoint
    "timeout",  # the statement ran past the configured statement timeout
    "missing",  # the table went away between discovery and the read
    "schema_changed",  # a column went away between the lookup and the read
    "permission",  # the source's user may not read the table
    "not_ready",  # the relation exists but cannot be scanned yet (unpopulated view)
    "invalid_value",  # a value the server or the driver cannot turn into its type
    "other",
]

# PostgreSQL: exact SQLSTATEs first, then classes (Appendix A of its manual).
_PG_STATES: dict[str, Cause] = {
    "57P01": "connection_lost",  # admin_shutdown (pg_terminate_backend, fast shutdown)
    "57P02": "connection_lost",  # crash_shutdown
    "57P03": "connection_lost",  # cannot_connect_now (starting up, recovering)
    "57P05": "connection_lost",  # idle_session_timeout
    "25P03": "connection_lost",  # idle_in_transaction_session_timeout ends the session
    "57014": "timeout",  # query_canceled (statement_timeout)
    "42P01": "missing",  # undefined_table
    "42703": "schema_changed",  # undefined_column
    "42501": "permission",  # insufficient_privilege
    "55000": "not_ready",  # object_not_in_prerequisite_state
}
_PG_CLASSES: dict[str, Cause] = {
    "08": "connection_lost",  # connection_exception
    "22": "invalid_value",  # data_exception
}

# MySQL/MariaDB error numbers (server 1xxx, client 2xxx).
_MY_CODES: dict[int, Cause] = {
    2006: "connection_lost",  # CR_SERVER_GONE_ERROR
    2013: "connection_lost",  # CR_SERVER_LOST
    2055: "connection_lost",  # CR_SERVER_LOST_EXTENDED
    1053: "connection_lost",  # ER_SERVER_SHUTDOWN
    1927: "connection_lost",  # ER_CONNECTION_KILLED (MariaDB)
    1317: "connection_lost",  # ER_QUERY_INTERRUPTED (KILL)
    0: "connection_lost",  # PyMySQL's InterfaceError(0, '') on a closed socket
    1969: "timeout",  # ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
    3024: "timeout",  # ER_QUERY_TIMEOUT (MySQL max_execution_time)
    1146: "missing",  # ER_NO_SUCH_TABLE
    1054: "schema_changed",  # ER_BAD_FIELD_ERROR
    1142: "permission",  # ER_TABLEACCESS_DENIED_ERROR
    1143: "permission",  # ER_COLUMNACCESS_DENIED_ERROR
    1044: "permission",  # ER_DBACCESS_DENIED_ERROR
    1227: "permission",  # ER_SPECIFIC_ACCESS_DENIED_ERROR
    1370: "permission",  # ER_PROCACCESS_DENIED_ERROR (a view's function)
    1356: "not_ready",  # ER_VIEW_INVALID: the view's tables, columns or definer are gone
    1292: "invalid_value",  # ER_TRUNCATED_WRONG_VALUE
    1366: "invalid_value",  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1264: "invalid_value",  # ER_WARN_DATA_OUT_OF_RANGE
    1690: "invalid_value",  # ER_DATA_OUT_OF_RANGE
    1365: "invalid_value",  # ER_DIVISION_BY_ZERO
}


def pg_cause(sqlstate: str | None, *, session_ended: bool) -> Cause:
    """The cause of a PostgreSQL error from its SQLSTATE.

    An error without one was raised by the client: it is a lost connection when the
    session is gone (`session_ended`), else something else.
    """
    if sqlstate:
        cause = _PG_STATES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
        if cause is not None:
            return cause
    return "connection_lost" if session_ended else "other"


def mysql_cause(errno: int) -> Cause:
    """The cause of a MySQL/MariaDB error from its error number."""
    return _MY_CODES.get(errno, "other")


def stream_error(
    cause: Cause,
    *,
    engine: str,
    stream: str,
    text: str,
    remedy: str,
    statement_timeout: int,
) -> SourceReadError:
    """The error a read of `stream` raises for `cause`, saying what to do.

    `text` is the server's message, sanitized; `remedy` what the engine advises for a
    lasting condition (the GRANT, the REFRESH) in the imperative.
    """
    if cause == "connection_lost":
        return SourceConnectionLost(
            f"the connection to {engine} was lost while reading stream '{stream}' "
            f"({text}); the sync can resume from its last checkpoint"
        )
    if cause == "timeout":
        return SourceReadError(
            f"reading stream '{stream}' exceeded the statement timeout of "
            f"{statement_timeout} s: {text}"
        )
    if cause == "missing":
        return SourceReadError(
            f"stream '{stream}' no longer exists (the table was dropped or renamed); "
            "run schema discovery again"
        )
    if cause == "schema_changed":
        return SourceReadError(
            f"a column of stream '{stream}' changed while reading: {text}; sync again"
        )
    if cause == "permission":
        return StreamUnreadable(
            f"permission denied reading stream '{stream}': {remedy}, or leave the stream "
            f"out of the sync ({engine} said: {text})"
        )
    if cause == "not_ready":
        return StreamUnreadable(
            f"stream '{stream}' cannot be read yet: {remedy}, or leave the stream out of "
            f"the sync ({engine} said: {text})"
        )
    if cause == "invalid_value":
        return StreamUnreadable(
            f"stream '{stream}' holds a value that cannot be converted ({text}); fix the "
            "value, cast it in a view, or leave the stream out of the sync"
        )
    return SourceReadError(f"reading stream '{stream}' failed: {text}")
