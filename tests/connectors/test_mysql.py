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
import pymysql
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


def test_check_given_valid_credentials_then_reachable_with_version(db_context):
    conn = connector(db_context)
    result = conn.check()
    conn.close()
    assert result.reachable is True
    assert result.details["engine"] == "mariadb"
    assert "MariaDB" in result.details["server_version"]
    assert result.details["database"] == fx.MY_DB
    assert result.details["ssl_mode"] == "prefer"


def test_check_given_engine_inferred_as_mysql_then_mariadb_server_still_works(db_context):
    conn = connector(db_context, engine="mysql")
    assert conn.check().details["flavor"] == "mariadb"
    conn.close()


def test_config_given_a_schema_other_than_the_database_then_validation_error(db_context):
    with pytest.raises(ValidationFailed, match="schema is the database"):
        connector(db_context, schema="public")


# ---------------------------------------------------------------- discover


def test_discover_then_tables_views_types_keys_and_estimates(db_context):
    conn = connector(db_context)
    tables = {t.name: t for t in conn.discover()}
    conn.close()
    assert set(tables) == {"all_types", "big", "big_view", "composite", "no_pk", fx.WEIRD_TABLE}
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
    assert tables["composite"].primary_key == ["region", "seq"]
    assert tables["no_pk"].primary_key == []
    big = tables["big"]
    assert big.cursor_candidates == ["updated_at", "id", "created_at"]
    assert big.row_count_estimate is not None
    assert abs(big.row_count_estimate - fx.BIG_ROWS) < fx.BIG_ROWS * 0.2
    assert tables["big_view"].kind == "view" and tables["big_view"].row_count_estimate is None


def test_discover_given_include_and_exclude_lists_then_only_those_tables(db_context):
    conn = connector(db_context, tables=["big", "composite", "no_*"], exclude_tables=["no_pk"])
    names = [t.name for t in conn.discover()]
    conn.close()
    assert names == ["big", "composite"]


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
    assert all(v is None for k, v in rows[2].items() if k != "id")
    assert rows[3]["c_text"] == ""
    assert rows[3]["c_decimal"] == Decimal("-0.0001")
    assert rows[3]["c_json"] == "null"


def test_read_given_hostile_table_and_column_names_then_quoted_not_injected(db_context):
    conn = connector(db_context)
    rows = read_all(conn, fx.WEIRD_TABLE)[0].records.to_pylist()
    conn.close()
    assert rows == [{"id": 1, fx.WEIRD_COLUMN: "x"}]
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


# ---------------------------------------------------------------- read: batches and resumption


def test_read_big_table_in_batches_then_bounded_sizes_and_every_row_once(db_context):
    conn = connector(db_context)
    batches = read_all(conn, "big", size=30_000)
    conn.close()
    assert [b.num_rows for b in batches] == [30_000, 30_000, 30_000, 10_000]
    assert ids_of(batches) == list(range(1, fx.BIG_ROWS + 1))
    first = batches[0].records.slice(0, 1).to_pylist()[0]
    assert first["amount"] == Decimal("1.25")
    assert first["updated_at"] == fx.BIG_START + dt.timedelta(seconds=1)


def test_read_resumed_from_a_mid_table_token_then_exactly_the_remaining_rows(db_context):
    conn = connector(db_context)
    iterator = conn.read("big", StreamState(), 7_000)
    next(iterator)
    second = next(iterator)
    iterator.close()
    token = json.loads(json.dumps(second.resume_token))
    rest = read_all(conn, "big", StreamState(resume_token=token), size=25_000)
    conn.close()
    assert ids_of(rest) == list(range(14_001, fx.BIG_ROWS + 1))


def test_read_composite_key_resumed_then_exactly_the_remaining_rows(db_context):
    conn = connector(db_context)
    keys = [(r["region"], r["seq"]) for r in read_all(conn, "composite")[0].records.to_pylist()]
    assert len(keys) == 150 and keys[0] == ("ap", 1) and keys[-1] == ("us", 50)
    iterator = conn.read("composite", StreamState(), 40)
    token = next(iterator).resume_token
    iterator.close()
    rest = read_all(conn, "composite", StreamState(resume_token=token), size=1000)
    conn.close()
    assert [(r["region"], r["seq"]) for b in rest for r in b.records.to_pylist()] == keys[40:]


def test_read_table_without_key_resumed_by_offset_then_every_row_once(db_context):
    conn = connector(db_context)
    iterator = conn.read("no_pk", StreamState(), 300)
    first = next(iterator)
    iterator.close()  # stopped mid-result: the connector drops the connection, no drain
    rest = read_all(conn, "no_pk", StreamState(resume_token=first.resume_token), size=300)
    conn.close()
    assert [b.num_rows for b in rest] == [300, 300, 100]
    seen = first.records.column("b").to_pylist() + [
        v for b in rest for v in b.records.column("b").to_pylist()
    ]
    assert sorted(seen) == sorted(f"row {g}" for g in range(1, 1001))


# ---------------------------------------------------------------- read: incremental


@pytest.fixture
def events_table():
    """A fresh table with a TIMESTAMP(6) update column, 10 rows at minutes 1..10."""
    admin_sql(
        "DROP TABLE IF EXISTS events",
        "CREATE TABLE events (id int PRIMARY KEY, updated_at timestamp(6) NULL, v text)",
    )
    values = ", ".join(f"({g}, '2024-05-01 00:{g:02d}:00.000123', 'v{g}')" for g in range(1, 11))
    admin_sql(f"INSERT INTO events VALUES {values}")
    return "events"


def test_incremental_given_inserts_and_updates_then_next_run_reads_only_changes(
    db_context, events_table
):
    conn = connector(db_context)
    run1 = read_all(conn, events_table, StreamState(cursor_field="updated_at"), size=4)
    assert ids_of(run1) == list(range(1, 11))
    state = run1[-1].cursor_state
    assert state == {"value": "2024-05-01T00:10:00.000123+00:00", "pk": [10]}
    admin_sql(
        "UPDATE events SET updated_at = '2024-06-01 00:00:00.5', v = 'changed' WHERE id = 3",
        "INSERT INTO events VALUES (11, '2024-05-02 00:00:00', 'new'), (12, NULL, 'no cursor')",
    )
    run2 = read_all(conn, events_table, StreamState(cursor_field="updated_at", cursor_state=state))
    rows = [r for b in run2 for r in b.records.to_pylist()]
    assert [(r["id"], r["v"]) for r in rows] == [(11, "new"), (3, "changed")]
    assert run2[-1].cursor_state == {"value": "2024-06-01T00:00:00.500000+00:00", "pk": [3]}
    run3 = read_all(
        conn,
        events_table,
        StreamState(cursor_field="updated_at", cursor_state=run2[-1].cursor_state),
    )
    conn.close()
    assert [b.num_rows for b in run3] == [0]


def test_incremental_upper_bound_fixed_at_run_start_then_later_rows_wait_for_next_run(
    db_context, events_table
):
    conn = connector(db_context)
    iterator = conn.read(events_table, StreamState(cursor_field="updated_at"), 3)
    first = next(iterator)
    iterator.close()
    admin_sql("INSERT INTO events VALUES (99, '2030-01-01 00:00:00', 'late')")
    rest = read_all(
        conn,
        events_table,
        StreamState(cursor_field="updated_at", resume_token=first.resume_token),
        size=3,
    )
    assert ids_of([first, *rest]) == list(range(1, 11))
    following = read_all(
        conn,
        events_table,
        StreamState(cursor_field="updated_at", cursor_state=rest[-1].cursor_state),
    )
    conn.close()
    assert ids_of(following) == [99]


def test_incremental_ties_on_cursor_then_broken_by_key_across_batches(db_context):
    admin_sql(
        "DROP TABLE IF EXISTS ties",
        "CREATE TABLE ties (id int PRIMARY KEY, seq bigint)",
        "INSERT INTO ties WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
        "WHERE n < 95) SELECT n, n DIV 10 FROM s",
    )
    conn = connector(db_context)
    ids = ids_of(read_all(conn, "ties", StreamState(cursor_field="seq"), size=7))
    conn.close()
    assert sorted(ids) == list(range(1, 96)) and len(ids) == 95


def test_read_given_column_added_between_runs_then_current_columns(db_context, events_table):
    conn = connector(db_context)
    run1 = read_all(conn, events_table, StreamState(cursor_field="updated_at"))
    admin_sql(
        "ALTER TABLE events ADD COLUMN extra decimal(5,1)",
        "INSERT INTO events VALUES (20, '2025-01-01 00:00:00', 'x', 1.5)",
    )
    run2 = read_all(
        conn,
        events_table,
        StreamState(cursor_field="updated_at", cursor_state=run1[-1].cursor_state),
    )
    conn.close()
    assert run2[0].records.to_pylist() == [
        {
            "id": 20,
            "updated_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            "v": "x",
            "extra": Decimal("1.5"),
        }
    ]


# ---------------------------------------------------------------- faults


def test_read_given_unknown_stream_then_source_read_error(db_context):
    conn = connector(db_context)
    with pytest.raises(SourceReadError, match="not found"):
        read_all(conn, "nope")
    with pytest.raises(SourceReadError, match="not found"):
        read_all(conn, "BIG")  # names are exact, even where the server compares loosely
    conn.close()


def test_read_given_table_dropped_after_discover_then_source_read_error(db_context):
    admin_sql("DROP TABLE IF EXISTS doomed", "CREATE TABLE doomed (id int PRIMARY KEY)")
    conn = connector(db_context)
    assert "doomed" in {t.name for t in conn.discover()}
    admin_sql("DROP TABLE doomed")
    with pytest.raises(SourceReadError, match="doomed"):
        read_all(conn, "doomed")
    conn.close()


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


def test_read_given_connection_killed_mid_read_then_source_read_error_quickly(db_context):
    conn = connector(db_context)
    iterator = conn.read("big", StreamState(), 1_000)
    assert next(iterator).num_rows == 1_000
    connection = conn._conn
    assert connection is not None
    thread_id = connection.thread_id()
    admin_sql(f"KILL {int(thread_id)}")
    started = time.monotonic()
    with pytest.raises(SourceReadError, match="lost"):
        for _ in iterator:
            pass
    assert time.monotonic() - started < 10
    assert read_all(conn, "composite")[0].num_rows == 150
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


def test_session_is_read_only(db_context):
    conn = connector(db_context)
    connection = conn._connection()
    with pytest.raises(pymysql.err.OperationalError) as info, connection.cursor() as cur:
        cur.execute("INSERT INTO no_pk VALUES (1, 'x')")
    assert info.value.args[0] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
    conn.close()


# ---------------------------------------------------------------- measurements


@pytest.mark.slow
def test_measure_read_throughput_on_100k_rows(db_context, record_property):
    conn = connector(db_context)
    started = time.perf_counter()
    total = sum(b.num_rows for b in conn.read("big", StreamState(), 10_000))
    elapsed = time.perf_counter() - started
    conn.close()
    assert total == fx.BIG_ROWS
    rate = total / elapsed
    record_property("rows_per_second", round(rate))
    print(f"\nMariaDB read: {total} rows in {elapsed:.2f} s = {rate:,.0f} rows/s")


@pytest.mark.slow
def test_measure_discover_on_2000_tables(db_context, record_property):
    database = "ds_many"
    with fx.my_connect() as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,)
        )
        if cur.fetchone()[0] != 2000:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
            cur.execute(f"CREATE DATABASE {database}")
            for i in range(1, 2001):
                cur.execute(
                    f"CREATE TABLE {database}.t{i} (id bigint PRIMARY KEY, updated_at "
                    "timestamp(6) NULL, name text, amount decimal(10,2), payload json, "
                    "flag boolean, created_at datetime(6), ref int)"
                )
    conn = connector(db_context, database=database)
    started = time.perf_counter()
    tables = conn.discover()
    elapsed = time.perf_counter() - started
    conn.close()
    assert len(tables) == 2000
    assert all(len(t.columns) == 8 and t.primary_key == ["id"] for t in tables)
    record_property("discover_seconds", round(elapsed, 3))
    print(f"\nMariaDB discover: 2000 tables in {elapsed:.2f} s")
    assert elapsed < 30
