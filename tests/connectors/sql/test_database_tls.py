"""TLS against real servers: every ssl_mode, a wrong CA, a name mismatch, client certificates.

The module starts its own PostgreSQL and MariaDB with TLS (tests/support/tls_servers.py),
with a CA, a server certificate for `localhost` and one for another name, made here.
The shared test servers have no TLS: they are the "server without TLS" cases. Host
names resolve to 127.0.0.1 through the SSRF guard's injectable resolver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from datasources import netguard
from datasources.config import Settings
from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.errors import ConnectionFailed
from datasources.models.connection import DatabaseConfig
from tests.connectors import db_fixtures as fx
from tests.support import tls_servers as tls

pytestmark = pytest.mark.timeout(600)

ENGINES = [
    pytest.param("postgresql", marks=pytest.mark.postgres, id="postgresql"),
    pytest.param("mariadb", marks=pytest.mark.mysql, id="mariadb"),
]
OTHER_NAME = "db.other.example"


@pytest.fixture(scope="module")
def pki() -> tls.Pki:
    return tls.make_pki()


@pytest.fixture(scope="module")
def pg_tls(pki: tls.Pki) -> Iterator[tls.Server]:
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    server = tls.start_postgres(pki, pki.server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def my_tls(pki: tls.Pki) -> Iterator[tls.Server]:
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    server = tls.start_mariadb(pki, pki.server)
    yield server
    server.stop()


@pytest.fixture
def context() -> Iterator[ConnectorContext]:
    netguard.set_resolver(lambda host, port: ["127.0.0.1"])
    yield ConnectorContext(settings=Settings(local_mode=True))
    netguard.set_resolver(None)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def tls_config(engine: str, server: tls.Server, **overrides: Any) -> DatabaseConfig:
    values: dict[str, Any] = {
        "host": "localhost",
        "port": server.port,
        "database": tls.DATABASE,
        "username": tls.USER,
        "password": tls.PASSWORD,
        "engine": engine,
        "connect_timeout": 10,
    }
    values.update(overrides)
    return DatabaseConfig.model_validate(values)


def plain_config(engine: str, **overrides: Any) -> DatabaseConfig:
    """The shared server of the engine (no TLS), reached as `localhost`."""
    build = fx.pg_config if engine == "postgresql" else fx.my_config
    return build(host="localhost", **overrides)


@pytest.fixture
def with_tls(request: pytest.FixtureRequest, engine: str) -> tls.Server:
    return request.getfixturevalue("pg_tls" if engine == "postgresql" else "my_tls")


@pytest.fixture
def without_tls(request: pytest.FixtureRequest, engine: str) -> None:
    request.getfixturevalue("pg_fixtures" if engine == "postgresql" else "my_fixtures")


def check(config: DatabaseConfig, context: ConnectorContext) -> dict[str, Any]:
    connector = open_database_connector(config, context)
    try:
        return connector.check().details
    finally:
        connector.close()


def tls_error(config: DatabaseConfig, context: ConnectorContext) -> ConnectionFailed:
    with pytest.raises(ConnectionFailed) as info:
        check(config, context)
    assert info.value.stage == "tls", info.value.message
    return info.value


# ---- server with TLS


@pytest.mark.parametrize("mode", ["prefer", "require", "verify-ca", "verify-full"])
def test_given_tls_server_when_mode_asks_for_tls_then_encrypted_with_version_and_cipher(
    engine, with_tls, pki, context, mode
):
    details = check(tls_config(engine, with_tls, ssl_mode=mode, ssl_root_cert=pki.ca.cert), context)
    assert details["tls"] is True
    assert details["ssl_mode"] == mode
    assert str(details["tls_version"]).startswith("TLSv1.")
    assert details["tls_cipher"]


def test_given_tls_server_when_disable_then_clear_text(engine, with_tls, context):
    details = check(tls_config(engine, with_tls, ssl_mode="disable"), context)
    assert details["tls"] is False
    assert details["tls_version"] is None


def test_given_tls_server_when_require_without_ca_then_encrypted_unverified(
    engine, with_tls, context
):
    # require encrypts but trusts any certificate, like libpq's sslmode=require.
    details = check(tls_config(engine, with_tls, ssl_mode="require"), context)
    assert details["tls"] is True


def test_given_a_ca_bundle_without_mode_then_verify_full_is_used(engine, with_tls, pki, context):
    details = check(tls_config(engine, with_tls, ssl_root_cert=pki.ca.cert), context)
    assert details["ssl_mode"] == "verify-full"
    assert details["tls"] is True


def test_given_verify_ca_then_the_name_is_not_checked(engine, with_tls, pki, context):
    config = tls_config(engine, with_tls, host=OTHER_NAME, ssl_mode="verify-ca")
    config = config.model_copy(update={"ssl_root_cert": pki.ca.cert})
    assert check(config, context)["tls"] is True


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_given_wrong_ca_then_tls_stage_says_untrusted_ca(engine, with_tls, pki, context, mode):
    config = tls_config(engine, with_tls, ssl_mode=mode, ssl_root_cert=pki.stranger_ca.cert)
    error = tls_error(config, context)
    assert "untrusted CA" in error.message


def test_given_verify_full_and_another_name_then_tls_stage_says_name_mismatch_and_nothing_read(
    engine, with_tls, pki, context
):
    config = tls_config(
        engine, with_tls, host=OTHER_NAME, ssl_mode="verify-full", ssl_root_cert=pki.ca.cert
    )
    assert "name mismatch" in tls_error(config, context).message
    connector = open_database_connector(config, context)
    try:
        with pytest.raises(ConnectionFailed) as info:
            next(iter(connector.read("tls_rows", StreamState(), 10)))
        assert info.value.stage == "tls"
    finally:
        connector.close()


def test_given_server_certificate_for_another_name_then_verify_full_refuses_it(
    engine, with_tls, pki, context
):
    # The same server now presents the certificate made for db.other.example.
    with_tls.use_certificate(pki.other_name_server)
    try:
        config = tls_config(engine, with_tls, ssl_mode="verify-full", ssl_root_cert=pki.ca.cert)
        deadline = time.monotonic() + 10
        while True:  # PostgreSQL reloads its certificate asynchronously
            try:
                check(config, context)
            except ConnectionFailed as exc:
                error = exc
                break
            assert time.monotonic() < deadline, "the server kept its old certificate"
            time.sleep(0.2)
        assert error.stage == "tls"
        assert "name mismatch" in error.message
        # verify-ca does not look at the name: the same certificate passes.
        config = config.model_copy(update={"ssl_mode": "verify-ca"})
        assert check(config, context)["tls"] is True
    finally:
        with_tls.use_certificate(pki.server)
        time.sleep(1.0)


def test_given_client_certificate_then_the_certificate_user_logs_in_and_reads(
    engine, with_tls, pki, context
):
    config = tls_config(
        engine,
        with_tls,
        username=tls.CERT_USER,
        password=tls.CERT_USER_PASSWORD,
        ssl_mode="verify-full",
        ssl_root_cert=pki.ca.cert,
        ssl_cert=pki.client.cert,
        ssl_key=pki.client.key,
    )
    assert check(config, context)["tls"] is True
    connector = open_database_connector(config, context)
    try:
        stream = "public.tls_rows" if engine == "postgresql" else "tls_rows"
        batches = list(connector.read(stream, StreamState(), 10))
    finally:
        connector.close()
    assert sum(b.records.num_rows for b in batches) == 2


def test_given_no_client_certificate_then_the_certificate_user_is_refused(
    engine, with_tls, pki, context
):
    config = tls_config(
        engine,
        with_tls,
        username=tls.CERT_USER,
        password=tls.CERT_USER_PASSWORD,
        ssl_mode="verify-full",
        ssl_root_cert=pki.ca.cert,
    )
    with pytest.raises(ConnectionFailed) as info:
        check(config, context)
    # PostgreSQL says a certificate is needed (tls); MariaDB denies the login (auth).
    assert info.value.stage in ("tls", "auth")


def test_given_client_certificate_with_the_wrong_key_then_tls_stage(engine, with_tls, pki, context):
    config = tls_config(
        engine,
        with_tls,
        username=tls.CERT_USER,
        password=tls.CERT_USER_PASSWORD,
        ssl_mode="verify-full",
        ssl_root_cert=pki.ca.cert,
        ssl_cert=pki.client.cert,
        ssl_key=pki.server.key,
    )
    error = tls_error(config, context)
    assert "client certificate" in error.message
    assert pki.server.key.splitlines()[1] not in error.message


# ---- server without TLS


@pytest.mark.parametrize("mode", ["disable", "prefer"])
def test_given_server_without_tls_when_tls_optional_then_clear_text(
    engine, without_tls, context, mode
):
    details = check(plain_config(engine, ssl_mode=mode), context)
    assert details["tls"] is False
    assert details["tls_cipher"] is None


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_given_server_without_tls_when_tls_required_then_tls_stage_says_not_offered(
    engine, without_tls, pki, context, mode
):
    overrides: dict[str, Any] = {"ssl_mode": mode}
    if mode != "require":
        overrides["ssl_root_cert"] = pki.ca.cert
    error = tls_error(plain_config(engine, **overrides), context)
    assert "does not offer TLS" in error.message
