"""Fixture schemas for the database connector tests, built on the real local servers.

`scripts/databases.sh start` runs PostgreSQL on 127.0.0.1:55432 and MariaDB on
127.0.0.1:53306 with user ds_test / ds_test_pw. The fixtures live in their own schema
(PostgreSQL `ds_fx`) and database (MariaDB `ds_fx`) so other tests' data is untouched.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from datasources.models.connection import DatabaseConfig

HOST = os.environ.get("DS_TEST_DB_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DS_TEST_PG_PORT", "55432"))
MYSQL_PORT = int(os.environ.get("DS_TEST_MYSQL_PORT", "53306"))
USER = os.environ.get("DS_TEST_DB_USER", "ds_test")
PASSWORD = os.environ.get("DS_TEST_DB_PASSWORD", "ds_test_pw")
DATABASE = os.environ.get("DS_TEST_DB_NAME", "ds_test")
SKIP = os.environ.get("DS_SKIP_DB_TESTS") == "1"

PG_SCHEMA = "ds_fx"
MY_DB = "ds_fx"
BIG_ROWS = 100_000
BIG_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
WEIRD_TABLE = 'we"ird`; DROP TABLE x; --'
WEIRD_COLUMN = 'se"l`ect'

# The one fully populated row of all_types, as Python values the connector must return.
TS = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
TSTZ = dt.datetime(2024, 2, 29, 21, 59, 58, 654321, tzinfo=dt.UTC)  # inserted as +02:00
UNICODE = "Zoë — 東京 🚀 \u00e9\u0301"
JSON_DOC = {"a": 1, "nested": {"list": [1, 2.5, None, "x"]}, "ü": "ß"}


def pg_connect(dbname: str = DATABASE) -> Any:
    """An autocommit psycopg connection as the test superuser."""
    import psycopg

    return psycopg.connect(
        host=HOST,
        port=PG_PORT,
        user=USER,
        password=PASSWORD,
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
    )


def my_connect(database: str | None = None) -> Any:
    """An autocommit PyMySQL connection as the test superuser."""
    import pymysql

    return pymysql.connect(
        host=HOST,
        port=MYSQL_PORT,
        user=USER,
        password=PASSWORD,
        database=database,
        autocommit=True,
        connect_timeout=5,
        charset="utf8mb4",
    )


def build_pg_fixtures() -> None:
    """(Re)create schema ds_fx with every mapped type, keys, no-PK table and a big table."""
    s = PG_SCHEMA
    with pg_connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {s}_other CASCADE")
        conn.execute(f"CREATE SCHEMA {s}")
        conn.execute(f"CREATE SCHEMA {s}_other")
        conn.execute(f"CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute(f"CREATE DOMAIN {s}.positive_int AS integer CHECK (VALUE > 0)")
        conn.execute(
            f"""CREATE TABLE {s}.all_types (
                id bigint PRIMARY KEY,
                c_smallint smallint, c_int integer, c_bigint bigint, c_domain {s}.positive_int,
                c_real real, c_double double precision,
                c_numeric numeric(12,4), c_numeric_free numeric, c_numeric_big numeric(50,10),
                c_bool boolean, c_text text, c_varchar varchar(20), c_char char(3),
                c_uuid uuid, c_enum {s}.mood, c_inet inet, c_interval interval,
                c_date date, c_time time(6), c_timetz timetz,
                c_ts timestamp(6), c_tstz timestamptz,
                c_json json, c_jsonb jsonb, c_bytea bytea,
                c_int_arr integer[], c_text_arr text[], c_money money
            )"""
        )
        conn.execute(
            f"""INSERT INTO {s}.all_types VALUES (
                1, -32768, 2147483647, 9223372036854775807, 7,
                1.5, 3.141592653589793,
                12345678.1234, 0.000000000000000000001, 1234567890123456789012345678901234567890.0123456789,
                true, %s, 'varchar', 'ab',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '192.168.0.1/32', '1 day 02:03:04',
                '2024-02-29', '23:59:59.999999', '10:00:00+02',
                '2024-02-29 23:59:58.123456', '2024-02-29 23:59:58.654321+02',
                %s, %s, '\\x00ff10'::bytea,
                '{{1,NULL,3}}', ARRAY['a', 'b"c', NULL], 12.34
            )""",
            (
                UNICODE,
                '{"a": 1, "nested": {"list": [1, 2.5, null, "x"]}, "ü": "ß"}',
                '{"b": [true]}',
            ),
        )
        conn.execute(f"INSERT INTO {s}.all_types (id) VALUES (2)")
        conn.execute(
            f"INSERT INTO {s}.all_types (id, c_text, c_numeric, c_json) VALUES "
            "(3, '', -0.0001, 'null')"
        )
        conn.execute(
            f"""CREATE TABLE {s}.composite (
                region text, seq integer, payload text, updated_at timestamptz NOT NULL,
                PRIMARY KEY (region, seq))"""
        )
        conn.execute(
            f"INSERT INTO {s}.composite "
            "SELECT r, g, r || '-' || g, '2024-01-01'::timestamptz + g * interval '1 minute' "
            "FROM unnest(ARRAY['eu', 'us', 'ap']) r, generate_series(1, 50) g"
        )
        conn.execute(f"CREATE TABLE {s}.no_pk (a integer, b text)")
        conn.execute(
            f"INSERT INTO {s}.no_pk SELECT g % 7, 'row ' || g FROM generate_series(1, 1000) g"
        )
        conn.execute(
            f"""CREATE TABLE {s}.big (id integer PRIMARY KEY, updated_at timestamptz NOT NULL,
                amount numeric(12,2), name text, created_at timestamptz)"""
        )
        conn.execute(
            f"INSERT INTO {s}.big SELECT g, %s::timestamptz + g * interval '1 second', "
            "(g * 1.25)::numeric(12,2), 'name ' || g, %s::timestamptz "
            "FROM generate_series(1, %s) g",
            (BIG_START, BIG_START, BIG_ROWS),
        )
        conn.execute(f"CREATE INDEX ON {s}.big (updated_at, id)")
        conn.execute(f"CREATE VIEW {s}.big_view AS SELECT id, name FROM {s}.big WHERE id <= 10")
        conn.execute(
            f'CREATE TABLE {s}."{WEIRD_TABLE.replace(chr(34), chr(34) * 2)}" '
            f'(id integer PRIMARY KEY, "{WEIRD_COLUMN.replace(chr(34), chr(34) * 2)}" text)'
        )
        conn.execute(
            f'INSERT INTO {s}."{WEIRD_TABLE.replace(chr(34), chr(34) * 2)}" VALUES (1, %s)',
            ("x",),
        )
        conn.execute(f"CREATE TABLE {s}_other.elsewhere (id integer PRIMARY KEY)")
        conn.execute(f"ANALYZE {s}.big")
        conn.execute(f"ANALYZE {s}.composite")


def build_my_fixtures() -> None:
    """(Re)create database ds_fx with the same shapes as the PostgreSQL fixtures."""
    with my_connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {MY_DB}")
        cur.execute(f"CREATE DATABASE {MY_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE {MY_DB}")
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(
            """CREATE TABLE all_types (
                id bigint PRIMARY KEY,
                c_tinyint tinyint, c_bool boolean, c_bit1 bit(1), c_smallint smallint,
                c_mediumint mediumint, c_int int, c_bigint bigint, c_ubigint bigint unsigned,
                c_year year,
                c_float float, c_double double, c_decimal decimal(12,4), c_decimal_big decimal(65,10),
                c_char char(3), c_varchar varchar(20), c_text text, c_enum enum('sad','ok','happy'),
                c_set set('a','b','c'),
                c_date date, c_time time(6), c_datetime datetime(6), c_timestamp timestamp(6) NULL,
                c_json json, c_binary binary(3), c_varbinary varbinary(10), c_blob blob
            )"""
        )
        cur.execute(
            """INSERT INTO all_types VALUES (
                1, -128, true, b'1', -32768, 8388607, 2147483647, 9223372036854775807,
                18446744073709551615, 2024,
                1.5, 3.141592653589793, 12345678.1234,
                1234567890123456789012345678901234567890123456789012345.0123456789,
                'ab', 'varchar', %s, 'happy', 'a,c',
                '2024-02-29', '23:59:59.999999', '2024-02-29 23:59:58.123456',
                '2024-02-29 21:59:58.654321',
                %s, x'00ff10', x'00ff', x'deadbeef'
            )""",
            (UNICODE, '{"a": 1, "nested": {"list": [1, 2.5, null, "x"]}, "ü": "ß"}'),
        )
        cur.execute("INSERT INTO all_types (id) VALUES (2)")
        cur.execute(
            "INSERT INTO all_types (id, c_text, c_decimal, c_json) VALUES (3, '', -0.0001, 'null')"
        )
        cur.execute(
            """CREATE TABLE composite (region varchar(8), seq int, payload text,
                updated_at datetime(6) NOT NULL, PRIMARY KEY (region, seq))"""
        )
        values = []
        for r in ("eu", "us", "ap"):
            for g in range(1, 51):
                values.append((r, g, f"{r}-{g}", dt.datetime(2024, 1, 1) + dt.timedelta(minutes=g)))
        cur.executemany("INSERT INTO composite VALUES (%s, %s, %s, %s)", values)
        cur.execute("CREATE TABLE no_pk (a int, b text)")
        cur.executemany(
            "INSERT INTO no_pk VALUES (%s, %s)", [(g % 7, f"row {g}") for g in range(1, 1001)]
        )
        cur.execute(
            """CREATE TABLE big (id int PRIMARY KEY, updated_at timestamp(6) NOT NULL,
                amount decimal(12,2), name text, created_at datetime(6),
                KEY by_update (updated_at, id))"""
        )
        cur.execute("SET SESSION max_recursive_iterations = 1000000")
        cur.execute(
            "INSERT INTO big WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
            "WHERE n < %s) SELECT n, TIMESTAMPADD(SECOND, n, '2024-01-01 00:00:00'), n * 1.25, "
            "CONCAT('name ', n), '2024-01-01 00:00:00' FROM seq",
            (BIG_ROWS,),
        )
        cur.execute("CREATE VIEW big_view AS SELECT id, name FROM big WHERE id <= 10")
        weird = WEIRD_TABLE.replace("`", "``")
        weird_col = WEIRD_COLUMN.replace("`", "``")
        cur.execute(f"CREATE TABLE `{weird}` (id int PRIMARY KEY, `{weird_col}` text)")
        cur.execute(f"INSERT INTO `{weird}` VALUES (1, 'x')")
        cur.execute("ANALYZE TABLE big, composite")
        cur.fetchall()


EXPECTED_ROW_1_COMMON: dict[str, Any] = {
    "c_text": UNICODE,
    "c_varchar": "varchar",
    "c_date": dt.date(2024, 2, 29),
    "c_time": dt.time(23, 59, 59, 999999),
}
DECIMAL_1 = Decimal("12345678.1234")


def pg_config(**overrides: Any) -> DatabaseConfig:
    """A config for the local PostgreSQL, fixture schema selected."""
    return DatabaseConfig.model_validate(pg_values(**overrides))


def pg_values(**overrides: Any) -> dict[str, Any]:
    """The `connection_config` of a source on the local PostgreSQL, as a request sends it."""
    values: dict[str, Any] = {
        "host": HOST,
        "port": PG_PORT,
        "database": DATABASE,
        "username": USER,
        "password": PASSWORD,
        "engine": "postgresql",
        "schema": PG_SCHEMA,
        "connect_timeout": 5,
    }
    values.update(overrides)
    return values


def my_config(**overrides: Any) -> DatabaseConfig:
    """A config for the local MariaDB, fixture database selected."""
    values: dict[str, Any] = {
        "host": HOST,
        "port": MYSQL_PORT,
        "database": MY_DB,
        "username": USER,
        "password": PASSWORD,
        "engine": "mariadb",
        "connect_timeout": 5,
    }
    values.update(overrides)
    return DatabaseConfig.model_validate(values)


@contextmanager
def pg_limited_role(prefix: str) -> Iterator[tuple[str, str, str]]:
    """(schema, role, password): a login role that may read `ok` (25 rows) and `mv` (a
    materialized view never populated) but not `denied`. Names are `prefix` plus a
    random suffix, unique to the caller; all of it is dropped on exit."""
    suffix = uuid.uuid4().hex[:10]
    schema = role = f"{prefix}_{suffix}"
    password = f"pw-{suffix}"
    with pg_connect() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"CREATE TABLE {schema}.ok (id int PRIMARY KEY, v text)")
        admin.execute(f"INSERT INTO {schema}.ok SELECT g, 'v' || g FROM generate_series(1, 25) g")
        admin.execute(f"CREATE TABLE {schema}.denied (id int PRIMARY KEY, secret text)")
        admin.execute(f"INSERT INTO {schema}.denied VALUES (1, 'x')")
        admin.execute(
            f"CREATE MATERIALIZED VIEW {schema}.mv AS SELECT id, v FROM {schema}.ok WITH NO DATA"
        )
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        admin.execute(f"GRANT SELECT ON {schema}.ok, {schema}.mv TO {role}")
    try:
        yield schema, role, password
    finally:
        with pg_connect() as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


@contextmanager
def my_limited_user(prefix: str) -> Iterator[tuple[str, str, str]]:
    """(database, user, password): a user that may read `ok` (25 rows) but only insert
    into `denied`, so it sees that table and cannot read it. Unique names, dropped on
    exit."""
    suffix = uuid.uuid4().hex[:10]
    database = user = f"{prefix}_{suffix}"
    password = f"pw-{suffix}"
    with my_connect() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"CREATE TABLE {database}.ok (id int PRIMARY KEY, v text)")
        cur.executemany(
            f"INSERT INTO {database}.ok VALUES (%s, %s)", [(g, f"v{g}") for g in range(1, 26)]
        )
        cur.execute(f"CREATE TABLE {database}.denied (id int PRIMARY KEY, secret text)")
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT SELECT ON {database}.ok TO '{user}'@'%'")
        cur.execute(f"GRANT INSERT ON {database}.denied TO '{user}'@'%'")
    try:
        yield database, user, password
    finally:
        with my_connect() as admin, admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def require_server(connect: Any, what: str, port: int) -> None:
    """Fail (not skip) when a test database is down: CI always starts both servers."""
    import pytest

    if SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    try:
        connect().close()
    except Exception as exc:
        pytest.fail(
            f"{what} is not reachable on {HOST}:{port} ({type(exc).__name__}); "
            "run `scripts/databases.sh start` first",
            pytrace=False,
        )
