"""The MySQL/MariaDB engine of the database connector against a real MariaDB 10.11.

Needs `scripts/databases.sh start` (127.0.0.1:53306). Each test says given / when / then.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.mysql import MySqlConnector, quote_ident
from datasources.errors import SourceReadError, ValidationFailed
from tests.connectors import db_fixtures as fx

pytestmark = [pytest.mark.mysql, pytest.mark.usefixtures("my_fixtures")]


def connector(context: ConnectorContext, **overrides: Any) -> MySqlConnector:
    built = open_database_connector(fx.my_config(**overrides), context)
    assert isinstance(built, MySqlConnector)
    return built


def admin_sql(*statements: str, params: Any = None) -> list[Any]:
    with fx.my_connect(fx.MY_DB) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        out: list[Any] = []
        for statement in statements:
            cur.execute(statement, params)
            out = list(cur.fetchall())
        return out


def read_all(conn: MySqlConnector, stream: str, state: StreamState | None = None, size: int = 1000):
    return list(conn.read(stream, state or StreamState(), size))


def ids_of(batches) -> list[Any]:
    return [v for b in batches for v in b.records.column("id").to_pylist()]


# ---------------------------------------------------------------- check


def test_check_given_engine_inferred_as_mysql_then_mariadb_server_still_works(db_context):
    conn = connector(db_context, engine="mysql")
    assert conn.check().details["flavor"] == "mariadb"
    conn.close()


def test_config_given_a_schema_other_than_the_database_then_validation_error(db_context):
    with pytest.raises(ValidationFailed, match="schema is the database"):
        connector(db_context, schema="public")


# ---------------------------------------------------------------- discover


def test_discover_then_each_column_has_its_normalized_type(db_context):
    # Tables, keys, cursors and estimates on both engines: test_sql_connector.py.
    conn = connector(db_context)
    tables = {t.name: t for t in conn.discover()}
    conn.close()
    types = {c.name: c.type for c in tables["all_types"].columns}
    assert types == {
        "id": "integer",
        "c_tinyint": "integer",
        "c_bool": "boolean",
        "c_bit1": "boolean",
        "c_smallint": "integer",
        "c_mediumint": "integer",
        "c_int": "integer",
        "c_bigint": "integer",
        "c_ubigint": "decimal",
        "c_year": "integer",
        "c_float": "number",
        "c_double": "number",
        "c_decimal": "decimal",
        "c_decimal_big": "decimal",
        "c_char": "string",
        "c_varchar": "string",
        "c_text": "string",
        "c_enum": "string",
        "c_set": "string",
        "c_date": "date",
        "c_time": "time",
        "c_datetime": "timestamp",
        "c_timestamp": "timestamp_tz",
        "c_json": "json",  # MariaDB: LONGTEXT with a json_valid() check
        "c_binary": "binary",
        "c_varbinary": "binary",
        "c_blob": "binary",
    }
    assert next(iter(types)) == "id" and list(types)[-1] == "c_blob"  # ordinal order


# ---------------------------------------------------------------- read: values


def test_read_full_refresh_then_every_value_keeps_its_type(db_context):
    conn = connector(db_context)
    batches = read_all(conn, "all_types")
    conn.close()
    table = batches[0].records
    assert isinstance(table, pa.Table)
    assert table.schema.field("c_timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("c_datetime").type == pa.timestamp("us")
    assert table.schema.field("c_decimal").type == pa.decimal128(12, 4)
    assert table.schema.field("c_ubigint").type == pa.decimal128(20, 0)
    rows = {r["id"]: r for r in table.to_pylist()}
    one = rows[1]
    assert one["c_tinyint"] == -128
    assert one["c_bool"] is True
    assert one["c_bit1"] is True
    assert one["c_bigint"] == 9223372036854775807
    assert one["c_ubigint"] == Decimal("18446744073709551615")
    assert one["c_year"] == 2024
    assert one["c_float"] == 1.5
    assert one["c_double"] == 3.141592653589793
    assert one["c_decimal"] == Decimal("12345678.1234")
    assert one["c_decimal_big"] == (
        "1234567890123456789012345678901234567890123456789012345.0123456789"
    )
    assert one["c_text"] == fx.UNICODE
    assert one["c_enum"] == "happy"
    assert one["c_set"] == "a,c"
    assert one["c_date"] == dt.date(2024, 2, 29)
    assert one["c_time"] == dt.time(23, 59, 59, 999999)
    assert one["c_datetime"] == fx.TS
    assert one["c_timestamp"] == fx.TSTZ
    assert json.loads(one["c_json"]) == fx.JSON_DOC
    assert one["c_binary"] == b"\x00\xff\x10"
    assert one["c_varbinary"] == b"\x00\xff"
    assert one["c_blob"] == b"\xde\xad\xbe\xef"
    # NULLs, empty text and JSON null on both engines: test_sql_connector.py.


def test_quote_ident_then_backticks_doubled():
    assert quote_ident("a`b") == "`a``b`"


def test_read_given_time_outside_a_day_then_null_with_a_note(db_context):
    admin_sql(
        "DROP TABLE IF EXISTS durations",
        "CREATE TABLE durations (id int PRIMARY KEY, d time)",
        "INSERT INTO durations VALUES (1, '01:02:03'), (2, '-01:00:00'), (3, '30:00:00')",
    )
    conn = connector(db_context)
    batch = read_all(conn, "durations")[0]
    conn.close()
    assert batch.records.column("d").to_pylist() == [dt.time(1, 2, 3), None, None]
    assert any("2 value(s)" in note for note in batch.notes)


def test_read_given_zero_dates_then_null_with_a_note(db_context):
    with fx.my_connect(fx.MY_DB) as admin, admin.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # legacy data: zero dates allowed
        cur.execute("DROP TABLE IF EXISTS zero_dates")
        cur.execute("CREATE TABLE zero_dates (id int PRIMARY KEY, d date, t datetime)")
        cur.execute(
            "INSERT INTO zero_dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), "
            "(2, '2024-01-01', '2024-01-01 10:00:00')"
        )
    conn = connector(db_context)
    batch = read_all(conn, "zero_dates")[0]
    conn.close()
    assert batch.records.to_pylist() == [
        {"id": 1, "d": None, "t": None},
        {"id": 2, "d": dt.date(2024, 1, 1), "t": dt.datetime(2024, 1, 1, 10)},
    ]
    assert len(batch.notes) == 2


# ---------------------------------------------------------------- faults


def test_read_given_table_dropped_mid_read_then_source_read_error(db_context):
    admin_sql(
        "DROP TABLE IF EXISTS doomed2",
        "CREATE TABLE doomed2 (id int PRIMARY KEY)",
        # More rows than one keyset statement reads (8 batches of 2): the drop must be
        # seen by the statement after the first.
        "INSERT INTO doomed2 VALUES " + ", ".join(f"({i})" for i in range(1, 41)),
    )
    conn = connector(db_context)
    iterator = conn.read("doomed2", StreamState(), 2)
    assert next(iterator).num_rows == 2
    admin_sql("DROP TABLE doomed2")
    with pytest.raises(SourceReadError, match="no longer exists"):
        list(iterator)
    conn.close()


def test_read_given_connection_killed_mid_stream_without_key_then_source_read_error(db_context):
    conn = connector(db_context)
    iterator = conn.read("no_pk", StreamState(), 10)
    assert next(iterator).num_rows == 10
    assert conn._conn is not None
    admin_sql(f"KILL {int(conn._conn.thread_id())}")
    started = time.monotonic()
    with pytest.raises(SourceReadError):
        for _ in iterator:
            pass
    assert time.monotonic() - started < 10
    conn.close()
