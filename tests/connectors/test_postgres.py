"""The PostgreSQL engine of the database connector against a real PostgreSQL 15.

Needs `scripts/databases.sh start` (127.0.0.1:55432). Each test says given / when / then.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from datasources import netguard
from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.connection import effective_ssl_mode, sanitize_message
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.postgres import PostgresConnector
from datasources.errors import SourceReadError
from tests.connectors import db_fixtures as fx

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("pg_fixtures")]

S = fx.PG_SCHEMA


def connector(context: ConnectorContext, **overrides: Any) -> PostgresConnector:
    built = open_database_connector(fx.pg_config(**overrides), context)
    assert isinstance(built, PostgresConnector)
    return built


# ---------------------------------------------------------------- check


def test_check_given_valid_credentials_then_reachable_with_version(db_context):
    conn = connector(db_context)
    result = conn.check()
    conn.close()
    assert result.reachable is True
    assert result.latency_ms > 0
    assert result.details["engine"] == "postgresql"
    assert result.details["server_version"].startswith("15")
    assert result.details["database"] == fx.DATABASE
    # Loopback without an ssl_mode defaults to prefer (the test server has no certificate).
    assert result.details["ssl_mode"] == "prefer"


def test_check_given_a_name_then_connects_to_the_resolved_address(db_context):
    # The resolver maps a made-up name to loopback: libpq must use hostaddr, not DNS.
    netguard.set_resolver(lambda host, port: ["127.0.0.1"])
    conn = connector(db_context, host="pg.example.test")
    assert conn.check().reachable
    conn.close()


def test_ssl_mode_default_then_require_off_loopback_and_prefer_on_it():
    public = netguard.ResolvedHost(host="db.example.com", address="203.0.113.7", port=5432)
    local = netguard.ResolvedHost(host="localhost", address="127.0.0.1", port=5432)
    assert effective_ssl_mode(fx.pg_config(), public) == "require"
    assert effective_ssl_mode(fx.pg_config(), local) == "prefer"
    assert effective_ssl_mode(fx.pg_config(ssl_mode="verify-full"), local) == "verify-full"


def test_sanitize_message_then_no_dsn_url_or_password():
    raw = (
        "connection failed: postgresql://u:hunter22@db:5432/x password=hunter22 "
        "PWD='s p a c e' and the secret hunter22 again\n\tIs the server running?"
    )
    clean = sanitize_message(raw, ["hunter22"])
    assert "hunter22" not in clean and "s p a c e" not in clean and "postgresql://" not in clean
    assert "\n" not in clean and "Is the server running?" in clean


# ---------------------------------------------------------------- discover


def test_discover_then_tables_views_types_keys_and_estimates(db_context):
    conn = connector(db_context)
    tables = {t.name: t for t in conn.discover()}
    conn.close()
    assert set(tables) == {
        f"{S}.all_types",
        f"{S}.big",
        f"{S}.big_view",
        f"{S}.composite",
        f"{S}.no_pk",
        f"{S}.{fx.WEIRD_TABLE}",
    }
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
    # Columns come in ordinal order; NOT NULL is reported.
    names = [c.name for c in tables[f"{S}.all_types"].columns]
    assert names[:3] == ["id", "c_smallint", "c_int"] and names[-1] == "c_money"
    assert tables[f"{S}.all_types"].columns[0].nullable is False
    assert tables[f"{S}.composite"].primary_key == ["region", "seq"]
    assert tables[f"{S}.no_pk"].primary_key == []
    big = tables[f"{S}.big"]
    assert big.primary_key == ["id"]
    assert big.cursor_candidates == ["updated_at", "id", "created_at"]
    assert big.row_count_estimate is not None
    assert abs(big.row_count_estimate - fx.BIG_ROWS) < fx.BIG_ROWS * 0.1
    assert tables[f"{S}.big_view"].kind == "view"
    assert tables[f"{S}.big_view"].row_count_estimate is None


def test_discover_given_include_and_exclude_lists_then_only_those_tables(db_context):
    conn = connector(db_context, tables=[f"{S}.big", "composite", "no_*"], exclude_tables=["no_pk"])
    names = [t.name for t in conn.discover()]
    conn.close()
    assert names == [f"{S}.big", f"{S}.composite"]


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
    # Row 2 is all NULL but its key; row 3 has an empty string, a negative decimal, JSON null.
    assert all(v is None for k, v in rows[2].items() if k != "id")
    assert rows[3]["c_text"] == ""
    assert rows[3]["c_numeric"] == Decimal("-0.0001")
    assert rows[3]["c_json"] == "null"
    # A full refresh has no incremental state to commit.
    assert batches[0].cursor_state is None


def test_read_given_hostile_table_and_column_names_then_quoted_not_injected(db_context):
    conn = connector(db_context)
    rows = read_all(conn, f"{S}.{fx.WEIRD_TABLE}")[0].records.to_pylist()
    conn.close()
    assert rows == [{"id": 1, fx.WEIRD_COLUMN: "x"}]


def test_read_given_view_without_key_then_all_rows(db_context):
    conn = connector(db_context)
    rows = [r for b in read_all(conn, f"{S}.big_view") for r in b.records.to_pylist()]
    conn.close()
    assert sorted(r["id"] for r in rows) == list(range(1, 11))


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


# ---------------------------------------------------------------- read: batches and resumption


def ids_of(batches) -> list[Any]:
    return [v for b in batches for v in b.records.column("id").to_pylist()]


def test_read_big_table_in_batches_then_bounded_sizes_and_every_row_once(db_context):
    conn = connector(db_context)
    batches = read_all(conn, f"{S}.big", size=30_000)
    conn.close()
    assert [b.num_rows for b in batches] == [30_000, 30_000, 30_000, 10_000]
    assert ids_of(batches) == list(range(1, fx.BIG_ROWS + 1))
    first = batches[0].records.slice(0, 1).to_pylist()[0]
    assert first["amount"] == Decimal("1.25")
    assert first["updated_at"] == fx.BIG_START + dt.timedelta(seconds=1)


def test_read_resumed_from_a_mid_table_token_then_exactly_the_remaining_rows(db_context):
    conn = connector(db_context)
    iterator = conn.read(f"{S}.big", StreamState(), 7_000)
    first, second = next(iterator), next(iterator)
    iterator.close()  # the run stops here (time budget); a new invocation continues
    assert first.num_rows == second.num_rows == 7_000
    token = second.resume_token
    token = json.loads(json.dumps(token))  # the engine stores it as JSON text
    rest = read_all(conn, f"{S}.big", StreamState(resume_token=token), size=25_000)
    conn.close()
    assert ids_of(rest) == list(range(14_001, fx.BIG_ROWS + 1))


def test_read_composite_key_resumed_then_exactly_the_remaining_rows(db_context):
    conn = connector(db_context)
    everything = read_all(conn, f"{S}.composite", size=1000)
    keys = [(r["region"], r["seq"]) for r in everything[0].records.to_pylist()]
    assert keys == sorted(keys) and len(keys) == 150
    iterator = conn.read(f"{S}.composite", StreamState(), 40)
    token = next(iterator).resume_token
    iterator.close()
    rest = read_all(conn, f"{S}.composite", StreamState(resume_token=token), size=1000)
    conn.close()
    rest_keys = [(r["region"], r["seq"]) for b in rest for r in b.records.to_pylist()]
    assert rest_keys == keys[40:]


def test_read_table_without_key_resumed_by_offset_then_every_row_once(db_context):
    conn = connector(db_context)
    iterator = conn.read(f"{S}.no_pk", StreamState(), 300)
    first = next(iterator)
    iterator.close()
    rest = read_all(conn, f"{S}.no_pk", StreamState(resume_token=first.resume_token), size=300)
    conn.close()
    assert [b.num_rows for b in rest] == [300, 300, 100]
    seen = first.records.column("b").to_pylist() + [
        v for b in rest for v in b.records.column("b").to_pylist()
    ]
    assert sorted(seen) == sorted(f"row {g}" for g in range(1, 1001))


def test_read_given_empty_result_then_one_empty_batch_with_schema(db_context):
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {S}.empty_one")
        admin.execute(f"CREATE TABLE {S}.empty_one (id int PRIMARY KEY, v text)")
    conn = connector(db_context)
    batches = read_all(conn, f"{S}.empty_one")
    conn.close()
    assert len(batches) == 1 and batches[0].num_rows == 0
    assert batches[0].records.schema.names == ["id", "v"]


# ---------------------------------------------------------------- read: incremental


@pytest.fixture
def events_table():
    """A fresh table with an update timestamp, 10 rows at minutes 1..10."""
    name = f"{S}.events"
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {name}")
        admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, updated_at timestamptz, v text)")
        admin.execute(
            f"INSERT INTO {name} SELECT g, '2024-05-01T00:00:00Z'::timestamptz "
            "+ g * interval '1 minute' + interval '0.000123 second', 'v' || g "
            "FROM generate_series(1, 10) g"
        )
    yield name


def test_incremental_given_inserts_and_updates_then_next_run_reads_only_changes(
    db_context, events_table
):
    conn = connector(db_context)
    run1 = read_all(conn, events_table, StreamState(cursor_field="updated_at"), size=4)
    assert ids_of(run1) == list(range(1, 11))
    state = run1[-1].cursor_state
    assert state == {"value": "2024-05-01T00:10:00.000123+00:00", "pk": [10]}
    with fx.pg_connect() as admin:
        admin.execute(
            f"UPDATE {events_table} SET updated_at = '2024-06-01T00:00:00.5Z', v = 'changed' "
            "WHERE id = 3"
        )
        admin.execute(
            f"INSERT INTO {events_table} VALUES (11, '2024-05-02T00:00:00Z', 'new'), "
            "(12, NULL, 'no cursor')"
        )
    run2 = read_all(conn, events_table, StreamState(cursor_field="updated_at", cursor_state=state))
    rows = [r for b in run2 for r in b.records.to_pylist()]
    assert [(r["id"], r["v"]) for r in rows] == [(11, "new"), (3, "changed")]
    assert run2[-1].cursor_state == {"value": "2024-06-01T00:00:00.500000+00:00", "pk": [3]}
    # Nothing changed since: an empty batch that keeps the committed state.
    run3 = read_all(
        conn,
        events_table,
        StreamState(cursor_field="updated_at", cursor_state=run2[-1].cursor_state),
    )
    conn.close()
    assert [b.num_rows for b in run3] == [0]
    assert run3[0].cursor_state == run2[-1].cursor_state


def test_incremental_upper_bound_fixed_at_run_start_then_later_rows_wait_for_next_run(
    db_context, events_table
):
    conn = connector(db_context)
    iterator = conn.read(events_table, StreamState(cursor_field="updated_at"), 3)
    first = next(iterator)
    iterator.close()
    # A row arrives mid-run with a larger cursor than the run's upper bound.
    with fx.pg_connect() as admin:
        admin.execute(f"INSERT INTO {events_table} VALUES (99, '2030-01-01T00:00:00Z', 'late')")
    rest = read_all(
        conn,
        events_table,
        StreamState(cursor_field="updated_at", resume_token=first.resume_token),
        size=3,
    )
    assert ids_of([first, *rest]) == list(range(1, 11))
    committed = rest[-1].cursor_state
    following = read_all(
        conn, events_table, StreamState(cursor_field="updated_at", cursor_state=committed)
    )
    conn.close()
    assert ids_of(following) == [99]


def test_incremental_ties_on_cursor_then_broken_by_key_across_batches(db_context):
    name = f"{S}.ties"
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {name}")
        admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, seq bigint)")
        admin.execute(f"INSERT INTO {name} SELECT g, g / 10 FROM generate_series(1, 95) g")
    conn = connector(db_context)
    run = read_all(conn, name, StreamState(cursor_field="seq"), size=7)
    conn.close()
    ids = ids_of(run)
    assert sorted(ids) == list(range(1, 96)) and len(ids) == 95


def test_read_given_column_added_between_runs_then_current_columns(db_context, events_table):
    conn = connector(db_context)
    run1 = read_all(conn, events_table, StreamState(cursor_field="updated_at"))
    with fx.pg_connect() as admin:
        admin.execute(f"ALTER TABLE {events_table} ADD COLUMN extra numeric(5,1)")
        admin.execute(f"INSERT INTO {events_table} VALUES (20, '2025-01-01Z', 'x', 1.5)")
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
        read_all(conn, f"{S}.nope")
    with pytest.raises(SourceReadError, match="not found"):
        read_all(conn, "big")  # PostgreSQL streams are schema-qualified
    conn.close()


def test_read_given_excluded_stream_then_source_read_error(db_context):
    conn = connector(db_context, exclude_tables=["big"])
    with pytest.raises(SourceReadError):
        read_all(conn, f"{S}.big")
    conn.close()


def test_read_given_unknown_cursor_column_then_source_read_error(db_context):
    conn = connector(db_context)
    with pytest.raises(SourceReadError, match="cursor column"):
        read_all(conn, f"{S}.big", StreamState(cursor_field="nope"))
    conn.close()


def test_read_given_table_dropped_after_discover_then_source_read_error(db_context):
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE IF EXISTS {S}.doomed")
        admin.execute(f"CREATE TABLE {S}.doomed AS SELECT g AS id FROM generate_series(1, 10) g")
    conn = connector(db_context)
    assert f"{S}.doomed" in {t.name for t in conn.discover()}
    with fx.pg_connect() as admin:
        admin.execute(f"DROP TABLE {S}.doomed")
    with pytest.raises(SourceReadError, match="doomed"):
        read_all(conn, f"{S}.doomed")
    conn.close()


def test_read_given_backend_terminated_mid_read_then_source_read_error_quickly(db_context):
    conn = connector(db_context)
    iterator = conn.read(f"{S}.big", StreamState(), 1_000)
    assert next(iterator).num_rows == 1_000
    with fx.pg_connect() as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'datasources' AND datname = %s AND pid <> pg_backend_pid()",
            (fx.DATABASE,),
        ).fetchall()
    assert killed and all(row[0] for row in killed)
    started = time.monotonic()
    with pytest.raises(SourceReadError, match="lost"):
        for _ in iterator:
            pass
    assert time.monotonic() - started < 10
    # The connector recovers: the next read opens a fresh connection.
    assert read_all(conn, f"{S}.composite")[0].num_rows == 150
    conn.close()


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


def test_session_is_read_only(db_context):
    conn = connector(db_context)
    connection = conn._connection()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        connection.execute(f"INSERT INTO {S}.no_pk VALUES (1, 'x')")
    conn.close()


# ---------------------------------------------------------------- measurements


@pytest.mark.slow
def test_measure_read_throughput_on_100k_rows(db_context, record_property):
    conn = connector(db_context)
    started = time.perf_counter()
    total = sum(b.num_rows for b in conn.read(f"{S}.big", StreamState(), 10_000))
    elapsed = time.perf_counter() - started
    conn.close()
    assert total == fx.BIG_ROWS
    rate = total / elapsed
    record_property("rows_per_second", round(rate))
    print(f"\nPostgreSQL read: {total} rows in {elapsed:.2f} s = {rate:,.0f} rows/s")


@pytest.mark.slow
def test_measure_discover_on_2000_tables(db_context, record_property):
    schema = "ds_many"
    with fx.pg_connect() as admin:
        existing = admin.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchone()[0]
        if existing != 2000:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            admin.execute(f"CREATE SCHEMA {schema}")
            admin.execute(
                "DO $$ BEGIN FOR i IN 1..2000 LOOP EXECUTE format("
                "'CREATE TABLE ds_many.t%s (id bigint PRIMARY KEY, updated_at timestamptz, "
                "name text, amount numeric(10,2), payload jsonb, flag boolean, "
                "created_at timestamptz, ref integer)', i); END LOOP; END $$"
            )
    conn = connector(db_context, schema=schema)
    started = time.perf_counter()
    tables = conn.discover()
    elapsed = time.perf_counter() - started
    conn.close()
    assert len(tables) == 2000
    assert all(len(t.columns) == 8 and t.primary_key == ["id"] for t in tables)
    record_property("discover_seconds", round(elapsed, 3))
    print(f"\nPostgreSQL discover: 2000 tables in {elapsed:.2f} s")
    assert elapsed < 10


def test_close_given_open_connection_then_closed_and_idempotent(db_context):
    conn = connector(db_context)
    connection = conn._connection()
    conn.close()
    conn.close()
    assert connection.closed
