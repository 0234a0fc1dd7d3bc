"""One adapter per SQL engine, so one connector suite runs over both real servers.

An adapter knows its engine's fixtures (db_fixtures), how streams are named, its DDL
dialect (types, quoting, timestamp literals) and how to run statements as the admin.
Tests written against it say what the connector does on every engine; what only one
engine does stays in test_postgres*.py / test_mysql*.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from datasources.connectors.base import ConnectorContext
from datasources.connectors.sql.base import SqlConnector
from datasources.connectors.sql.factory import open_database_connector
from datasources.models.connection import DatabaseConfig
from tests.connectors import db_fixtures as fx


@dataclass(frozen=True)
class Limited:
    """A source user that may read table `ok` but not table `denied` (see db_fixtures)."""

    overrides: dict[str, Any]  # config fields that connect as that user to that scope
    stream: Callable[[str], str]  # a table's stream name there
    grant: str  # the statement that would let the user read `denied`
    password: str


@dataclass(frozen=True)
class Engine:
    """What a shared test needs to know about one engine."""

    name: str  # the connector's `engine`
    database: str  # what check() reports as the database
    version_pattern: str  # found in check()'s server_version
    estimate_tolerance: float  # relative error allowed in a table's row estimate
    timestamp_tz: str  # DDL of a time-zone-aware, nullable, microsecond timestamp
    # A name the server might match but the connector must not (not schema-qualified on
    # PostgreSQL, another case on MySQL/MariaDB).
    near_miss_stream: str
    discover_limit_s: float  # 2,000 tables discovered within this
    decimal_column: str  # all_types' decimal(12,4) column

    # ---- naming

    def stream(self, table: str) -> str:
        """The stream name of a fixture table."""
        raise NotImplementedError

    def quote(self, name: str) -> str:
        raise NotImplementedError

    def relation(self, table: str) -> str:
        """A fixture table as admin statements name it."""
        raise NotImplementedError

    def ts(self, text: str) -> str:
        """A UTC timestamp literal ('2024-05-01 00:01:00.000123')."""
        raise NotImplementedError

    # ---- connecting

    def config(self, **overrides: Any) -> DatabaseConfig:
        raise NotImplementedError

    def connector(self, context: ConnectorContext, **overrides: Any) -> SqlConnector:
        built = open_database_connector(self.config(**overrides), context)
        assert isinstance(built, SqlConnector)
        assert built.engine == self.name
        return built

    def admin(self, *statements: str) -> list[Any]:
        """Run statements as the test superuser; the rows of the last one."""
        raise NotImplementedError

    # ---- engine facts a test checks through the adapter

    def kill_sessions(self, connector: SqlConnector) -> None:
        """End the connector's server session from another one (as an admin would)."""
        raise NotImplementedError

    def is_closed(self, connection: Any) -> bool:
        raise NotImplementedError

    def scoped_to(self, where: str) -> dict[str, Any]:
        """Config overrides that read schema (PostgreSQL) or database (MySQL) `where`."""
        raise NotImplementedError

    def assert_write_refused(self, connection: Any, statement: str) -> None:
        """The session refuses a write as read-only."""
        raise NotImplementedError

    def create_many_tables(self, where: str, count: int) -> None:
        """`count` tables t1..tn of 8 columns each in schema/database `where`, once."""
        raise NotImplementedError

    @contextmanager
    def limited_access(self) -> Iterator[Limited]:
        """A user with read access to some tables only, unique to the caller."""
        raise NotImplementedError
        yield

    def values(self, rows: Sequence[Sequence[Any]]) -> str:
        """`(1, 'a'), (2, 'b')`: literal rows of ints and simple strings."""
        return ", ".join(
            "(" + ", ".join(str(v) if isinstance(v, int) else f"'{v}'" for v in row) + ")"
            for row in rows
        )


class Postgres(Engine):
    def __init__(self) -> None:
        super().__init__(
            name="postgresql",
            database=fx.DATABASE,
            version_pattern=r"^15",
            estimate_tolerance=0.1,
            timestamp_tz="timestamptz",
            near_miss_stream="big",
            discover_limit_s=10,
            decimal_column="c_numeric",
        )

    def stream(self, table: str) -> str:
        return f"{fx.PG_SCHEMA}.{table}"

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def relation(self, table: str) -> str:
        return f"{fx.PG_SCHEMA}.{self.quote(table)}"

    def ts(self, text: str) -> str:
        return f"'{text}+00'"

    def config(self, **overrides: Any) -> DatabaseConfig:
        return fx.pg_config(**overrides)

    def admin(self, *statements: str) -> list[Any]:
        out: list[Any] = []
        with fx.pg_connect() as conn:
            for statement in statements:
                cur = conn.execute(statement)
                out = cur.fetchall() if cur.description else []
        return out

    def kill_sessions(self, connector: SqlConnector) -> None:
        killed = self.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'datasources' AND datname = '{fx.DATABASE}' "
            "AND pid <> pg_backend_pid()"
        )
        assert killed and all(row[0] for row in killed)

    def is_closed(self, connection: Any) -> bool:
        return bool(connection.closed)

    def scoped_to(self, where: str) -> dict[str, Any]:
        return {"schema": where}

    def assert_write_refused(self, connection: Any, statement: str) -> None:
        import psycopg

        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute(statement)

    def create_many_tables(self, where: str, count: int) -> None:
        existing = self.admin(f"SELECT count(*) FROM pg_tables WHERE schemaname = '{where}'")
        if existing[0][0] == count:
            return
        self.admin(
            f"DROP SCHEMA IF EXISTS {where} CASCADE",
            f"CREATE SCHEMA {where}",
            f"DO $$ BEGIN FOR i IN 1..{count} LOOP EXECUTE format("
            f"'CREATE TABLE {where}.t%s (id bigint PRIMARY KEY, updated_at timestamptz, "
            "name text, amount numeric(10,2), payload jsonb, flag boolean, "
            "created_at timestamptz, ref integer)', i); END LOOP; END $$",
        )

    @contextmanager
    def limited_access(self) -> Iterator[Limited]:
        with fx.pg_limited_role("ds_sqlerr") as (schema, role, password):
            yield Limited(
                overrides={"schema": schema, "username": role, "password": password},
                stream=lambda table: f"{schema}.{table}",
                grant=f"GRANT SELECT ON {schema}.denied TO {role}",
                password=password,
            )


class MariaDb(Engine):
    def __init__(self) -> None:
        super().__init__(
            name="mariadb",
            database=fx.MY_DB,
            version_pattern=r"MariaDB",
            estimate_tolerance=0.2,
            timestamp_tz="timestamp(6) NULL",
            near_miss_stream="BIG",
            discover_limit_s=30,
            decimal_column="c_decimal",
        )

    def stream(self, table: str) -> str:
        return table

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def relation(self, table: str) -> str:
        return self.quote(table)

    def ts(self, text: str) -> str:
        return f"'{text}'"  # the admin session's time zone is UTC

    def config(self, **overrides: Any) -> DatabaseConfig:
        return fx.my_config(**overrides)

    def admin(self, *statements: str) -> list[Any]:
        out: list[Any] = []
        with fx.my_connect(fx.MY_DB) as conn, conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for statement in statements:
                cur.execute(statement)
                out = list(cur.fetchall())
        return out

    def kill_sessions(self, connector: SqlConnector) -> None:
        connection = getattr(connector, "_conn", None)
        assert connection is not None
        self.admin(f"KILL {int(connection.thread_id())}")

    def is_closed(self, connection: Any) -> bool:
        return not connection.open

    def scoped_to(self, where: str) -> dict[str, Any]:
        return {"database": where}

    def assert_write_refused(self, connection: Any, statement: str) -> None:
        import pymysql

        with pytest.raises(pymysql.err.OperationalError) as info, connection.cursor() as cur:
            cur.execute(statement)
        assert info.value.args[0] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION

    def create_many_tables(self, where: str, count: int) -> None:
        existing = self.admin(
            f"SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{where}'"
        )
        if existing[0][0] == count:
            return
        self.admin(f"DROP DATABASE IF EXISTS {where}", f"CREATE DATABASE {where}")
        self.admin(
            *(
                f"CREATE TABLE {where}.t{i} (id bigint PRIMARY KEY, updated_at "
                "timestamp(6) NULL, name text, amount decimal(10,2), payload json, "
                "flag boolean, created_at datetime(6), ref int)"
                for i in range(1, count + 1)
            )
        )

    @contextmanager
    def limited_access(self) -> Iterator[Limited]:
        with fx.my_limited_user("ds_sqlerr") as (database, user, password):
            yield Limited(
                overrides={"database": database, "username": user, "password": password},
                stream=lambda table: table,
                grant=f"GRANT SELECT ON `{database}`.`denied` TO '{user}'@'%'",
                password=password,
            )


def version_matches(engine: Engine, version: str) -> bool:
    return re.search(engine.version_pattern, version) is not None
