"""Cursor semantics with real PostgreSQL and MariaDB tables, proven by counting records.

No row is dropped by a cursor: rows whose cursor is NULL land in a first incremental run
and in every full refresh, and a later incremental run's notes count the ones it left
out. On PostgreSQL a table without an update column is read incrementally by row version
(`xmin`), which sees updates; elsewhere the schema and the job say that only inserts are
captured. Each test owns a schema / database of its own, dropped after.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack
from tests.connectors import db_fixtures as fx
from tests.integration.test_sync_database import deliver_one, rows_of_job, status, sync

BASE = dt.datetime(2024, 5, 1, 12, 0, 0, 250_001)


class Db:
    """One engine's test namespace: run SQL, name streams, connect a source to it."""

    def __init__(self, engine: str, conn: Any, namespace: str) -> None:
        self.engine = engine
        self.conn = conn
        self.namespace = namespace

    def run(self, statement: str, params: Any = None) -> None:
        if self.engine == "postgresql":
            self.conn.execute(statement, params)
        else:
            with self.conn.cursor() as cur:
                cur.execute(statement, params)

    def table(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def stream(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.engine == "postgresql" else name

    def connect(self, stack: Stack) -> str:
        config: dict[str, Any] = {
            "host": fx.HOST,
            "username": fx.USER,
            "password": fx.PASSWORD,
            "engine": self.engine,
            "connect_timeout": 5,
        }
        if self.engine == "postgresql":
            config.update(port=fx.PG_PORT, database=fx.DATABASE, schema=self.namespace)
        else:
            config.update(port=fx.MYSQL_PORT, database=self.namespace)
        source = {"type": "database", "name": self.namespace, "connection_config": config}
        response = stack.call("connect", body={"sources": [source]})
        assert response.status_code == 201, response.body
        return str(response.data["connected_sources"][0]["id"])


@pytest.fixture(params=["postgresql", "mariadb"])
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    engine = request.param
    if engine == "postgresql":
        fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
        conn = fx.pg_connect()
    else:
        fx.require_server(fx.my_connect, "MariaDB", fx.MYSQL_PORT)
        conn = fx.my_connect()
    namespace = f"ds_cursor_{uuid.uuid4().hex[:10]}"
    db = Db(engine, conn, namespace)
    db.run(f"CREATE {'SCHEMA' if engine == 'postgresql' else 'DATABASE'} {namespace}")
    stamp = "timestamp" if engine == "postgresql" else "datetime(6)"
    db.run(f"CREATE TABLE {db.table('n')} (id bigint PRIMARY KEY, changed_at {stamp} NULL, v text)")
    db.run(f"CREATE TABLE {db.table('nopk')} (changed_at {stamp} NULL, v text)")
    db.run(f"CREATE TABLE {db.table('k')} (id bigint PRIMARY KEY, v text)")
    try:
        yield db
    finally:
        db.run(
            f"DROP SCHEMA IF EXISTS {namespace} CASCADE"
            if engine == "postgresql"
            else f"DROP DATABASE IF EXISTS {namespace}"
        )
        conn.close()


def insert(db: Db, table: str, ids: range, *, null: bool) -> None:
    for i in ids:
        stamp = None if null else BASE + dt.timedelta(seconds=i)
        if table == "nopk":
            db.run(f"INSERT INTO {db.table(table)} VALUES (%s, %s)", (stamp, f"row {i}"))
        else:
            db.run(f"INSERT INTO {db.table(table)} VALUES (%s, %s, %s)", (i, stamp, f"row {i}"))


def stream_of(job: dict[str, Any]) -> dict[str, Any]:
    ((stream,),) = [source["streams"] for source in job["sources"]]
    return dict(stream)


def run(stack: Stack, source_id: str, stream: str, **options: Any) -> dict[str, Any]:
    """One sync of one stream, chained: one part of 7 rows per worker delivery."""
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job = sync(stack, source_id, streams=[stream], batch_size=7, **options)
    while deliver_one(stack):
        pass
    job = status(stack, job["job_id"])
    assert job["status"] == "completed", job
    return job


def landed(stack: Stack, job: dict[str, Any]) -> Counter[str]:
    return Counter(str(row["v"]) for row in rows_of_job(stack, job))


@pytest.mark.postgres
@pytest.mark.mysql
@pytest.mark.parametrize("table", ["n", "nopk"])
def test_null_cursor_rows_land_in_the_first_run_and_full_refresh_and_later_runs_count_them(
    stack: Stack, db: Db, table: str
) -> None:
    # Given 40 rows with a cursor value and 11 whose nullable cursor is NULL
    insert(db, table, range(1, 41), null=False)
    insert(db, table, range(41, 52), null=True)
    source_id = db.connect(stack)
    stream = db.stream(table)

    # When the first incremental run reads them (8 chained parts)
    first = run(stack, source_id, stream)

    # Then every row lands once, and the notes count no row left out
    assert first["records_processed"] == 51
    assert landed(stack, first) == Counter(f"row {i}" for i in range(1, 52))
    assert not any("NULL" in n for n in stream_of(first)["notes"])

    # When 5 rows with a newer cursor and 3 more NULL-cursor rows arrive
    insert(db, table, range(52, 57), null=False)
    insert(db, table, range(57, 60), null=True)
    second = run(stack, source_id, stream)

    # Then the incremental run reads exactly the 5, and counts the 14 it left out
    assert second["records_processed"] == 5
    assert landed(stack, second) == Counter(f"row {i}" for i in range(52, 57))
    assert any(
        "14 row(s) with a NULL 'changed_at' were not read" in n for n in stream_of(second)["notes"]
    ), stream_of(second)["notes"]

    # And a full refresh reads every row, NULL cursors included
    full = run(stack, source_id, stream, incremental=False)
    assert full["records_processed"] == 59
    assert landed(stack, full) == Counter(f"row {i}" for i in range(1, 60))

    # And an incremental run after it still starts from the incremental state
    third = run(stack, source_id, stream)
    assert third["records_processed"] == 0


@pytest.mark.postgres
@pytest.mark.mysql
def test_a_table_with_only_null_cursors_lands_once_and_the_next_run_reads_nothing(
    stack: Stack, db: Db
) -> None:
    insert(db, "n", range(1, 10), null=True)
    source_id = db.connect(stack)
    first = run(stack, source_id, db.stream("n"))
    assert first["records_processed"] == 9
    second = run(stack, source_id, db.stream("n"))
    assert second["records_processed"] == 0
    assert any("9 row(s) with a NULL" in n for n in stream_of(second)["notes"])


def schema_tables(stack: Stack, source_id: str) -> dict[str, dict[str, Any]]:
    response = stack.call("schema", query={"source_id": source_id, "scope": "user"})
    assert response.status_code == 200, response.body
    return {t["name"]: t for t in response.data["tables"]}


@pytest.mark.postgres
@pytest.mark.mysql
def test_schema_says_what_an_incremental_sync_captures_per_table(stack: Stack, db: Db) -> None:
    source_id = db.connect(stack)
    tables = schema_tables(stack, source_id)
    # An update column sees updates on both engines.
    assert tables[db.stream("n")]["cursor_field"] == "changed_at"
    assert tables[db.stream("n")]["incremental_captures"] == "inserts_and_updates"
    keyed = tables[db.stream("k")]
    if db.engine == "postgresql":
        # No update column: the row version, which sees updates.
        assert keyed["cursor_candidates"] == ["xmin", "id"]
        assert keyed["cursor_field"] == "xmin"
        assert keyed["incremental_captures"] == "inserts_and_updates"
    else:
        assert keyed["cursor_field"] == "id"
        assert keyed["incremental_captures"] == "inserts"
        # And the job says so.
        insert_k(db, range(1, 4))
        job = run(stack, source_id, db.stream("k"))
        assert any("only inserts are captured" in n for n in stream_of(job)["notes"])


def insert_k(db: Db, ids: range) -> None:
    for i in ids:
        db.run(f"INSERT INTO {db.table('k')} VALUES (%s, %s)", (i, f"row {i}"))


@pytest.mark.postgres
def test_xmin_incremental_sees_an_update_and_an_insert_on_a_table_without_a_timestamp(
    stack: Stack,
) -> None:
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    conn = fx.pg_connect()
    db = Db("postgresql", conn, f"ds_xmin_{uuid.uuid4().hex[:10]}")
    db.run(f"CREATE SCHEMA {db.namespace}")
    try:
        db.run(f"CREATE TABLE {db.table('k')} (id bigint PRIMARY KEY, v text)")
        db.run(f"INSERT INTO {db.table('k')} SELECT g, 'row ' || g FROM generate_series(1, 200) g")
        source_id = db.connect(stack)
        stream = db.stream("k")
        first = run(stack, source_id, stream)
        assert first["records_processed"] == 200
        assert stream_of(first)["cursor_field"] == "xmin"
        assert not any("only inserts" in n for n in stream_of(first)["notes"])

        # When one row is updated and one inserted
        db.run(f"UPDATE {db.table('k')} SET v = 'changed' WHERE id = 5")
        db.run(f"INSERT INTO {db.table('k')} VALUES (201, 'new')")
        second = run(stack, source_id, stream)

        # Then the next run lands both, and not the table again. (A transaction of another
        # session left open across the first run's start would add its rows: never fewer.)
        rows = {r["id"]: r["v"] for r in rows_of_job(stack, second)}
        assert rows.get(5) == "changed" and rows.get(201) == "new", rows
        assert len(rows) < 200
        third = run(stack, source_id, stream)
        assert 5 not in {r["id"] for r in rows_of_job(stack, third)}
    finally:
        db.run(f"DROP SCHEMA IF EXISTS {db.namespace} CASCADE")
        conn.close()
