"""The PostgreSQL engine of the database connector against a real PostgreSQL 15.

Needs `scripts/databases.sh start` (127.0.0.1:55432). Each test says given / when / then.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.postgres import PostgresConnector
from datasources.errors import SourceReadError, StreamUnreadable
from tests.connectors import db_fixtures as fx

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("pg_fixtures")]

S = fx.PG_SCHEMA


def connector(context: ConnectorContext, **overrides: Any) -> PostgresConnector:
    built = open_database_connector(fx.pg_config(**overrides), context)
    assert isinstance(built, PostgresConnector)
    return built


# ---------------------------------------------------------------- discover


def test_discover_then_each_column_has_its_normalized_and_native_type(db_context):
    # Tables, keys, cursors and estimates on both engines: test_sql_connector.py.
    conn = connector(db_context)
    tables = {t.name: t for t in conn.discover()}
    conn.close()
    types = {c.name: (c.type, c.native_type) for c in tables[f"{S}.all_types"].columns}
    assert types["c_smallint"] == ("integer", "smallint")
    assert types["c_domain"] == ("integer", f"{S}.positive_int")
    assert types["c_real"][0] == "number"
    assert types["c_numeric"] == ("decimal", "numeric(12,4)")
    assert types["c_bool"][0] == "boolean"
    assert types["c_uuid"] == ("string", "uuid")
    assert types["c_enum"][0] == "string"
    assert types["c_date"][0] == "date"
    assert types["c_time"][0] == "time"
    assert types["c_ts"][0] == "timestamp"
    assert types["c_tstz"] == ("timestamp_tz", "timestamp with time zone")
    assert types["c_json"][0] == "json"
    assert types["c_jsonb"][0] == "json"
    assert types["c_bytea"][0] == "binary"
    assert types["c_int_arr"] == ("array", "integer[]")
    # Columns come in ordinal order.
    names = [c.name for c in tables[f"{S}.all_types"].columns]
    assert names[:3] == ["id", "c_smallint", "c_int"] and names[-1] == "c_money"


def test_discover_given_no_schema_then_every_non_system_schema(db_context):
    conn = connector(db_context, schema=None)
    names = {t.name for t in conn.discover()}
    conn.close()
    assert f"{S}.big" in names and f"{S}_other.elsewhere" in names
    assert not any(n.startswith(("pg_catalog.", "information_schema.")) for n in names)


def test_discover_given_schemas_list_then_both(db_context):
    conn = connector(
        db_context, schema=None, schemas=[S, f"{S}_other"], tables=["elsewhere", "big"]
    )
    names = [t.name for t in conn.discover()]
    conn.close()
    assert names == [f"{S}.big", f"{S}_other.elsewhere"]


# ---------------------------------------------------------------- read: values


def read_all(
    conn: PostgresConnector, stream: str, state: StreamState | None = None, size: int = 1000
):
    return list(conn.read(stream, state or StreamState(), size))


def test_read_full_refresh_then_every_value_keeps_its_type(db_context):
    conn = connector(db_context)
    batches = read_all(conn, f"{S}.all_types")
    conn.close()
    assert len(batches) == 1
    table = batches[0].records
    assert isinstance(table, pa.Table)
    assert table.schema.field("c_tstz").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("c_ts").type == pa.timestamp("us")
    assert table.schema.field("c_numeric").type == pa.decimal128(12, 4)
    assert table.schema.field("c_bytea").type == pa.binary()
    assert table.schema.field("c_time").type == pa.time64("us")
    rows = {r["id"]: r for r in table.to_pylist()}
    one = rows[1]
    assert one["c_smallint"] == -32768
    assert one["c_bigint"] == 9223372036854775807
    assert one["c_domain"] == 7
    assert one["c_real"] == 1.5
    assert one["c_double"] == 3.141592653589793
    assert one["c_numeric"] == Decimal("12345678.1234")
    assert one["c_numeric_free"] == "0.000000000000000000001"
    assert one["c_numeric_big"] == "1234567890123456789012345678901234567890.0123456789"
    assert one["c_bool"] is True
    assert one["c_text"] == fx.UNICODE
    assert one["c_char"] == "ab "
    assert one["c_uuid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert one["c_enum"] == "happy"
    assert one["c_inet"] == "192.168.0.1/32"
    assert one["c_interval"] == "1 day 02:03:04"
    assert one["c_date"] == dt.date(2024, 2, 29)
    assert one["c_time"] == dt.time(23, 59, 59, 999999)
    assert one["c_timetz"] == "10:00:00+02"
    assert one["c_ts"] == fx.TS
    assert one["c_tstz"] == fx.TSTZ
    assert one["c_tstz"].utcoffset() == dt.timedelta(0)
    assert json.loads(one["c_json"]) == fx.JSON_DOC
    assert json.loads(one["c_jsonb"]) == {"b": [True]}
    assert one["c_bytea"] == b"\x00\xff\x10"
    assert json.loads(one["c_int_arr"]) == [1, None, 3]
    assert json.loads(one["c_text_arr"]) == ["a", 'b"c', None]
    assert one["c_money"] == "12.34"  # as numeric text, whatever the server's locale
    # NULLs, empty text and JSON null on both engines: test_sql_connector.py.


def test_read_given_nan_in_a_bounded_numeric_then_null_with_a_note(db_context):
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {S}.nan_values")
        admin.execute(f"CREATE TABLE {S}.nan_values (id int PRIMARY KEY, v numeric(6,2))")
        admin.execute(f"INSERT INTO {S}.nan_values VALUES (1, 1.5), (2, 'NaN'), (3, NULL)")
    conn = connector(db_context)
    batch = read_all(conn, f"{S}.nan_values")[0]
    conn.close()
    assert batch.records.column("v").to_pylist() == [Decimal("1.50"), None, None]
    assert any("1 value(s)" in note for note in batch.notes)


def test_read_given_extension_types_then_their_text_not_raw_bytes(db_context):
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE EXTENSION IF NOT EXISTS citext SCHEMA {S}")
        admin.execute(f"CREATE EXTENSION IF NOT EXISTS hstore SCHEMA {S}")
        admin.execute(f"DROP TABLE IF EXISTS {S}.ext_types")
        admin.execute(
            f"CREATE TABLE {S}.ext_types (id int PRIMARY KEY, c {S}.citext, h {S}.hstore)"
        )
        admin.execute(f"INSERT INTO {S}.ext_types VALUES (1, 'MiXeD', 'a=>1')")
    conn = connector(db_context)
    table = next(t for t in conn.discover() if t.name == f"{S}.ext_types")
    rows = read_all(conn, f"{S}.ext_types")[0].records.to_pylist()
    conn.close()
    assert [c.type for c in table.columns] == ["integer", "string", "string"]
    assert rows == [{"id": 1, "c": "MiXeD", "h": '"a"=>"1"'}]


def test_read_given_infinity_date_then_source_read_error_that_says_why(db_context):
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {S}.infinite")
        admin.execute(f"CREATE TABLE {S}.infinite (id int PRIMARY KEY, d date)")
        admin.execute(f"INSERT INTO {S}.infinite VALUES (1, 'infinity')")
    conn = connector(db_context)
    with pytest.raises(SourceReadError, match="cannot be converted"):
        read_all(conn, f"{S}.infinite")
    conn.close()


# ---------------------------------------------------------------- faults


def test_read_given_statement_timeout_then_source_read_error_not_a_hang(db_context):
    conn = connector(db_context, statement_timeout_seconds=1)
    connection = conn._connection()
    started = time.monotonic()
    # A lock held by another session makes the first FETCH wait: the timeout must end it.
    with fx.pg_connect() as admin:
        admin.autocommit = False
        admin.execute(f"LOCK TABLE {S}.composite IN ACCESS EXCLUSIVE MODE")
        try:
            with pytest.raises(SourceReadError, match="timeout"):
                read_all(conn, f"{S}.composite")
        finally:
            admin.rollback()
    assert time.monotonic() - started < 10
    assert connection is not None
    conn.close()


# ---------------------------------------------------------------- errors by cause


@pytest.fixture
def limited_role() -> Iterator[tuple[str, str, str]]:
    """(schema, role, password): `ok` and `mv` (never populated) readable, `denied` not."""
    with fx.pg_limited_role("ds_sqlerr") as limited:
        yield limited


def test_discover_given_unreadable_relations_then_listed_unreadable_with_what_to_do(
    db_context, limited_role
):
    schema, role, password = limited_role
    conn = connector(db_context, schema=schema, username=role, password=password)
    tables = {t.name: t for t in conn.discover()}
    conn.close()
    assert set(tables) == {f"{schema}.ok", f"{schema}.denied", f"{schema}.mv"}
    assert tables[f"{schema}.ok"].readable and tables[f"{schema}.ok"].reason is None
    denied = tables[f"{schema}.denied"]
    assert not denied.readable
    assert f"GRANT SELECT ON {schema}.denied TO {role}" in (denied.reason or "")
    mv = tables[f"{schema}.mv"]
    assert not mv.readable and mv.kind == "materialized_view"
    assert f"REFRESH MATERIALIZED VIEW {schema}.mv" in (mv.reason or "")


@pytest.mark.parametrize("cursor", [None, "id"])
def test_read_given_unpopulated_materialized_view_then_unreadable_not_a_lost_connection(
    db_context, limited_role, cursor
):
    # 55000 is an OperationalError in psycopg, as a dropped connection is: the SQLSTATE
    # says it is a lasting condition of this view, so the stream fails and says why.
    schema, role, password = limited_role
    conn = connector(db_context, schema=schema, username=role, password=password)
    with pytest.raises(StreamUnreadable) as info:
        read_all(conn, f"{schema}.mv", StreamState(cursor_field=cursor))
    message = info.value.message
    assert f"REFRESH MATERIALIZED VIEW {schema}.mv" in message, message
    assert "has not been populated" in message
    assert "lost" not in message and "resume" not in message
    # The connector goes on with the other streams.
    assert read_all(conn, f"{schema}.ok")[0].num_rows == 25
    conn.close()
