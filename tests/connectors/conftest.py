"""Database fixtures for the connector tests: real PostgreSQL and MariaDB servers.

The servers are started by `scripts/databases.sh start` (run by `make test` / CI before
pytest). An unreachable server fails these tests, never skips them, unless
DS_SKIP_DB_TESTS=1 says on purpose that this machine has no databases.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from datasources import netguard
from datasources.config import Settings
from datasources.connectors.base import ConnectorContext
from tests.connectors import db_fixtures as fx


@pytest.fixture(scope="session")
def pg_fixtures() -> None:
    """The ds_fx schema, built once per session."""
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    fx.build_pg_fixtures()


@pytest.fixture(scope="session")
def my_fixtures() -> None:
    """The ds_fx database, built once per session."""
    fx.require_server(fx.my_connect, "MariaDB", fx.MYSQL_PORT)
    fx.build_my_fixtures()


@pytest.fixture
def db_context() -> Iterator[ConnectorContext]:
    """Local mode, so the SSRF guard lets connectors reach loopback servers."""
    netguard.set_resolver(None)
    yield ConnectorContext(settings=Settings(local_mode=True))
    netguard.set_resolver(None)
