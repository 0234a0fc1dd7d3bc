"""The published database config on a non-default port, through the real handlers.

Given `host, port, database, username, password` and no `engine`, on the local
PostgreSQL (55432) and MariaDB (53306): connect asks the server, stores the engine on
the source and shows it; test-connection says it was detected; a sync reads the table.
Each test uses a database of its own name, dropped after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack
from tests.connectors import db_fixtures as fx

ROWS = 25


def _require() -> None:
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")


@pytest.fixture
def pg_database() -> Iterator[str]:
    _require()
    name = f"ds_detect_{uuid.uuid4().hex[:10]}"
    admin = fx.pg_connect()
    try:
        admin.execute(f"CREATE DATABASE {name}")
        conn = fx.pg_connect(name)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute(f"INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g")
        conn.close()
        yield name
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def my_database() -> Iterator[str]:
    _require()
    name = f"ds_detect_{uuid.uuid4().hex[:10]}"
    conn = fx.my_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
            cur.execute(f"CREATE TABLE {name}.t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute(
                f"INSERT INTO {name}.t VALUES "
                + ", ".join(f"({i}, 'row {i}')" for i in range(1, ROWS + 1))
            )
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def published(port: int, database: str) -> dict[str, Any]:
    return {
        "host": fx.HOST,
        "port": port,
        "database": database,
        "username": fx.USER,
        "password": fx.PASSWORD,
    }


def connect_test_and_sync(stack: Stack, config: dict[str, Any], engine: str) -> None:
    tested = stack.call(
        "test", body={"source_config": {"type": "database", "connection_config": config}}
    )
    assert tested.status_code == 200, tested.body
    assert tested.data["details"]["engine"] == engine
    assert tested.data["details"]["engine_detected"] is True

    response = stack.call(
        "connect",
        body={"sources": [{"type": "database", "name": "published", "connection_config": config}]},
    )
    assert response.status_code == 201, response.body
    source = response.data["connected_sources"][0]
    assert source["connection_config"]["engine"] == engine
    listed = stack.call("list", query={}).data
    assert [s["connection_config"]["engine"] for s in listed] == [engine]

    job = stack.call("sync", body={"source_ids": [source["id"]]})
    assert job.status_code in (200, 202), job.body
    stack.drain()
    status = stack.call("status", path={"job_id": job.data["job_id"]}, query={"scope": "user"})
    assert status.data["status"] == "completed", status.data
    assert status.data["records_processed"] == ROWS


@pytest.mark.postgres
def test_published_config_on_postgres_without_engine_connects_and_syncs(
    stack: Stack, pg_database: str
) -> None:
    connect_test_and_sync(stack, published(fx.PG_PORT, pg_database), "postgresql")


@pytest.mark.mysql
def test_published_config_on_mariadb_without_engine_connects_and_syncs(
    stack: Stack, my_database: str
) -> None:
    connect_test_and_sync(stack, published(fx.MYSQL_PORT, my_database), "mariadb")


def test_connect_to_a_port_where_nothing_listens_without_engine_is_400_tcp(stack: Stack) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = published(port, "d")
    response = stack.call(
        "connect",
        body={"sources": [{"type": "database", "name": "x", "connection_config": config}]},
    )
    assert response.status_code == 400, response.body
    assert response.data["stage"] == "tcp"
    assert stack.call("list", query={}).data == []


def test_connect_probes_its_sources_side_by_side_within_one_connect_timeout(
    stack: Stack,
) -> None:
    import socket
    import time

    # Listening sockets that are never accepted: the kernel completes the handshake and
    # the server then says nothing, so each probe waits its full connect_timeout.
    silent = [socket.create_server(("127.0.0.1", 0), backlog=8) for _ in range(3)]
    try:
        sources = [
            {
                "type": "database",
                "name": f"silent{i}",
                "connection_config": {
                    **published(int(s.getsockname()[1]), "d"),
                    "connect_timeout": 2,
                },
            }
            for i, s in enumerate(silent)
        ]
        started = time.monotonic()
        response = stack.call("connect", body={"sources": sources})
        elapsed = time.monotonic() - started
    finally:
        for sock in silent:
            sock.close()
    assert response.status_code == 400, response.body
    assert response.data["stage"] == "timeout"
    assert elapsed < 4.5  # one connect_timeout, not three
    assert stack.call("list", query={}).data == []
