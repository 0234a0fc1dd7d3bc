"""The `engine` fixture: each shared SQL connector test runs once per real server."""

from __future__ import annotations

import pytest

from tests.connectors.sql.engines import Engine, MariaDb, Postgres

_ENGINES = {"postgres": (Postgres, "pg_fixtures"), "mariadb": (MariaDb, "my_fixtures")}


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mysql),
    ]
)
def engine(request: pytest.FixtureRequest) -> Engine:
    """The adapter of one engine, its fixture schema built."""
    factory, fixtures = _ENGINES[request.param]
    request.getfixturevalue(fixtures)
    return factory()
