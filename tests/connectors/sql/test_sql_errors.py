"""Database errors are classified by the server's code (SQLSTATE / errno), not by the
driver's exception class, and only a lost connection is retried. No server needed."""

from __future__ import annotations

import psycopg
import pytest

from datasources.connectors.sql.errors import Cause, mysql_cause, pg_cause, stream_error
from datasources.errors import SourceConnectionLost, SourceReadError, StreamUnreadable
from datasources.sync.engine import is_transient


@pytest.mark.parametrize(
    ("sqlstate", "session_ended", "cause"),
    [
        ("57P01", True, "connection_lost"),  # pg_terminate_backend
        ("57P02", True, "connection_lost"),
        ("57P03", False, "connection_lost"),
        ("08006", True, "connection_lost"),  # class 08: connection exception
        ("08003", False, "connection_lost"),
        (None, True, "connection_lost"),  # the client saw the socket close
        ("55000", False, "not_ready"),  # materialized view has not been populated
        ("55000", True, "not_ready"),  # the code wins over the session's state
        ("42501", False, "permission"),
        ("22007", False, "invalid_value"),  # class 22: data exception
        ("22P02", False, "invalid_value"),
        ("22003", False, "invalid_value"),
        ("42P01", False, "missing"),
        ("42703", False, "schema_changed"),
        ("57014", False, "timeout"),
        ("XX000", False, "other"),
        ("XX000", True, "connection_lost"),  # an unknown code that also ended the session
        (None, False, "other"),
    ],
)
def test_postgres_sqlstate_then_cause(sqlstate: str | None, session_ended: bool, cause: Cause):
    assert pg_cause(sqlstate, session_ended=session_ended) == cause


def test_psycopg_files_an_unpopulated_view_beside_lost_connections():
    # Why the class cannot decide: 55000 and 57P01 are both OperationalError.
    assert issubclass(psycopg.errors.lookup("55000"), psycopg.OperationalError)
    assert issubclass(psycopg.errors.lookup("57P01"), psycopg.OperationalError)


@pytest.mark.parametrize(
    ("errno", "cause"),
    [
        (2006, "connection_lost"),  # server has gone away
        (2013, "connection_lost"),  # lost connection during query
        (2055, "connection_lost"),
        (1927, "connection_lost"),  # MariaDB: connection killed
        (1053, "connection_lost"),  # server shutdown in progress
        (1142, "permission"),  # SELECT command denied to user for table
        (1143, "permission"),  # ... for column
        (1356, "not_ready"),  # view references invalid tables or definer rights
        (1292, "invalid_value"),
        (1366, "invalid_value"),
        (1264, "invalid_value"),
        (1146, "missing"),
        (1054, "schema_changed"),
        (1969, "timeout"),
        (3024, "timeout"),
        (1064, "other"),  # syntax error
    ],
)
def test_mysql_errno_then_cause(errno: int, cause: Cause):
    assert mysql_cause(errno) == cause


@pytest.mark.parametrize(
    ("cause", "kind", "transient"),
    [
        ("connection_lost", SourceConnectionLost, True),
        ("permission", StreamUnreadable, False),
        ("not_ready", StreamUnreadable, False),
        ("invalid_value", StreamUnreadable, False),
        ("missing", SourceReadError, False),
        ("schema_changed", SourceReadError, False),
        ("timeout", SourceReadError, False),
        ("other", SourceReadError, False),
    ],
)
def test_cause_then_error_kind_and_whether_the_engine_retries(
    cause: Cause, kind: type[SourceReadError], transient: bool
):
    error = stream_error(
        cause,
        engine="PostgreSQL",
        stream="s.t",
        text="server text",
        remedy="run THE FIX",
        statement_timeout=30,
    )
    assert type(error) is kind
    assert is_transient(error) is transient
    assert "s.t" in error.message
    # Only a lost connection says so; a lasting condition says what to do instead.
    assert ("lost" in error.message) is (cause == "connection_lost")
    if cause in ("permission", "not_ready"):
        assert "run THE FIX" in error.message
