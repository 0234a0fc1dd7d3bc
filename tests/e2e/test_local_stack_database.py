"""End to end over HTTP against the local stack: database sources, from connect to Parquet.

Given a table of every common type in the local PostgreSQL (its own schema, unique per
run) and one in the local MariaDB (its own database), when a client tests the
connection, connects the source, reads its schema and syncs it, then the Parquet parts
in the emulated S3 hold the table's rows value for value (timestamps to the
microsecond, decimals exact, JSON, bytes, NULLs, unicode). Rows inserted and updated
afterwards land, alone, in the folder of the next incremental job.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest

from tests.connectors import db_fixtures as fx
from tests.e2e.helpers import (
    connect,
    envelope,
    get,
    manifest,
    only_stream,
    parquet_table,
    post,
    sync,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
ROWS = 40
NULL_ROW = 2


@pytest.fixture
def workspace() -> str:
    return f"ws_e2e_{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ PostgreSQL


def pg_row(i: int) -> dict[str, Any]:
    """Row `i` as Python values; row NULL_ROW has only its key and cursor."""
    updated = dt.datetime(2024, 2, 29, 23, 59, 58, 654321, tzinfo=PLUS_TWO) + dt.timedelta(
        minutes=i, microseconds=i
    )
    if i == NULL_ROW:
        return {"id": i, "updated_at": updated}
    return {
        "id": i,
        "name": f"Zoë {i} — 東京 🚀 e\u0301",
        "amount": Decimal("-0.0001") if i == 3 else Decimal(f"{i * 1234}.{i:04d}"),
        "exact": Decimal(f"{i}.{'0' * 20}1"),
        "ratio": i / 3,
        "active": i % 2 == 0,
        "born": dt.date(2000, 1, 1) + dt.timedelta(days=i),
        "doc": {"i": i, "nested": {"list": [1, 2.5, None, "x"]}, "ü": "ß"},
        "raw": [i, "x", {"k": None}],
        "payload": bytes([0, 255, i % 256, 16]),
        "tags": ["a", f"b{i}", None],
        "created_at": dt.datetime(2024, 2, 29, 23, 59, 58, 123456) + dt.timedelta(seconds=i),
        "updated_at": updated,
    }


PG_COLUMNS = [
    "id",
    "name",
    "amount",
    "exact",
    "ratio",
    "active",
    "born",
    "doc",
    "raw",
    "payload",
    "tags",
    "created_at",
    "updated_at",
]


def pg_insert(conn: Any, schema: str, rows: list[dict[str, Any]]) -> None:
    from psycopg.types.json import Json, Jsonb

    with conn.cursor() as cur:
        for row in rows:
            values = [row.get(name) for name in PG_COLUMNS]
            values[PG_COLUMNS.index("doc")] = Jsonb(row["doc"]) if "doc" in row else None
            values[PG_COLUMNS.index("raw")] = Json(row["raw"]) if "raw" in row else None
            cur.execute(
                f"INSERT INTO {schema}.accounts ({', '.join(PG_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(PG_COLUMNS))})",
                values,
            )


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema of its own with table `accounts`, dropped afterwards."""
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    schema = f"ds_e2e_{uuid.uuid4().hex[:10]}"
    with fx.pg_connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"""CREATE TABLE {schema}.accounts (
                id bigint PRIMARY KEY, name text, amount numeric(12,4), exact numeric,
                ratio double precision, active boolean, born date, doc jsonb, raw json,
                payload bytea, tags text[], created_at timestamp(6),
                updated_at timestamptz NOT NULL)"""
        )
        pg_insert(conn, schema, [pg_row(i) for i in range(1, ROWS + 1)])
    try:
        yield schema
    finally:
        with fx.pg_connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pg_config(schema: str, **overrides: Any) -> dict[str, Any]:
    return {
        "host": fx.HOST,
        "port": fx.PG_PORT,
        "database": fx.DATABASE,
        "username": fx.USER,
        "password": fx.PASSWORD,
        "engine": "postgresql",
        "schema": schema,
        "connect_timeout": 5,
        **overrides,
    }


def assert_pg_rows_equal(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    for back, row in zip(got, expected, strict=True):
        where = f"row {row['id']}"
        if "name" not in row:  # the NULL row
            assert {
                k: v for k, v in back.items() if k not in ("id", "updated_at")
            } == dict.fromkeys(PG_COLUMNS[1:-1]), where
            assert back["updated_at"] == row["updated_at"], where
            continue
        assert back["name"] == row["name"], where
        # numeric(12,4): exact, as a Decimal with the column's scale.
        assert isinstance(back["amount"], Decimal) and back["amount"] == row["amount"], where
        assert str(back["amount"]) == str(row["amount"].quantize(Decimal("0.0001"))), where
        # numeric without precision: PostgreSQL's exact text.
        assert back["exact"] == format(row["exact"], "f"), where
        assert back["ratio"] == row["ratio"], where
        assert back["active"] is row["active"], where
        assert back["born"] == row["born"], where
        assert json.loads(back["doc"]) == row["doc"], where
        assert json.loads(back["raw"]) == row["raw"], where
        assert back["payload"] == row["payload"], where
        assert json.loads(back["tags"]) == row["tags"], where
        assert back["created_at"] == row["created_at"], where  # wall time, microseconds
        # timestamptz: the same instant, to the microsecond, written as UTC.
        assert back["updated_at"] == row["updated_at"], where
        assert back["updated_at"].utcoffset() == dt.timedelta(0), where
        assert back["updated_at"].microsecond == row["updated_at"].microsecond, where


def test_postgres_source_test_schema_sync_and_incremental(
    local_stack: LocalStack, workspace: str, pg_schema: str
) -> None:
    stack = local_stack
    config = pg_config(pg_schema)

    # Test the connection before saving: reachable, with the server's own version.
    with fx.pg_connect() as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    tested = post(
        stack,
        workspace,
        "test-connection",
        {"source_config": {"type": "database", "connection_config": config}},
    )
    result = envelope(tested, 200)
    assert result["reachable"] is True and result["latency_ms"] >= 0
    assert result["details"]["engine"] == "postgresql"
    assert result["details"]["server_version"] == server_version
    assert result["details"]["database"] == fx.DATABASE
    assert fx.PASSWORD not in tested.text

    # A wrong password fails at stage auth and is never echoed.
    wrong = post(
        stack,
        workspace,
        "test-connection",
        {
            "source_config": {
                "type": "database",
                "connection_config": {**config, "password": "not-the-Password-9"},
            }
        },
    )
    assert envelope(wrong, 400)["stage"] == "auth"
    assert "not-the-Password-9" not in wrong.text

    # Connect: the password is masked in the answer and in the list.
    source = connect(stack, workspace, "database", "pg_accounts", config)
    assert source["type"] == "database"
    assert source["connection_config"]["password"] == "********"
    assert source["connection_config"]["engine"] == "postgresql"
    listed = envelope(get(stack, workspace, "list", {"scope": "user"}), 200)
    assert [s["id"] for s in listed] == [source["id"]]
    assert fx.PASSWORD not in json.dumps(listed)

    # Schema: types, primary key, cursor candidates and the cursor a sync would use.
    schema = envelope(
        get(stack, workspace, "schema", {"source_id": source["id"], "scope": "user"}), 200
    )
    (table,) = schema["tables"]
    stream = f"{pg_schema}.accounts"
    assert table["name"] == stream
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types == {
        "id": "integer",
        "name": "string",
        "amount": "decimal",
        "exact": "decimal",
        "ratio": "number",
        "active": "boolean",
        "born": "date",
        "doc": "json",
        "raw": "json",
        "payload": "binary",
        "tags": "array",
        "created_at": "timestamp",
        "updated_at": "timestamp_tz",
    }
    natives = {c["name"]: c["native_type"] for c in table["columns"]}
    assert natives["amount"] == "numeric(12,4)" and natives["updated_at"].startswith("timestamp")
    nullable = {c["name"]: c["nullable"] for c in table["columns"]}
    assert nullable["id"] is False and nullable["updated_at"] is False and nullable["name"] is True
    assert table["primary_key"] == ["id"]
    assert table["cursor_candidates"][0] == "updated_at"
    assert "id" in table["cursor_candidates"]
    assert table["cursor_field"] == "updated_at"

    # First sync (incremental, no state yet): every row, in several parts.
    first = sync(stack, workspace, source["id"], batch_size=15)
    assert first["status"] == "completed", first
    assert first["records_processed"] == ROWS
    first_stream = only_stream(first)
    assert first_stream["stream"] == stream
    assert first_stream["mode"] == "incremental" and first_stream["cursor_field"] == "updated_at"
    assert first_stream["parts"] == 3
    table_back, parts = parquet_table(stack, first_stream["output"])
    assert parts == 3
    arrow = table_back.schema
    assert arrow.field("amount").type == pa.decimal128(12, 4)
    assert pa.types.is_string(arrow.field("exact").type)
    assert arrow.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert arrow.field("created_at").type == pa.timestamp("us")
    assert pa.types.is_binary(arrow.field("payload").type)
    assert arrow.field("born").type == pa.date32()
    got = sorted(table_back.to_pylist(), key=lambda r: r["id"])
    assert_pg_rows_equal(got, [pg_row(i) for i in range(1, ROWS + 1)])

    # New rows, one at the exact cursor boundary with a larger key, and two updates.
    last_cursor = pg_row(ROWS)["updated_at"]
    later = last_cursor + dt.timedelta(hours=1)
    new_rows = [
        {**pg_row(i), "updated_at": later + dt.timedelta(microseconds=i)} for i in range(41, 46)
    ]
    boundary = {**pg_row(46), "updated_at": last_cursor}
    with fx.pg_connect() as conn:
        pg_insert(conn, pg_schema, [*new_rows, boundary])
        conn.execute(
            f"UPDATE {pg_schema}.accounts SET name = 'changed ' || id, "
            "updated_at = %s WHERE id IN (3, 7)",
            (later + dt.timedelta(hours=1, microseconds=7),),
        )

    second = sync(stack, workspace, source["id"], batch_size=15)
    assert second["status"] == "completed", second
    second_stream = only_stream(second)
    assert second["records_processed"] == 8
    assert second_stream["output"] != first_stream["output"]
    assert f"/job={second['job_id']}/" in second_stream["output"]
    back, _ = parquet_table(stack, second_stream["output"])
    rows = sorted(back.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [3, 7, 41, 42, 43, 44, 45, 46]
    by_id = {r["id"]: r for r in rows}
    assert by_id[3]["name"] == "changed 3" and by_id[7]["name"] == "changed 7"
    assert by_id[3]["amount"] == Decimal("-0.0001")
    assert_pg_rows_equal([by_id[i] for i in range(41, 47)], [*new_rows, boundary])
    changes = manifest(stack, second_stream["output"])
    assert changes["mode"] == "incremental" and changes["record_count"] == 8
    assert changes["cursor_field"] == "updated_at"

    # Nothing changed since: the next incremental run lands nothing.
    third = sync(stack, workspace, source["id"])
    assert third["status"] == "completed" and third["records_processed"] == 0

    cleaned = envelope(post(stack, workspace, "cleanup", {"source_ids": [source["id"]]}), 200)
    assert cleaned["deleted_source_ids"] == [source["id"]]


# ------------------------------------------------------------------ MariaDB


def my_row(i: int) -> dict[str, Any]:
    updated = dt.datetime(2024, 2, 29, 23, 59, 58, 123456) + dt.timedelta(minutes=i, microseconds=i)
    if i == NULL_ROW:
        return {"id": i, "updated_at": updated}
    return {
        "id": i,
        "name": f"Zoë {i} — 東京 🚀",
        "amount": Decimal(f"-{i}.0001") if i % 5 == 0 else Decimal(f"{i * 1234}.{i:04d}"),
        "doc": {"i": i, "ü": "ß", "list": [1, 2.5, None]},
        "payload": bytes([0, 255, i % 256]),
        "active": i % 2 == 1,
        "seen_at": dt.datetime(2024, 2, 29, 21, 59, 58, 654321, tzinfo=UTC)
        + dt.timedelta(seconds=i),
        "updated_at": updated,
    }


@pytest.fixture
def my_database() -> Iterator[str]:
    """A MariaDB database of its own with table `accounts`, dropped afterwards."""
    fx.require_server(fx.my_connect, "MariaDB", fx.MYSQL_PORT)
    name = f"ds_e2e_{uuid.uuid4().hex[:10]}"
    with fx.my_connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE {name}")
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(
            """CREATE TABLE accounts (id bigint PRIMARY KEY, name varchar(100),
                amount decimal(12,4), doc json, payload varbinary(16), active boolean,
                seen_at timestamp(6) NULL, updated_at datetime(6) NOT NULL)"""
        )
        for i in range(1, ROWS + 1):
            row = my_row(i)
            cur.execute(
                "INSERT INTO accounts VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row["id"],
                    row.get("name"),
                    row.get("amount"),
                    json.dumps(row["doc"], ensure_ascii=False) if "doc" in row else None,
                    row.get("payload"),
                    row.get("active"),
                    row["seen_at"].replace(tzinfo=None) if "seen_at" in row else None,
                    row["updated_at"],
                ),
            )
    try:
        yield name
    finally:
        with fx.my_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.mysql
def test_mariadb_source_test_schema_and_sync(
    local_stack: LocalStack, workspace: str, my_database: str
) -> None:
    stack = local_stack
    config = {
        "host": fx.HOST,
        "port": fx.MYSQL_PORT,
        "database": my_database,
        "username": fx.USER,
        "password": fx.PASSWORD,
        "engine": "mariadb",
        "connect_timeout": 5,
    }
    with fx.my_connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        version = cur.fetchone()[0]

    tested = post(
        stack,
        workspace,
        "test-connection",
        {"source_config": {"type": "database", "connection_config": config}},
    )
    result = envelope(tested, 200)
    assert result["reachable"] is True
    assert result["details"]["server_version"] == version
    assert result["details"]["flavor"] == "mariadb"
    assert result["details"]["database"] == my_database
    assert fx.PASSWORD not in tested.text

    source = connect(stack, workspace, "database", "maria_accounts", config)
    assert source["connection_config"]["password"] == "********"
    schema = envelope(
        get(stack, workspace, "schema", {"source_id": source["id"], "scope": "user"}), 200
    )
    (table,) = schema["tables"]
    assert table["name"] == "accounts"
    assert {c["name"]: c["type"] for c in table["columns"]} == {
        "id": "integer",
        "name": "string",
        "amount": "decimal",
        "doc": "json",
        "payload": "binary",
        "active": "boolean",
        "seen_at": "timestamp_tz",
        "updated_at": "timestamp",
    }
    assert table["primary_key"] == ["id"]
    assert table["cursor_candidates"][0] == "updated_at"
    assert table["cursor_field"] == "updated_at"

    job = sync(stack, workspace, source["id"], batch_size=25)
    assert job["status"] == "completed", job
    assert job["records_processed"] == ROWS
    stream = only_stream(job)
    assert stream["parts"] == 2
    back, _ = parquet_table(stack, stream["output"])
    assert back.schema.field("amount").type == pa.decimal128(12, 4)
    assert back.schema.field("seen_at").type == pa.timestamp("us", tz="UTC")
    rows = sorted(back.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(1, ROWS + 1))
    for got in rows:
        row = my_row(got["id"])
        where = f"row {row['id']}"
        assert got["updated_at"] == row["updated_at"], where  # datetime(6): wall time, µs
        if "name" not in row:
            assert [got[k] for k in ("name", "amount", "doc", "payload", "active", "seen_at")] == [
                None
            ] * 6, where
            continue
        assert got["name"] == row["name"], where
        assert isinstance(got["amount"], Decimal) and got["amount"] == row["amount"], where
        assert json.loads(got["doc"]) == row["doc"], where
        assert got["payload"] == row["payload"], where
        assert got["active"] is row["active"], where
        assert got["seen_at"] == row["seen_at"], where  # timestamp(6): the instant, in UTC

    # Two more rows and one update: only they land in the next job's folder.
    with fx.my_connect(my_database) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(
            "INSERT INTO accounts (id, name, updated_at) VALUES "
            "(41, 'new', '2030-01-01 00:00:00.000001'), (42, 'néw', '2030-01-01 00:00:00.000002')"
        )
        cur.execute("UPDATE accounts SET name = 'changed', updated_at = '2030-01-02' WHERE id = 5")
    second = sync(stack, workspace, source["id"])
    assert second["status"] == "completed" and second["records_processed"] == 3
    back, _ = parquet_table(stack, only_stream(second)["output"])
    assert sorted((r["id"], r["name"]) for r in back.to_pylist()) == [
        (5, "changed"),
        (41, "new"),
        (42, "néw"),
    ]
