"""Engine detection from the wire: real servers on non-default ports, and fake servers.

The fakes are loopback sockets of the test: one answers like an HTTP server, one sends
garbage first, one accepts and stays silent, one greets like MySQL with an error.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.engine_probe import detect_engine, parse_mysql_greeting
from datasources.connectors.sql.factory import open_database_connector
from datasources.errors import ConnectionFailed
from datasources.models.connection import DatabaseConfig
from tests.connectors import db_fixtures as fx


def published(port: int, **overrides: Any) -> DatabaseConfig:
    """The published connection_config shape: no engine."""
    values: dict[str, Any] = {
        "host": fx.HOST,
        "port": port,
        "database": fx.DATABASE,
        "username": fx.USER,
        "password": fx.PASSWORD,
        "connect_timeout": 3,
    }
    values.update(overrides)
    return DatabaseConfig.model_validate(values)


class FakeServer:
    """A loopback TCP server running `serve(conn)` for each connection, in a thread."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._serve = serve
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self._serve(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[socket.socket], None]], FakeServer]]:
    servers: list[FakeServer] = []

    def start(serve: Callable[[socket.socket], None]) -> FakeServer:
        server = FakeServer(serve)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def http_like(conn: socket.socket) -> None:
    conn.settimeout(5)
    conn.recv(1024)  # the SSLRequest
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def garbage_first(conn: socket.socket) -> None:
    conn.sendall(b"\x17\x03\x03 this is not a database \xff\xfe\r\n")
    time.sleep(0.5)


def silent(conn: socket.socket) -> None:
    # Reads the SSLRequest and never answers; returns when the client hangs up.
    conn.settimeout(10)
    while conn.recv(1024):
        pass


def mysql_error_greeting(conn: socket.socket) -> None:
    body = b"\xff\x10\x04Too many connections"
    conn.sendall(len(body).to_bytes(3, "little") + b"\x00" + body)


# ---- real servers on non-default ports


@pytest.mark.postgres
def test_given_published_config_on_postgres_port_55432_then_detected_checked_and_read(
    pg_fixtures, db_context: ConnectorContext
) -> None:
    config = published(fx.PG_PORT, schema=fx.PG_SCHEMA)
    assert config.engine is None
    connector = open_database_connector(config, db_context)
    try:
        details = connector.check().details
        assert details["engine"] == "postgresql" and details["engine_detected"] is True
        streams = [t.name for t in connector.discover()]
        assert streams
        batches = list(connector.read(streams[0], StreamState(), 1000))
        assert batches
    finally:
        connector.close()


@pytest.mark.mysql
def test_given_published_config_on_mariadb_port_53306_then_detected_checked_and_read(
    my_fixtures, db_context: ConnectorContext
) -> None:
    config = published(fx.MYSQL_PORT, database=fx.MY_DB)
    connector = open_database_connector(config, db_context)
    try:
        details = connector.check().details
        assert details["engine"] == "mariadb" and details["engine_detected"] is True
        streams = [t.name for t in connector.discover()]
        assert streams
        assert list(connector.read(streams[0], StreamState(), 1000))
    finally:
        connector.close()


@pytest.mark.postgres
def test_given_engine_set_then_nothing_is_detected(pg_fixtures, db_context) -> None:
    connector = open_database_connector(fx.pg_config(), db_context)
    try:
        assert connector.check().details["engine_detected"] is False
    finally:
        connector.close()


# ---- fake and absent servers


def test_given_nothing_listening_then_tcp_stage(db_context) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with pytest.raises(ConnectionFailed) as info:
        open_database_connector(published(port), db_context)
    assert info.value.stage == "tcp"


@pytest.mark.parametrize("serve", [http_like, garbage_first], ids=["http", "garbage"])
def test_given_another_protocol_then_protocol_stage_within_the_timeout(
    db_context, fake, serve
) -> None:
    server = fake(serve)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as info:
        open_database_connector(published(server.port, connect_timeout=3), db_context)
    assert info.value.stage == "protocol"
    assert "neither" in info.value.message or "closed" in info.value.message
    assert time.monotonic() - started < 3.5


def test_given_a_silent_server_then_timeout_stage_at_connect_timeout(db_context, fake) -> None:
    server = fake(silent)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as info:
        open_database_connector(published(server.port, connect_timeout=2), db_context)
    elapsed = time.monotonic() - started
    assert info.value.stage == "timeout"
    assert 1.9 <= elapsed < 2.6


def test_given_a_mysql_error_packet_instead_of_a_greeting_then_mysql(fake) -> None:
    server = fake(mysql_error_greeting)
    assert detect_engine("127.0.0.1", server.port, 3, "x").engine == "mysql"


def test_greetings_name_mariadb_and_mysql_and_refuse_lookalikes() -> None:
    def packet(body: bytes) -> bytes:
        return len(body).to_bytes(3, "little") + b"\x00" + body

    maria = packet(b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00" + b"\x00" * 40)
    mysql = packet(b"\x0a8.0.36\x00" + b"\x00" * 40)
    assert parse_mysql_greeting(maria).engine == "mariadb"  # type: ignore[union-attr]
    assert parse_mysql_greeting(mysql).engine == "mysql"  # type: ignore[union-attr]
    assert parse_mysql_greeting(packet(b"\x0aHTTP\x00")) is None
    assert parse_mysql_greeting(b"SSH-2.0-OpenSSH_9.6\r\n") is None
    assert parse_mysql_greeting(b"N") is None


def test_the_probe_connects_to_the_guarded_address_not_the_name(db_context, fake) -> None:
    from datasources import netguard

    server = fake(mysql_error_greeting)
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    netguard.set_resolver(resolver)
    config = published(server.port, host="db.internal.example")
    with pytest.raises(ConnectionFailed):
        # Detected as MySQL, then the driver connects to the same pinned address.
        open_database_connector(config, db_context).check()
    assert asked == ["db.internal.example"]
