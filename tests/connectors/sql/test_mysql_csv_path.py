"""The CSV (server text -> Arrow) read path of the MySQL/MariaDB engine, against MariaDB.

Each test proves the fast path was taken and that it yields exactly what the row path
(PyMySQL values typed by rows_to_arrow) yields: values, types, order and resume tokens.
The tables live in a database of this module's own name, dropped after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.mysql import MySqlConnector, _csv_line
from datasources.connectors.sql.values import CsvBatchParser
from tests.connectors import db_fixtures as fx

pytestmark = pytest.mark.mysql

DB = f"ds_csv_{uuid.uuid4().hex[:8]}"
NASTY = [
    'comma, "quote" and\nnewline\r\n',
    "",
    None,
    "Zoë — 東京 🚀",
    "\\N",
    "NULL",
    '"',
    "  spaced  ",
]


SIZES = [0, 1, 200, 240, 250, 251, 252, 3000, 8180, 8192, 8200, 65000, 65536, 70000, 200000]
SIZES += [(i * 7919) % 9000 for i in range(200)]


def sized_text(size: int) -> str:
    return ('ab,"c"\n' * (size // 7 + 1))[:size]


@pytest.fixture(scope="module")
def csv_db() -> Iterator[str]:
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    conn = fx.my_connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DB} CHARACTER SET utf8mb4")
        cur.execute(
            f"""CREATE TABLE {DB}.typed (
                id INT PRIMARY KEY, c_tiny TINYINT, c_big BIGINT, c_ubig BIGINT UNSIGNED,
                c_year YEAR, c_float FLOAT, c_double DOUBLE, c_dec DECIMAL(30,10),
                c_dec_small DECIMAL(5,2), c_bool BOOLEAN, c_date DATE,
                c_dt DATETIME(6), c_ts TIMESTAMP(6) NULL, c_text TEXT, c_char CHAR(3),
                c_enum ENUM('a','b'), c_json JSON, c_bin VARBINARY(16), c_blob BLOB,
                c_latin VARCHAR(20) CHARACTER SET latin1
            )"""
        )
        rows: list[tuple[Any, ...]] = []
        for i in range(1, 41):
            text = NASTY[i % len(NASTY)]
            rows.append(
                (
                    i,
                    -128 if i % 3 else 127,
                    -(2**63) if i == 1 else i * 10**12,
                    2**64 - 1 if i == 2 else i,
                    1901 + i,
                    3.4028234e38 if i == 3 else i / 3,
                    1e-300 if i == 4 else i / 7,
                    "12345678901234567890.0123456789" if i == 5 else f"-{i}.0000000001",
                    "-999.99" if i == 6 else None,
                    i % 2,
                    f"20{i:02d}-02-28",
                    f"2024-02-29 23:59:{i % 60:02d}.{i:06d}",
                    None if i == 7 else f"2024-03-01 00:00:{i % 60:02d}.5",
                    text,
                    None if i % 4 else "abc",
                    "b" if i % 2 else None,
                    '{"k": [1, 2.5, null, "x,\\"y\\""], "ü": "ß"}' if i % 3 else None,
                    bytes([0, i, 255, 44, 10]),
                    b"" if i == 8 else bytes(range(i % 16)),
                    "café" if i % 2 else None,
                )
            )
        cur.executemany(
            f"INSERT INTO {DB}.typed VALUES ({', '.join(['%s'] * 20)})",
            rows,
        )
        cur.execute(
            f"CREATE TABLE {DB}.pairs (region VARCHAR(4), seq INT, v VARCHAR(10), "
            "PRIMARY KEY (region, seq))"
        )
        cur.executemany(
            f"INSERT INTO {DB}.pairs VALUES (%s, %s, %s)",
            [(r, s, f"{r}{s}") for r in ("eu", "us", "ap") for s in range(1, 34)],
        )
        # Rows of every size class of the protocol (1-, 3- and 4-byte length prefixes),
        # which fall across the socket file's buffer at every offset; NOT NULL columns
        # with empty values, which the CSV select reads without IFNULL.
        cur.execute(
            f"CREATE TABLE {DB}.sizes (id INT PRIMARY KEY, t MEDIUMTEXT NOT NULL, "
            "b MEDIUMBLOB NOT NULL, n INT NOT NULL, note VARCHAR(20))"
        )
        cur.executemany(
            f"INSERT INTO {DB}.sizes VALUES (%s, %s, %s, %s, %s)",
            [
                (i, sized_text(size), bytes(range(256))[: size % 300], -i, None if i % 2 else "x")
                for i, size in enumerate(SIZES, start=1)
            ],
        )
        cur.execute(f"CREATE TABLE {DB}.zero (id INT PRIMARY KEY, d DATETIME)")
        cur.execute("SET SESSION sql_mode = ''")
        cur.executemany(
            f"INSERT INTO {DB}.zero VALUES (%s, %s)",
            [
                (i, "0000-00-00 00:00:00" if i == 25 else f"2024-01-01 00:00:{i:02d}")
                for i in range(1, 31)
            ],
        )
    yield DB
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB}")
    conn.close()


def connector(context: ConnectorContext) -> MySqlConnector:
    built = open_database_connector(fx.my_config(database=DB), context)
    assert isinstance(built, MySqlConnector)
    return built


def read_all(
    context: ConnectorContext, stream: str, batch: int, *, fast: bool, monkeypatch: Any
) -> tuple[pa.Table, list[dict[str, Any]], int]:
    """(all rows, resume tokens, batches parsed by the CSV path)."""
    parsed = 0
    real_parse = CsvBatchParser.parse

    def counting(self: CsvBatchParser, data: Any, rows: int) -> pa.Table:
        nonlocal parsed
        parsed += 1
        return real_parse(self, data, rows)

    with monkeypatch.context() as patch:
        patch.setattr(CsvBatchParser, "parse", counting)
        if not fast:
            patch.setattr(MySqlConnector, "_stream_arrow", lambda *a: None)
        conn = connector(context)
        try:
            batches = list(conn.read(stream, StreamState(), batch))
        finally:
            conn.close()
    table = pa.concat_tables([b.records for b in batches])
    return table, [b.resume_token for b in batches], parsed


@pytest.mark.parametrize("batch", [7, 1000])
def test_csv_path_gives_exactly_the_row_paths_values_types_and_tokens(
    csv_db, db_context, monkeypatch, batch
):
    fast, fast_tokens, parsed = read_all(
        db_context, "typed", batch, fast=True, monkeypatch=monkeypatch
    )
    slow, slow_tokens, _ = read_all(db_context, "typed", batch, fast=False, monkeypatch=monkeypatch)
    assert parsed == -(-40 // batch)  # every batch went through the CSV path
    assert fast.schema.equals(slow.schema)
    for name in fast.column_names:
        assert fast.column(name).to_pylist() == slow.column(name).to_pylist(), name
    assert fast_tokens == slow_tokens
    assert fast.column("c_text").to_pylist()[:8] == [NASTY[i % len(NASTY)] for i in range(1, 9)]


def test_csv_path_resumes_a_composite_key_mid_table(csv_db, db_context, monkeypatch):
    conn = connector(db_context)
    try:
        first = next(iter(conn.read("pairs", StreamState(), 10)))
        rest = list(conn.read("pairs", StreamState(resume_token=first.resume_token), 10))
    finally:
        conn.close()
    keys = [
        (r, s)
        for b in [first, *rest]
        for r, s in zip(
            b.records.column("region").to_pylist(), b.records.column("seq").to_pylist(), strict=True
        )
    ]
    assert keys == sorted((r, s) for r in ("eu", "us", "ap") for s in range(1, 34))


def test_a_batch_the_csv_path_cannot_carry_goes_on_through_the_row_path(
    csv_db, db_context, monkeypatch
):
    # The zero date is in the third batch of 10: two batches by CSV, the rest by rows.
    fast, _, parsed = read_all(db_context, "zero", 10, fast=True, monkeypatch=monkeypatch)
    assert parsed == 3  # the third parse fails and hands over to the row path
    assert fast.column("id").to_pylist() == list(range(1, 31))
    assert fast.column("d").to_pylist()[24] is None


def test_a_read_stopped_mid_statement_leaves_the_connector_usable(csv_db, db_context):
    # 99 rows in batches of 10: the first statement spans 8 batches; stop after one.
    conn = connector(db_context)
    try:
        iterator = iter(conn.read("pairs", StreamState(), 10))
        assert next(iterator).records.num_rows == 10
        iterator.close()  # type: ignore[attr-defined]
        again = list(conn.read("pairs", StreamState(), 10))
    finally:
        conn.close()
    assert sum(b.records.num_rows for b in again) == 99


@pytest.mark.parametrize("batch", [3, 1000])
def test_rows_of_every_size_and_not_null_columns_read_as_the_row_path(
    csv_db, db_context, monkeypatch, batch
):
    fast, fast_tokens, parsed = read_all(
        db_context, "sizes", batch, fast=True, monkeypatch=monkeypatch
    )
    slow, slow_tokens, _ = read_all(db_context, "sizes", batch, fast=False, monkeypatch=monkeypatch)
    assert parsed == -(-len(SIZES) // batch)
    assert fast.equals(slow)
    assert fast_tokens == slow_tokens
    assert [len(t) for t in fast.column("t").to_pylist()] == SIZES
    assert fast.column("b").to_pylist()[0] == b""


def test_the_csv_select_wraps_only_the_columns_that_can_be_null(csv_db, db_context):
    conn = connector(db_context)
    try:
        meta = conn._lookup("sizes")
    finally:
        conn.close()
    assert meta is not None
    line = _csv_line(meta.table)
    assert line is not None
    assert line.count("IFNULL(") == 1  # only `note`
    assert "IFNULL(CONCAT('\"', REPLACE(CONVERT(`note` USING" in line
    view = meta.table.model_copy(update={"kind": "view"})
    assert (_csv_line(view) or "").count("IFNULL(") == 5
