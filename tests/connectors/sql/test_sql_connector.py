"""What the database connector does on every engine, against the real PostgreSQL 15 and
MariaDB servers (`scripts/databases.sh start`). Each test runs once per engine through
the adapter in engines.py; each says given / when / then. What only one engine does is
in test_postgres.py and test_mysql.py.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from datasources import netguard
from datasources.connectors.base import StreamState
from datasources.connectors.sql.base import SqlConnector
from datasources.connectors.sql.connection import effective_ssl_mode, sanitize_message
from datasources.errors import SourceReadError, StreamUnreadable
from tests.connectors import db_fixtures as fx
from tests.connectors.sql.engines import Engine, version_matches


def read_all(
    conn: SqlConnector, stream: str, state: StreamState | None = None, size: int = 1000
) -> list[Any]:
    return list(conn.read(stream, state or StreamState(), size))


def ids_of(batches: list[Any]) -> list[Any]:
    return [v for b in batches for v in b.records.column("id").to_pylist()]


def rows_of(batches: list[Any]) -> list[dict[str, Any]]:
    return [r for b in batches for r in b.records.to_pylist()]


# ---------------------------------------------------------------- connection (no server)


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


# ---------------------------------------------------------------- check


def test_check_given_valid_credentials_then_reachable_with_version(engine: Engine, db_context):
    conn = engine.connector(db_context)
    result = conn.check()
    conn.close()
    assert result.reachable is True
    assert result.latency_ms > 0
    assert result.details["engine"] == engine.name
    assert version_matches(engine, result.details["server_version"])
    assert result.details["database"] == engine.database
    # Loopback without an ssl_mode defaults to prefer (the test servers have no certificate).
    assert result.details["ssl_mode"] == "prefer"


def test_check_given_a_name_then_connects_to_the_resolved_address(engine: Engine, db_context):
    # The resolver maps a made-up name to loopback: the driver must use that address.
    netguard.set_resolver(lambda host, port: ["127.0.0.1"])
    conn = engine.connector(db_context, host="db.example.test")
    assert conn.check().reachable
    conn.close()


# ---------------------------------------------------------------- discover


def test_discover_then_tables_views_keys_cursors_and_estimates(engine: Engine, db_context):
    conn = engine.connector(db_context)
    tables = {t.name: t for t in conn.discover()}
    conn.close()
    s = engine.stream
    # Every fixture relation; other tests (here and in parallel runs) add scratch tables
    # to the same schema, so the set is not compared whole.
    fixture = {s(n) for n in ("all_types", "big", "big_view", "composite", "no_pk", fx.WEIRD_TABLE)}
    assert fixture <= set(tables)
    assert tables[s("all_types")].columns[0].name == "id"
    assert tables[s("all_types")].columns[0].nullable is False
    assert tables[s("composite")].primary_key == ["region", "seq"]
    assert tables[s("no_pk")].primary_key == []
    big = tables[s("big")]
    assert big.primary_key == ["id"]
    assert big.cursor_candidates == ["updated_at", "id", "created_at"]
    assert big.row_count_estimate is not None
    assert abs(big.row_count_estimate - fx.BIG_ROWS) < fx.BIG_ROWS * engine.estimate_tolerance
    assert tables[s("big_view")].kind == "view"
    assert tables[s("big_view")].row_count_estimate is None


def test_discover_given_include_and_exclude_lists_then_only_those_tables(
    engine: Engine, db_context
):
    # Patterns may name the stream or the bare table, and glob.
    conn = engine.connector(
        db_context, tables=[engine.stream("big"), "composite", "no_*"], exclude_tables=["no_pk"]
    )
    names = [t.name for t in conn.discover()]
    conn.close()
    assert names == [engine.stream("big"), engine.stream("composite")]


@pytest.mark.parametrize("column", ["LastUpdated", "last_updated"])
def test_discover_given_a_last_updated_column_in_any_spelling_then_it_is_the_first_cursor(
    engine: Engine, db_context, column: str
):
    # The same column is a cursor on every engine: one set of rules (datasources.types).
    table = f"sqlsuite_cursor_{column.lower()}"
    engine.admin(
        f"DROP TABLE IF EXISTS {engine.relation(table)}",
        f"CREATE TABLE {engine.relation(table)} (id int PRIMARY KEY, "
        f"{engine.quote(column)} {engine.timestamp_tz}, note text)",
    )
    try:
        conn = engine.connector(db_context, tables=[table])
        found = {t.name: t for t in conn.discover()}
        conn.close()
        assert found[engine.stream(table)].cursor_candidates == [column, "id"]
    finally:
        engine.admin(f"DROP TABLE IF EXISTS {engine.relation(table)}")


# ---------------------------------------------------------------- read: values


def test_read_given_nulls_empty_text_negative_decimal_and_json_null_then_kept(
    engine: Engine, db_context
):
    conn = engine.connector(db_context)
    batches = read_all(conn, engine.stream("all_types"))
    conn.close()
    assert len(batches) == 1
    assert isinstance(batches[0].records, pa.Table)
    rows = {r["id"]: r for r in rows_of(batches)}
    # Row 2 is all NULL but its key; row 3 has an empty string, a negative decimal, JSON null.
    assert all(v is None for k, v in rows[2].items() if k != "id")
    assert rows[3]["c_text"] == ""
    assert rows[3][engine.decimal_column] == Decimal("-0.0001")
    assert rows[3]["c_json"] == "null"
    assert rows[1]["c_text"] == fx.UNICODE
    # A full refresh has no incremental state to commit.
    assert batches[0].cursor_state is None


def test_read_given_hostile_table_and_column_names_then_quoted_not_injected(
    engine: Engine, db_context
):
    conn = engine.connector(db_context)
    rows = read_all(conn, engine.stream(fx.WEIRD_TABLE))[0].records.to_pylist()
    conn.close()
    assert rows == [{"id": 1, fx.WEIRD_COLUMN: "x"}]


def test_read_given_view_without_key_then_all_rows(engine: Engine, db_context):
    conn = engine.connector(db_context)
    rows = rows_of(read_all(conn, engine.stream("big_view")))
    conn.close()
    assert sorted(r["id"] for r in rows) == list(range(1, 11))


# ---------------------------------------------------------------- read: batches and resumption


def test_read_big_table_in_batches_then_bounded_sizes_and_every_row_once(
    engine: Engine, db_context
):
    conn = engine.connector(db_context)
    batches = read_all(conn, engine.stream("big"), size=30_000)
    conn.close()
    assert [b.num_rows for b in batches] == [30_000, 30_000, 30_000, 10_000]
    assert ids_of(batches) == list(range(1, fx.BIG_ROWS + 1))
    first = batches[0].records.slice(0, 1).to_pylist()[0]
    assert first["amount"] == Decimal("1.25")
    assert first["updated_at"] == fx.BIG_START + dt.timedelta(seconds=1)


def test_read_resumed_from_a_mid_table_token_then_exactly_the_remaining_rows(
    engine: Engine, db_context
):
    conn = engine.connector(db_context)
    iterator = conn.read(engine.stream("big"), StreamState(), 7_000)
    first, second = next(iterator), next(iterator)
    iterator.close()  # the run stops here (time budget); a new invocation continues
    assert first.num_rows == second.num_rows == 7_000
    token = json.loads(json.dumps(second.resume_token))  # the engine stores it as JSON text
    rest = read_all(conn, engine.stream("big"), StreamState(resume_token=token), size=25_000)
    conn.close()
    assert ids_of(rest) == list(range(14_001, fx.BIG_ROWS + 1))


def test_read_composite_key_resumed_then_exactly_the_remaining_rows(engine: Engine, db_context):
    conn = engine.connector(db_context)
    stream = engine.stream("composite")
    keys = [(r["region"], r["seq"]) for r in rows_of(read_all(conn, stream, size=1000))]
    assert keys == sorted(keys) and len(keys) == 150
    assert keys[0] == ("ap", 1) and keys[-1] == ("us", 50)
    iterator = conn.read(stream, StreamState(), 40)
    token = next(iterator).resume_token
    iterator.close()
    rest = read_all(conn, stream, StreamState(resume_token=token), size=1000)
    conn.close()
    assert [(r["region"], r["seq"]) for r in rows_of(rest)] == keys[40:]


def test_read_table_without_key_resumed_by_offset_then_every_row_once(engine: Engine, db_context):
    conn = engine.connector(db_context)
    stream = engine.stream("no_pk")
    iterator = conn.read(stream, StreamState(), 300)
    first = next(iterator)
    iterator.close()  # stopped mid-result: no drain of the rest of the table
    rest = read_all(conn, stream, StreamState(resume_token=first.resume_token), size=300)
    conn.close()
    assert [b.num_rows for b in rest] == [300, 300, 100]
    seen = first.records.column("b").to_pylist() + [
        v for b in rest for v in b.records.column("b").to_pylist()
    ]
    assert sorted(seen) == sorted(f"row {g}" for g in range(1, 1001))


def test_read_given_empty_result_then_one_empty_batch_with_schema(engine: Engine, db_context):
    table = engine.relation("empty_one")
    engine.admin(
        f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} (id int PRIMARY KEY, v text)"
    )
    conn = engine.connector(db_context)
    batches = read_all(conn, engine.stream("empty_one"))
    conn.close()
    assert len(batches) == 1 and batches[0].num_rows == 0
    assert batches[0].records.schema.names == ["id", "v"]


# ---------------------------------------------------------------- read: incremental


@pytest.fixture
def events_table(engine: Engine) -> str:
    """A fresh table with an update timestamp, 10 rows at minutes 1..10 (+123 µs)."""
    table = engine.relation("events")
    engine.admin(
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (id int PRIMARY KEY, updated_at {engine.timestamp_tz}, v text)",
        f"INSERT INTO {table} VALUES "
        + ", ".join(
            f"({g}, {engine.ts(f'2024-05-01 00:{g:02d}:00.000123')}, 'v{g}')" for g in range(1, 11)
        ),
    )
    return engine.stream("events")


def test_incremental_given_inserts_and_updates_then_next_run_reads_only_changes(
    engine: Engine, db_context, events_table: str
):
    conn = engine.connector(db_context)
    run1 = read_all(conn, events_table, StreamState(cursor_field="updated_at"), size=4)
    assert ids_of(run1) == list(range(1, 11))
    state = run1[-1].cursor_state
    assert state == {"value": "2024-05-01T00:10:00.000123+00:00", "pk": [10]}
    table = engine.relation("events")
    engine.admin(
        f"UPDATE {table} SET updated_at = {engine.ts('2024-06-01 00:00:00.5')}, v = 'changed' "
        "WHERE id = 3",
        f"INSERT INTO {table} VALUES (11, {engine.ts('2024-05-02 00:00:00')}, 'new'), "
        "(12, NULL, 'no cursor')",
    )
    run2 = read_all(conn, events_table, StreamState(cursor_field="updated_at", cursor_state=state))
    assert [(r["id"], r["v"]) for r in rows_of(run2)] == [(11, "new"), (3, "changed")]
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
    engine: Engine, db_context, events_table: str
):
    conn = engine.connector(db_context)
    iterator = conn.read(events_table, StreamState(cursor_field="updated_at"), 3)
    first = next(iterator)
    iterator.close()
    # A row arrives mid-run with a larger cursor than the run's upper bound.
    engine.admin(
        f"INSERT INTO {engine.relation('events')} VALUES "
        f"(99, {engine.ts('2030-01-01 00:00:00')}, 'late')"
    )
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


def test_incremental_ties_on_cursor_then_broken_by_key_across_batches(engine: Engine, db_context):
    table = engine.relation("ties")
    engine.admin(
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (id int PRIMARY KEY, seq bigint)",
        f"INSERT INTO {table} VALUES " + engine.values([(g, g // 10) for g in range(1, 96)]),
    )
    conn = engine.connector(db_context)
    ids = ids_of(read_all(conn, engine.stream("ties"), StreamState(cursor_field="seq"), size=7))
    conn.close()
    assert sorted(ids) == list(range(1, 96)) and len(ids) == 95


def test_read_given_column_added_between_runs_then_current_columns(
    engine: Engine, db_context, events_table: str
):
    conn = engine.connector(db_context)
    run1 = read_all(conn, events_table, StreamState(cursor_field="updated_at"))
    table = engine.relation("events")
    engine.admin(
        f"ALTER TABLE {table} ADD COLUMN extra decimal(5,1)",
        f"INSERT INTO {table} VALUES (20, {engine.ts('2025-01-01 00:00:00')}, 'x', 1.5)",
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


def test_read_given_unknown_stream_then_source_read_error(engine: Engine, db_context):
    conn = engine.connector(db_context)
    with pytest.raises(SourceReadError, match="not found"):
        read_all(conn, engine.stream("nope"))
    with pytest.raises(SourceReadError, match="not found"):
        # Not schema-qualified on PostgreSQL; another case on MariaDB (names are exact,
        # even where the server compares loosely).
        read_all(conn, engine.near_miss_stream)
    conn.close()


def test_read_given_excluded_stream_then_source_read_error(engine: Engine, db_context):
    conn = engine.connector(db_context, exclude_tables=["big"])
    with pytest.raises(SourceReadError):
        read_all(conn, engine.stream("big"))
    conn.close()


def test_read_given_unknown_cursor_column_then_source_read_error(engine: Engine, db_context):
    conn = engine.connector(db_context)
    with pytest.raises(SourceReadError, match="cursor column"):
        read_all(conn, engine.stream("big"), StreamState(cursor_field="nope"))
    conn.close()


def test_read_given_table_dropped_after_discover_then_source_read_error(engine: Engine, db_context):
    table = engine.relation("doomed")
    engine.admin(
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (id int PRIMARY KEY)",
        f"INSERT INTO {table} VALUES " + engine.values([(g,) for g in range(1, 11)]),
    )
    conn = engine.connector(db_context)
    assert engine.stream("doomed") in {t.name for t in conn.discover()}
    engine.admin(f"DROP TABLE {table}")
    with pytest.raises(SourceReadError, match="doomed"):
        read_all(conn, engine.stream("doomed"))
    conn.close()


def test_read_given_session_killed_mid_read_then_lost_quickly_and_next_read_reconnects(
    engine: Engine, db_context
):
    conn = engine.connector(db_context)
    iterator = conn.read(engine.stream("big"), StreamState(), 1_000)
    assert next(iterator).num_rows == 1_000
    engine.kill_sessions(conn)
    started = time.monotonic()
    with pytest.raises(SourceReadError, match="lost"):
        for _ in iterator:
            pass
    assert time.monotonic() - started < 10
    # The connector recovers: the next read opens a fresh connection.
    assert read_all(conn, engine.stream("composite"))[0].num_rows == 150
    conn.close()


def test_read_given_table_without_select_permission_then_unreadable_with_the_grant(
    engine: Engine, db_context
):
    # A lasting condition of that one stream: not a lost connection, and it says what to do.
    with engine.limited_access() as limited:
        conn = engine.connector(db_context, **limited.overrides)
        # Visible to the user (it holds a privilege on it, or may list it), not readable.
        assert limited.stream("denied") in {t.name for t in conn.discover()}
        with pytest.raises(StreamUnreadable) as info:
            read_all(conn, limited.stream("denied"))
        message = info.value.message
        assert limited.grant in message, message
        assert "permission denied" in message and "lost" not in message
        assert limited.password not in message
        # The connector goes on with the other streams.
        assert read_all(conn, limited.stream("ok"))[0].num_rows == 25
        conn.close()


def test_session_is_read_only(engine: Engine, db_context):
    conn = engine.connector(db_context)
    connection = conn._connection()
    engine.assert_write_refused(
        connection, f"INSERT INTO {engine.relation('no_pk')} VALUES (1, 'x')"
    )
    conn.close()


def test_close_given_open_connection_then_closed_and_idempotent(engine: Engine, db_context):
    conn = engine.connector(db_context)
    connection = conn._connection()
    conn.close()
    conn.close()
    assert engine.is_closed(connection)


# ---------------------------------------------------------------- measurements


@pytest.mark.slow
def test_measure_read_throughput_on_100k_rows(engine: Engine, db_context, record_property):
    conn = engine.connector(db_context)
    started = time.perf_counter()
    total = sum(b.num_rows for b in conn.read(engine.stream("big"), StreamState(), 10_000))
    elapsed = time.perf_counter() - started
    conn.close()
    assert total == fx.BIG_ROWS
    rate = total / elapsed
    record_property("rows_per_second", round(rate))
    print(f"\n{engine.name} read: {total} rows in {elapsed:.2f} s = {rate:,.0f} rows/s")


@pytest.mark.slow
def test_measure_discover_on_2000_tables(engine: Engine, db_context, record_property):
    engine.create_many_tables("ds_many", 2000)
    conn = engine.connector(db_context, **engine.scoped_to("ds_many"))
    started = time.perf_counter()
    tables = conn.discover()
    elapsed = time.perf_counter() - started
    conn.close()
    assert len(tables) == 2000
    assert all(len(t.columns) == 8 and t.primary_key == ["id"] for t in tables)
    record_property("discover_seconds", round(elapsed, 3))
    print(f"\n{engine.name} discover: 2000 tables in {elapsed:.2f} s")
    assert elapsed < engine.discover_limit_s
