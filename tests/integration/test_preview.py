"""GET /preview through its real handler against emulated AWS, for each source type:
a file on S3 (moto), a PostgreSQL table (the real server) and a JSON API on loopback."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import Stack, mint
from tests.connectors import db_fixtures as fx
from tests.integration.test_endpoints import CSV, connect, file_source
from tests.support.fake_api import FakeApi


def preview(stack: Stack, source_id: str, stream: str, **query: str) -> Any:
    return stack.call(
        "preview", query={"source_id": source_id, "stream": stream, "scope": "user", **query}
    )


def only_stream(stack: Stack, source_id: str) -> dict[str, Any]:
    schema = stack.call("schema", query={"source_id": source_id, "scope": "user"})
    assert schema.status_code == 200, schema.body
    return dict(schema.data["tables"][0])


# ------------------------------------------------------------------ file


def test_a_file_preview_returns_the_first_rows_with_the_schema_column_types(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    table = only_stream(stack, source_id)

    response = preview(stack, source_id, table["name"], limit="5")

    assert response.status_code == 200, response.body
    assert response.data["columns"] == table["columns"]
    assert response.data["row_count"] == 5 and response.data["truncated"] is False
    lines = CSV.decode().splitlines()[1:6]
    expected = [line.split(",") for line in lines]
    got = response.data["rows"]
    assert [r["id"] for r in got] == [int(e[0]) for e in expected]
    assert [r["name"] for r in got] == [e[1] for e in expected]
    # An exact decimal column: its values come as decimal text, like a database's.
    assert [Decimal(r["amount"]) for r in got] == [Decimal(e[2]) for e in expected]
    parsed = [dt.datetime.fromisoformat(r["updated_at"]) for r in got]
    assert parsed == [dt.datetime.fromisoformat(e[3]) for e in expected]


def test_the_default_limit_is_20_rows(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    response = preview(stack, source_id, only_stream(stack, source_id)["name"])
    assert response.status_code == 200 and response.data["row_count"] == 20


@pytest.mark.parametrize("limit", ["0", "101", "-1", "many"])
def test_a_limit_out_of_1_to_100_is_422(stack: Stack, limit: str) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    response = preview(stack, source_id, only_stream(stack, source_id)["name"], limit=limit)
    assert response.status_code == 422
    assert response.data["errors"][0]["loc"] == "limit"


def test_an_unknown_stream_is_404_naming_it(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    response = preview(stack, source_id, "no_such_stream")
    assert response.status_code == 404
    assert response.data == {"code": "stream_not_found", "stream": "no_such_stream"}
    assert "'no_such_stream'" in response.body["message"]


def test_another_users_or_organizations_source_is_the_404_of_an_unknown_id(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    stream = only_stream(stack, source_id)["name"]
    unknown = preview(stack, "src_" + "0" * 20, stream)
    for token in (mint(sub="user-2"), mint(org="evil")):
        response = stack.call(
            "preview",
            query={"source_id": source_id, "stream": stream, "scope": "user"},
            token=token,
        )
        assert response.status_code == 404
        assert response.body["message"].replace(source_id, "ID") == unknown.body["message"].replace(
            "src_" + "0" * 20, "ID"
        )
        assert response.data == unknown.data == {"code": "source_not_found"}


def test_a_viewer_may_preview(stack: Stack) -> None:
    source_id = connect(stack, file_source(stack)).data["connected_sources"][0]["id"]
    stream = only_stream(stack, source_id)["name"]
    response = stack.call(
        "preview",
        query={"source_id": source_id, "stream": stream, "scope": "user", "limit": "1"},
        token=mint(role="viewer"),
    )
    assert response.status_code == 200 and response.data["row_count"] == 1


def test_long_values_and_large_rows_are_cut_at_the_response_size_cap(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasources.services import preview as preview_service

    long_text = "x" * 10_000
    body = "id,text\n" + "".join(f"{i},{long_text}\n" for i in range(1, 51))
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/wide.csv", Body=body.encode())
    source = {
        "type": "file",
        "name": "wide",
        "connection_config": {"url": f"s3://{stack.bucket}/uploads/acme/wide.csv"},
    }
    source_id = connect(stack, source).data["connected_sources"][0]["id"]
    stream = only_stream(stack, source_id)["name"]

    cut = preview(stack, source_id, stream, limit="3")
    assert cut.status_code == 200
    assert cut.data["truncated"] is True and cut.data["row_count"] == 3
    assert {len(r["text"]) for r in cut.data["rows"]} == {preview_service.MAX_VALUE_CHARS}

    # With a 10 KiB cap only two rows of ~4 KiB fit; the rest are left out, and said so.
    monkeypatch.setattr(preview_service, "MAX_PREVIEW_BYTES", 10_240)
    capped = preview(stack, source_id, stream, limit="50")
    assert capped.data["row_count"] == 2 and capped.data["truncated"] is True
    assert len(json.dumps(capped.data["rows"])) <= 10_240


# ------------------------------------------------------------------ database


@pytest.fixture
def pg_table() -> Iterator[tuple[Any, str]]:
    """A PostgreSQL schema (unique to this test) with one table of many types, 150 rows."""
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    conn = fx.pg_connect()
    schema = f"ds_preview_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.items (id bigint PRIMARY KEY, name text, price numeric(12,2), "
        "ratio double precision, active boolean, born date, seen_at timestamptz, "
        "local_at timestamp, doc jsonb, raw bytea, tags text[])"
    )
    conn.execute(
        f"INSERT INTO {schema}.items SELECT g, 'item ' || g || ' Zoë', g * 1.25, g / 3.0, "
        "g % 2 = 0, date '2024-01-01' + g, "
        "timestamptz '2024-05-01 12:00:00.250001+02' + g * interval '1 minute', "
        "timestamp '2024-05-01 08:00:00.5' + g * interval '1 hour', "
        "jsonb_build_object('n', g, 'l', jsonb_build_array(g, null, 'x')), "
        "decode(lpad(to_hex(g), 4, '0'), 'hex'), ARRAY['a', NULL, 't' || g] "
        # Inserted in reverse: the preview must come in key order, not physical order.
        "FROM generate_series(150, 1, -1) g"
    )
    conn.execute(f"UPDATE {schema}.items SET name = NULL, price = NULL WHERE id = 3")
    try:
        yield conn, schema
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def connect_pg(stack: Stack, schema: str) -> str:
    config = {
        "host": fx.HOST,
        "port": fx.PG_PORT,
        "database": fx.DATABASE,
        "username": fx.USER,
        "password": fx.PASSWORD,
        "engine": "postgresql",
        "schema": schema,
        "connect_timeout": 5,
    }
    body = {"sources": [{"type": "database", "name": schema, "connection_config": config}]}
    response = stack.call("connect", body=body)
    assert response.status_code == 201, response.body
    return str(response.data["connected_sources"][0]["id"])


def as_json(value: Any) -> Any:
    """What the source's own value must look like in the preview's JSON."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


@pytest.mark.postgres
def test_a_database_preview_matches_the_table_value_for_value(
    stack: Stack, pg_table: tuple[Any, str]
) -> None:
    conn, schema = pg_table
    source_id = connect_pg(stack, schema)
    table = only_stream(stack, source_id)

    response = preview(stack, source_id, f"{schema}.items", limit="100")

    assert response.status_code == 200, response.body
    assert response.data["columns"] == table["columns"]
    rows = response.data["rows"]
    assert response.data["row_count"] == len(rows) == 100
    cursor = conn.execute(f"SELECT * FROM {schema}.items ORDER BY id LIMIT 100")
    names = [d.name for d in cursor.description]
    source_rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    assert [list(r) for r in rows] == [names] * 100
    for got, want in zip(rows, source_rows, strict=True):
        # JSON and arrays arrive as JSON text, as in the landing zone.
        assert json.loads(got.pop("doc")) == want.pop("doc")
        assert json.loads(got.pop("tags")) == want.pop("tags")
        assert got == {k: as_json(v) for k, v in want.items()}
    assert rows[2]["name"] is None and rows[2]["price"] is None


# ------------------------------------------------------------------ api


def test_an_api_preview_reads_one_page_and_stops(stack: Stack) -> None:
    with FakeApi(records=500) as api:
        source = {
            "type": "api",
            "name": "items_api",
            "connection_config": {
                "base_url": api.url,
                "api_key": api.api_key,
                "resources": [{"name": "items", "path": "/items/page"}],
            },
        }
        source_id = connect(stack, source).data["connected_sources"][0]["id"]
        table = only_stream(stack, source_id)
        api.requests.clear()

        response = preview(stack, source_id, "items", limit="7")

        assert response.status_code == 200, response.body
        assert response.data["columns"] == table["columns"]
        rows = response.data["rows"]
        assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
        first = api.records[0]
        assert rows[0]["name"] == first["name"]
        # The amount is an exact decimal (issue 13): previewed as its exact text.
        assert rows[0]["price"] == "1.25" and first["price"] == 1.25
        assert dt.datetime.fromisoformat(rows[0]["updated_at"]) == dt.datetime.fromisoformat(
            first["updated_at"]
        )
        # Discovery samples the first page, the read takes one more: never all 5 pages.
        pages = [r for r in api.requests if r.path == "/items/page"]
        assert len(pages) <= 2, [r.raw_target for r in pages]


def test_the_size_cap_counts_bytes_as_the_response_encodes_them(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasources.services import preview as preview_service

    # "é" is 2 bytes of UTF-8 but 6 in the response's JSON (\u00e9).
    body = "id,text\n" + "".join(f"{i},{'é' * 3000}\n" for i in range(1, 51))
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/accents.csv", Body=body.encode())
    source = {
        "type": "file",
        "name": "accents",
        "connection_config": {"url": f"s3://{stack.bucket}/uploads/acme/accents.csv"},
    }
    source_id = connect(stack, source).data["connected_sources"][0]["id"]
    monkeypatch.setattr(preview_service, "MAX_PREVIEW_BYTES", 60_000)

    response = preview(stack, source_id, only_stream(stack, source_id)["name"], limit="50")

    assert response.status_code == 200, response.body
    assert response.data["truncated"] is True
    assert response.data["row_count"] == 3
    assert len(json.dumps(response.data["rows"])) <= 60_000


@pytest.fixture
def my_table() -> Iterator[tuple[Any, str]]:
    """A MariaDB database (unique to this test) with one table of many types, 150 rows."""
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    conn = fx.my_connect()
    database = f"ds_preview_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(
            f"CREATE TABLE {database}.items (id bigint PRIMARY KEY, name varchar(64), "
            "price decimal(12,2), ratio double, active boolean, born date, "
            "seen_at timestamp(6) NULL, local_at datetime(6), raw varbinary(8))"
        )
        cur.execute("SET time_zone = '+00:00'")
        for g in range(150, 0, -1):
            cur.execute(
                f"INSERT INTO {database}.items VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    g,
                    None if g == 3 else f"item {g} Zoë",
                    Decimal(g) * Decimal("1.25"),
                    g / 3,
                    g % 2 == 0,
                    dt.date(2024, 1, 1) + dt.timedelta(days=g),
                    dt.datetime(2024, 5, 1, 10, 0, 0, 250_001) + dt.timedelta(minutes=g),
                    dt.datetime(2024, 5, 1, 8, 0, 0, 500_000) + dt.timedelta(hours=g),
                    g.to_bytes(2, "big"),
                ),
            )
    try:
        yield conn, database
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
        conn.close()


@pytest.mark.mysql
def test_a_mariadb_preview_matches_the_table_value_for_value(
    stack: Stack, my_table: tuple[Any, str]
) -> None:
    conn, database = my_table
    config = {
        "host": fx.HOST,
        "port": fx.MYSQL_PORT,
        "database": database,
        "username": fx.USER,
        "password": fx.PASSWORD,
        "engine": "mariadb",
        "connect_timeout": 5,
    }
    body = {"sources": [{"type": "database", "name": database, "connection_config": config}]}
    source_id = connect(stack, *body["sources"]).data["connected_sources"][0]["id"]
    table = only_stream(stack, source_id)

    response = preview(stack, source_id, "items", limit="100")

    assert response.status_code == 200, response.body
    assert response.data["columns"] == table["columns"]
    rows = response.data["rows"]
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(f"SELECT * FROM {database}.items ORDER BY id LIMIT 100")
        names = [d[0] for d in cur.description]
        source_rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    assert len(rows) == 100 and [list(r) for r in rows] == [names] * 100
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert (types["seen_at"], types["active"], types["raw"]) == (
        "timestamp_tz",
        "boolean",
        "binary",
    )
    for got, want in zip(rows, source_rows, strict=True):
        expected = {k: as_json(v) for k, v in want.items()}
        # A TIMESTAMP is an instant (read in a UTC session); MariaDB's boolean is tinyint(1).
        expected["seen_at"] = want["seen_at"].replace(tzinfo=dt.UTC).isoformat()
        expected["active"] = bool(want["active"])
        assert got == expected
    assert rows[2]["name"] is None
