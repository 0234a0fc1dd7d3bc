"""A `%` in a table or column name reads like any other name (D13).

The drivers treat `%` as the start of a placeholder whenever parameters are passed
(psycopg: `%s`, `%(name)s`; PyMySQL: Python `%` formatting), so `pct%s` or a column
`100%` broke reads. Each test builds its own uniquely named schema (PostgreSQL) or
database (MariaDB) on the real servers and goes through every path: check, discover,
full read (PostgreSQL: COPY and row path), resumed read and incremental read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.postgres import PostgresConnector
from tests.connectors import db_fixtures as fx

TABLE = "pct%s"
OTHER_TABLE = "p%(x)s%%"
VALUE_COLUMN = "100%"
CURSOR_COLUMN = "at%s"
ROWS = 7


@pytest.fixture
def pg_schema() -> Iterator[str]:
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    name = f"ds_pct_{uuid.uuid4().hex[:10]}"
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        for table in (TABLE, OTHER_TABLE):
            quoted = f'{name}."{table}"'
            admin.execute(
                f'CREATE TABLE {quoted} (id int PRIMARY KEY, "{VALUE_COLUMN}" text, '
                f'"{CURSOR_COLUMN}" timestamptz)'
            )
            admin.execute(
                f"INSERT INTO {quoted} SELECT g, g || '%', "
                "'2024-05-01T00:00:00Z'::timestamptz + g * interval '1 minute' "
                f"FROM generate_series(1, {ROWS}) g"
            )
    try:
        yield name
    finally:
        with fx.pg_connect() as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def my_database() -> Iterator[str]:
    fx.require_server(fx.my_connect, "MariaDB", fx.MYSQL_PORT)
    name = f"ds_pct_{uuid.uuid4().hex[:10]}"
    with fx.my_connect() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        for table in (TABLE, OTHER_TABLE):
            quoted = f"{name}.`{table}`"
            cur.execute(
                f"CREATE TABLE {quoted} (id int PRIMARY KEY, `{VALUE_COLUMN}` text, "
                f"`{CURSOR_COLUMN}` datetime(6))"
            )
            values = ", ".join(
                f"({i}, '{i}%', TIMESTAMP '2024-05-01 00:00:00' + INTERVAL {i} MINUTE)"
                for i in range(1, ROWS + 1)
            )
            cur.execute(f"INSERT INTO {quoted} VALUES {values}")  # no args: no % formatting
    try:
        yield name
    finally:
        with fx.my_connect() as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


def rows_of(batches: list[Any]) -> list[dict[str, Any]]:
    return [r for b in batches for r in b.records.to_pylist()]


def every_path(conn: Any, stream: str, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """check, discover, full read in batches of 3, a read resumed mid-table, incremental."""
    assert conn.check().reachable
    tables = {t.name: t for t in conn.discover()}
    assert stream in tables, sorted(tables)
    assert {c.name for c in tables[stream].columns} == {"id", VALUE_COLUMN, CURSOR_COLUMN}

    full = list(conn.read(stream, StreamState(), 3))
    assert [r["id"] for r in rows_of(full)] == list(range(1, ROWS + 1))
    assert rows_of(full)[0][VALUE_COLUMN] == "1%"

    resumed = list(conn.read(stream, StreamState(resume_token=full[0].resume_token), 3))
    assert [r["id"] for r in rows_of(resumed)] == list(range(4, ROWS + 1))

    first = list(conn.read(stream, StreamState(cursor_field=CURSOR_COLUMN), 3))
    assert len(rows_of(first)) == ROWS
    again = list(
        conn.read(
            stream,
            StreamState(cursor_field=CURSOR_COLUMN, cursor_state=first[-1].cursor_state),
            3,
        )
    )
    assert rows_of(again) == []


@pytest.mark.postgres
@pytest.mark.parametrize("path", ["copy", "rows"])
@pytest.mark.parametrize("table", [TABLE, OTHER_TABLE])
def test_postgres_reads_names_with_percent_on_every_path(
    db_context: ConnectorContext,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    table: str,
) -> None:
    copies = {"n": 0}
    real = PostgresConnector._copy_tables

    def counting(self: PostgresConnector, *args: Any) -> Iterator[Any]:
        for batch in real(self, *args):
            copies["n"] += 1
            yield batch

    monkeypatch.setattr(PostgresConnector, "_copy_tables", counting)
    if path == "rows":
        monkeypatch.setattr(PostgresConnector, "_stream_arrow", lambda *_: None)
    conn = open_database_connector(fx.pg_config(schema=pg_schema), db_context)
    try:
        every_path(conn, f"{pg_schema}.{table}")
    finally:
        conn.close()
    assert (copies["n"] > 0) == (path == "copy")


@pytest.mark.mysql
@pytest.mark.parametrize("table", [TABLE, OTHER_TABLE])
def test_mariadb_reads_names_with_percent_on_every_path(
    db_context: ConnectorContext, my_database: str, table: str
) -> None:
    conn = open_database_connector(fx.my_config(database=my_database), db_context)
    try:
        every_path(conn, table)
    finally:
        conn.close()
