"""The COPY (CSV -> Arrow) read path of the PostgreSQL engine against a real PostgreSQL.

Needs `scripts/databases.sh start` (127.0.0.1:55432). Every table lives in a schema of
its own, and each test compares the COPY path with the row path (binary cursor), which
must give the same Arrow tables, resume tokens and cursor states.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from datasources.connectors.base import Batch, ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.postgres import PostgresConnector, _read_copy
from datasources.errors import SourceReadError
from tests.connectors import db_fixtures as fx

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def schema() -> Iterator[str]:
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    name = f"ds_copy_{uuid.uuid4().hex[:10]}"
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        with fx.pg_connect() as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def connector(context: ConnectorContext, schema: str) -> PostgresConnector:
    built = open_database_connector(fx.pg_config(schema=schema), context)
    assert isinstance(built, PostgresConnector)
    return built


def read(
    context: ConnectorContext,
    schema: str,
    stream: str,
    *,
    copy: bool,
    monkeypatch: pytest.MonkeyPatch,
    state: StreamState | None = None,
    size: int = 1000,
) -> tuple[list[Batch], int]:
    """Every batch of a read through one path, and how many COPY batches were parsed."""
    calls = {"copy": 0}
    real = PostgresConnector._copy_tables

    def counting(self: PostgresConnector, *args: Any) -> Iterator[pa.Table]:
        for table in real(self, *args):
            calls["copy"] += 1
            yield table

    with monkeypatch.context() as patch:
        patch.setattr(PostgresConnector, "_copy_tables", counting)
        if not copy:
            patch.setattr(PostgresConnector, "_stream_arrow", lambda *_: None)
        conn = connector(context, schema)
        try:
            batches = list(conn.read(f"{schema}.{stream}", state or StreamState(), size))
        finally:
            conn.close()
    return batches, calls["copy"]


def comparable(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as Python values with NaN made comparable (NaN != NaN)."""
    return [
        {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in table.to_pylist()
    ]


def assert_same(copied: list[Batch], rowwise: list[Batch]) -> None:
    assert [b.num_rows for b in copied] == [b.num_rows for b in rowwise]
    for a, b in zip(copied, rowwise, strict=True):
        assert a.records.schema == b.records.schema
        assert comparable(a.records) == comparable(b.records)
        assert a.resume_token == b.resume_token
        assert a.cursor_state == b.cursor_state


EDGE_ROWS = [
    # id, text, real, double, numeric(12,4), numeric, bytea, bool, date, ts, tstz
    (
        100001,
        "",
        "NaN",
        "NaN",
        "-0.0001",
        "0.000000000000000000001",
        "",
        True,
        "0001-01-01",
        "0001-01-01 00:00:00",
        "1970-01-01 00:00:00.000001+00",
    ),
    (
        100002,
        "NA",
        "Infinity",
        "-Infinity",
        "99999999.9999",
        "-1e-30",
        "\\x00",
        False,
        "9999-12-31",
        "9999-12-31 23:59:59.999999",
        "2024-02-29 23:59:58.654321+02",
    ),
    (
        100003,
        "NULL",
        "-0",
        "-0",
        "0",
        "123456789012345678901234567890.5",
        "\\xdeadbeef",
        None,
        None,
        None,
        None,
    ),
    (
        100004,
        'a "quoted", value\r\nnext line',
        "1.1",
        "1e-320",
        None,
        None,
        None,
        True,
        "2024-01-01",
        "2024-01-01 12:00:00",
        "2024-01-01 12:00:00+00",
    ),
    (
        100005,
        "  padded  ",
        "3.4028235e38",
        "1.7976931348623157e308",
        "1",
        "NaN",
        "\\x",
        True,
        "1999-12-31",
        "1999-12-31 23:59:59.5",
        "1999-12-31 23:59:59.5+00",
    ),
    (
        100006,
        "üñí©ødé ✓ \\N \\. ,",
        "1.17549435e-38",
        "0.1",
        "-1",
        "1e20",
        "\\x0a0d2c22",
        False,
        "2000-02-29",
        "2000-02-29 00:00:00",
        "2000-02-29 00:00:00+00",
    ),
    (100007, None, None, None, None, None, None, None, None, None, None),
]


@pytest.fixture
def typed(schema: str) -> str:
    """`t`: every type the COPY path reads, 2,500 generated rows and edge values."""
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok')")
        admin.execute(
            f"""CREATE TABLE {schema}.t (
                id bigint PRIMARY KEY, c_text text, c_real real, c_double double precision,
                c_numeric numeric(12,4), c_numeric_free numeric, c_bytea bytea, c_bool boolean,
                c_date date, c_ts timestamp, c_tstz timestamptz,
                c_small smallint, c_varchar varchar(10), c_char char(3), c_uuid uuid,
                c_enum {schema}.mood, c_inet inet, c_interval interval, c_timetz timetz,
                c_json json, c_jsonb jsonb, c_int_arr integer[], c_text_arr text[],
                c_money money, c_big numeric(50,10), c_range tstzrange)"""
        )
        admin.execute(
            f"""INSERT INTO {schema}.t SELECT g, 'text ' || g || repeat(',', g % 3),
                g / 7.0, g / 3.0, (g * 1.2345)::numeric(12,4), g::numeric / 7,
                decode(lpad(to_hex(g), 8, '0'), 'hex'), g % 2 = 0,
                date '2000-01-01' + g, timestamp '2000-01-01' + g * interval '1.000001 s',
                timestamptz '2000-01-01 00:00:00+00' + g * interval '1.000123 s',
                (g % 32000)::smallint, 'v' || g, 'c' || (g % 10), gen_random_uuid(),
                CASE WHEN g % 2 = 0 THEN 'sad' ELSE 'ok' END::{schema}.mood,
                ('10.0.' || (g % 256) || '.1')::inet, g * interval '1 minute',
                '10:00:00+02'::timetz, json_build_object('g', g, 's', 'x,"y"'),
                jsonb_build_object('n', g * 0.5), ARRAY[g, NULL, -g], ARRAY['a' || g, NULL],
                (g / 100.0)::money, g::numeric(50,10) / 3,
                tstzrange(timestamptz '2024-01-01' + g * interval '1 day', NULL)
                FROM generate_series(1, 2500) g"""
        )
        for row in EDGE_ROWS:
            admin.execute(
                f"""INSERT INTO {schema}.t (id, c_text, c_real, c_double, c_numeric,
                    c_numeric_free, c_bytea, c_bool, c_date, c_ts, c_tstz)
                    VALUES (%s, %s, %s::real, %s::float8, %s::numeric(12,4), %s::numeric,
                    %s::bytea, %s, %s::date, %s::timestamp, %s::timestamptz)""",
                row,
            )
    return "t"


def test_copy_path_given_every_type_then_same_arrow_tables_as_the_row_path(
    db_context, schema, typed, monkeypatch
):
    copied, copies = read(db_context, schema, typed, copy=True, monkeypatch=monkeypatch)
    rowwise, none = read(db_context, schema, typed, copy=False, monkeypatch=monkeypatch)
    assert copies == len(copied) == 3 and none == 0
    assert_same(copied, rowwise)
    edges = {r["id"]: r for r in copied[-1].records.to_pylist() if r["id"] > 100000}
    assert edges[100001]["c_text"] == "" and edges[100007]["c_text"] is None
    assert edges[100002]["c_text"] == "NA" and edges[100003]["c_text"] == "NULL"
    assert edges[100001]["c_bytea"] == b"" and edges[100007]["c_bytea"] is None
    assert edges[100003]["c_bytea"] == b"\xde\xad\xbe\xef"
    assert edges[100004]["c_text"] == 'a "quoted", value\r\nnext line'


def test_copy_path_given_a_resume_token_then_every_row_once(db_context, schema, typed, monkeypatch):
    conn = connector(db_context, schema)
    iterator = conn.read(f"{schema}.{typed}", StreamState(), 700)
    first = next(iterator)
    iterator.close()
    conn.close()
    rest, copies = read(
        db_context,
        schema,
        typed,
        copy=True,
        monkeypatch=monkeypatch,
        state=StreamState(resume_token=first.resume_token),
        size=700,
    )
    assert copies == len(rest)
    ids = first.records.column("id").to_pylist() + [
        v for b in rest for v in b.records.column("id").to_pylist()
    ]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == 2500 + len(EDGE_ROWS)


def test_copy_path_given_a_value_text_cannot_carry_then_row_path_from_that_batch(
    db_context, schema, monkeypatch
):
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE TABLE {schema}.nan (id int PRIMARY KEY, n numeric(10,2))")
        admin.execute(
            f"INSERT INTO {schema}.nan SELECT g, CASE WHEN g = 1500 THEN 'NaN' "
            "ELSE g / 4.0 END FROM generate_series(1, 2600) g"
        )
    copied, copies = read(db_context, schema, "nan", copy=True, monkeypatch=monkeypatch)
    rowwise, _ = read(db_context, schema, "nan", copy=False, monkeypatch=monkeypatch)
    assert copies == 1  # the first batch; the rest came from the row path
    assert_same(copied, rowwise)
    assert copied[1].notes and not copied[0].notes


def test_copy_path_given_a_timestamp_python_cannot_hold_then_the_row_path_error(
    db_context, schema, monkeypatch
):
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE TABLE {schema}.inf (id int PRIMARY KEY, ts timestamptz)")
        admin.execute(f"INSERT INTO {schema}.inf VALUES (1, now()), (2, 'infinity')")
    with pytest.raises(SourceReadError, match="cannot be converted"):
        read(db_context, schema, "inf", copy=True, monkeypatch=monkeypatch)


@pytest.mark.parametrize("indexed", [True, False])
def test_incremental_copy_path_only_with_an_index_leading_with_the_cursor(
    db_context, schema, monkeypatch, indexed
):
    with fx.pg_connect() as admin:
        admin.execute(
            f"CREATE TABLE {schema}.ev (id int PRIMARY KEY, updated_at timestamptz, v text)"
        )
        admin.execute(
            f"INSERT INTO {schema}.ev SELECT g, timestamptz '2024-01-01 00:00:00+00' "
            "+ (g / 3) * interval '1.5 s', 'v' || g FROM generate_series(1, 2200) g"
        )
        if indexed:
            admin.execute(f"CREATE INDEX ON {schema}.ev (updated_at)")
    state = StreamState(cursor_field="updated_at")
    copied, copies = read(
        db_context, schema, "ev", copy=True, monkeypatch=monkeypatch, state=state, size=500
    )
    rowwise, _ = read(
        db_context, schema, "ev", copy=False, monkeypatch=monkeypatch, state=state, size=500
    )
    assert copies == (len(copied) if indexed else 0)
    assert_same(copied, rowwise)
    assert copied[-1].cursor_state is not None
    assert copied[-1].cursor_state["pk"] == [2200]


def test_read_copy_given_an_error_after_some_rows_then_the_server_error(db_context):
    with fx.pg_connect() as conn:
        data = bytearray()
        with (
            pytest.raises(psycopg.errors.DivisionByZero),
            conn.transaction(),
            conn.cursor() as cur,
        ):
            statement = (
                "COPY (SELECT g, 1 / (g - 20000) FROM generate_series(1, 30000) g) "
                "TO STDOUT (FORMAT csv)"
            )
            with cur.copy(statement) as copy:
                _read_copy(conn, copy, data, 100_000, 1 << 30)
        assert data.startswith(b"1,0\n")
        # The connection is usable afterwards.
        assert conn.execute("SELECT 42").fetchone() == (42,)
        data = bytearray()
        with conn.cursor() as cur, cur.copy("COPY (SELECT 'a\nb', '') TO STDOUT (FORMAT csv)") as c:
            assert _read_copy(conn, c, data, 10, 1 << 30) == (1, True)
        assert bytes(data) == b'"a\nb",""\n'


def test_read_copy_stops_at_the_row_or_byte_limit_and_the_copy_goes_on(db_context):
    with fx.pg_connect() as conn, conn.transaction(), conn.cursor() as cur:
        statement = "COPY (SELECT g, repeat('x', 10) FROM generate_series(1, 100) g) TO STDOUT"
        with cur.copy(statement) as copy:
            first, second, third = bytearray(), bytearray(), bytearray()
            assert _read_copy(conn, copy, first, 30, 1 << 30) == (30, False)
            # Byte limit: stops with the row that reaches it (rows 31-38 are 14 bytes).
            assert _read_copy(conn, copy, second, 100, 100) == (8, False)
            assert _read_copy(conn, copy, third, 1000, 1 << 30) == (62, True)
        rows = (first + second + third).decode().splitlines()
        assert [int(r.split("\t")[0]) for r in rows] == list(range(1, 101))


def test_copy_path_given_more_batches_than_one_copy_spans_then_same_as_the_row_path(
    db_context, schema, typed, monkeypatch
):
    # 2,507 rows in batches of 100: 26 batches, so four COPY statements of up to eight
    # batches each, every one starting after the last key of the one before.
    copied, copies = read(db_context, schema, typed, copy=True, monkeypatch=monkeypatch, size=100)
    rowwise, _ = read(db_context, schema, typed, copy=False, monkeypatch=monkeypatch, size=100)
    assert copies == len(copied) == 26
    assert_same(copied, rowwise)


def test_copy_path_cuts_a_batch_at_the_byte_limit_and_loses_no_row(
    db_context, schema, typed, monkeypatch
):
    import datasources.connectors.sql.postgres as pg

    monkeypatch.setattr(pg, "_MAX_BATCH_BYTES", 20_000)
    copied, copies = read(db_context, schema, typed, copy=True, monkeypatch=monkeypatch)
    assert copies == len(copied) > 3  # batches of 1,000 rows would be three
    assert max(b.num_rows for b in copied) < 1000
    monkeypatch.undo()
    rowwise, _ = read(db_context, schema, typed, copy=False, monkeypatch=monkeypatch)
    assert comparable(pa.concat_tables([b.records for b in copied])) == comparable(
        pa.concat_tables([b.records for b in rowwise])
    )
    assert copied[-1].resume_token == rowwise[-1].resume_token


def test_copy_path_given_a_statement_timeout_while_the_engine_holds_batches_then_it_goes_on(
    db_context, schema, monkeypatch
):
    # Each COPY spans 8 batches of 20 rows of 200 kB (32 MB). The consumer holds the
    # first batch for 1.5 s while nothing reads the socket: the server cannot finish
    # sending (the kernel's buffers hold ~10 MB at most), so the 1 s statement timeout
    # runs out mid-COPY, and the read goes on with a new statement after that batch.
    with fx.pg_connect() as admin:
        admin.execute(f"CREATE TABLE {schema}.big (id int PRIMARY KEY, body text)")
        admin.execute(
            f"INSERT INTO {schema}.big SELECT g, repeat(md5(g::text), 6250) "
            "FROM generate_series(1, 240) g"
        )
    statements: list[str] = []
    real = psycopg.Cursor.copy

    def recording(self: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(
            statement.as_string(self) if hasattr(statement, "as_string") else statement
        )
        return real(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "copy", recording)
    built = open_database_connector(
        fx.pg_config(schema=schema, statement_timeout_seconds=1), db_context
    )
    ids: list[int] = []
    try:
        for batch in built.read(f"{schema}.big", StreamState(), 20):
            ids.extend(batch.records.column("id").to_pylist())
            if len(ids) == 20:
                time.sleep(1.5)
    finally:
        built.close()
    assert ids == list(range(1, 241))
    # 12 batches would be two statements without the timeout; the restart makes three.
    assert len(statements) == 3
