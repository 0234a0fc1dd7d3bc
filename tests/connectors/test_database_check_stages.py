"""`check()` names the stage that failed, the same way for every database engine.

Each test runs against the local PostgreSQL and the local MariaDB (scripts/databases.sh).
Engine-specific checks (versions, TLS modes, catalogs) stay in test_postgres.py and
test_mysql.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from datasources import netguard
from datasources.config import Settings
from datasources.connectors.base import Connector, ConnectorContext
from datasources.connectors.sql.factory import open_database_connector
from datasources.errors import ConnectionFailed
from tests.connectors import db_fixtures as fx

Build = Callable[..., Connector]

ENGINES = [
    pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mysql", marks=pytest.mark.mysql, id="mariadb"),
]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_fixtures")
    else:
        request.getfixturevalue("my_fixtures")
    return str(request.param)


@pytest.fixture
def connector(engine: str) -> Build:
    """A connector for the engine's local server, with config overrides."""
    config = fx.pg_config if engine == "postgresql" else fx.my_config

    def build(context: ConnectorContext, **overrides: Any) -> Connector:
        return open_database_connector(config(**overrides), context)

    return build


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_given_wrong_password_then_auth_stage_without_the_password(
    db_context, connector, engine
):
    secret = "Wr0ng-pa55word-XYZ"
    with pytest.raises(ConnectionFailed) as info:
        connector(db_context, password=secret).check()
    assert info.value.stage == "auth"
    assert secret not in info.value.message
    assert secret not in str(info.value.details)
    if engine == "postgresql":
        assert fx.USER in info.value.message


def test_check_given_unknown_database_then_database_stage(db_context, connector):
    with pytest.raises(ConnectionFailed) as info:
        connector(db_context, database="no_such_db").check()
    assert info.value.stage == "database"
    assert "no_such_db" in info.value.message


def test_check_given_closed_port_then_tcp_stage(db_context, connector, engine):
    with pytest.raises(ConnectionFailed) as info:
        connector(db_context, port=free_port()).check()
    assert info.value.stage == "tcp"
    if engine == "postgresql":
        assert "refused" in info.value.message


def test_check_given_a_server_that_never_answers_then_timeout_stage_within_bound(
    db_context, connector
):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts the TCP handshake; nothing ever answers
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as info:
            connector(db_context, port=silent.getsockname()[1], connect_timeout=2).check()
        elapsed = time.monotonic() - started
    assert info.value.stage == "timeout"
    assert elapsed < 6


def test_check_given_unresolvable_host_then_dns_stage_before_any_socket(db_context, connector):
    def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    netguard.set_resolver(fail)
    with pytest.raises(ConnectionFailed) as info:
        connector(db_context, host="db.invalid").check()
    assert info.value.stage == "dns"


def test_check_given_loopback_outside_local_mode_then_refused_by_policy(connector):
    context = ConnectorContext(settings=Settings(local_mode=False))
    with pytest.raises(ConnectionFailed) as info:
        connector(context).check()
    assert info.value.stage == "policy"


def test_check_given_ssl_required_on_a_server_without_tls_then_tls_stage(db_context, connector):
    with pytest.raises(ConnectionFailed) as info:
        connector(db_context, ssl_mode="require").check()
    assert info.value.stage == "tls"
