"""Request and connection models: what is accepted, what is refused, where secrets go."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from datasources.models.common import MASK
from datasources.models.connection import (
    ApiConfig,
    DatabaseConfig,
    FileConfig,
    merge_secrets,
    split_secrets,
)
from datasources.models.requests import SyncRequest
from datasources.models.source_requests import ConnectRequest, SourceConfigInput

PUBLISHED_SOURCES = [
    {
        "type": "database",
        "name": "customer_db",
        "connection_config": {
            "host": "db.example.com",
            "port": 5432,
            "database": "customers",
            "username": "user",
            "password": "password",
        },
        "metadata": {"description": "Customer database connection"},
    },
    {
        "type": "api",
        "name": "sales_api",
        "connection_config": {"base_url": "https://api.sales.com", "api_key": "your_api_key"},
    },
]


def test_the_published_examples_validate_and_the_type_picks_the_config_model() -> None:
    request = ConnectRequest.model_validate({"scope": "user", "sources": PUBLISHED_SOURCES})
    assert isinstance(request.sources[0].connection_config, DatabaseConfig)
    assert request.sources[0].connection_config.engine == "postgresql"
    assert isinstance(request.sources[1].connection_config, ApiConfig)


@pytest.mark.parametrize(("port", "engine"), [(5432, "postgresql"), (3306, "mysql")])
def test_engine_is_inferred_from_the_well_known_ports(port: int, engine: str) -> None:
    config = DatabaseConfig(
        host="h", port=port, database="d", username="u", password=SecretStr("p")
    )
    assert config.engine == engine


def test_an_unknown_port_without_engine_leaves_it_to_the_server_to_say() -> None:
    # The connector asks the server (engine_probe); the model no longer refuses it.
    config = DatabaseConfig.model_validate(
        {"host": "h", "port": 6432, "database": "d", "username": "u", "password": "p"}
    )
    assert config.engine is None


def _db(**tls: object) -> dict[str, object]:
    return {"host": "h", "port": 5432, "database": "d", "username": "u", "password": "p", **tls}


def _pem_cert() -> str:
    from tests.support.tls_servers import make_pki

    return make_pki().ca.cert


PEM_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH\n-----END PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    "tls",
    [
        {"ssl_root_cert": "not a certificate"},
        {"ssl_root_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        {"ssl_root_cert": "x" * (192 * 1024 + 1)},
        {"ssl_root_cert": "\u00e9\ud9b1\udd7c not ascii"},
        {"ssl_key": PEM_KEY},
        {"ssl_cert": "CERT"},
        {"ssl_mode": "allow"},
    ],
    ids=[
        "not-pem",
        "bad-base64",
        "too-large",
        "not-ascii",
        "key-without-cert",
        "cert-not-pem",
        "allow",
    ],
)
def test_bad_tls_settings_are_refused(tls: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        DatabaseConfig.model_validate(_db(**tls))
    assert "MIGHAgEA" not in str(info.value)


def test_a_key_that_is_not_pem_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as info:
        DatabaseConfig.model_validate(_db(ssl_cert=_pem_cert(), ssl_key="secret-key-material-123"))
    assert "secret-key-material-123" not in str(info.value)


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="both ssl_cert and ssl_key"):
        DatabaseConfig.model_validate(_db(ssl_cert=_pem_cert()))


def test_the_client_key_goes_to_the_secret_store_and_the_certificates_stay() -> None:
    cert = _pem_cert()
    config = DatabaseConfig.model_validate(
        _db(ssl_mode="verify-full", ssl_root_cert=cert, ssl_cert=cert, ssl_key=PEM_KEY)
    )
    masked, secrets = split_secrets(config)
    assert masked["ssl_key"] == MASK and masked["ssl_root_cert"] == cert
    assert (["ssl_key"], PEM_KEY) in secrets
    assert merge_secrets("database", masked, secrets) == config


@pytest.mark.parametrize(
    "body",
    [
        {"sources": []},
        {"sources": [{"type": "ftp", "name": "x", "connection_config": {}}]},
        {"scope": "team", "sources": PUBLISHED_SOURCES},
        {"sources": PUBLISHED_SOURCES, "unexpected": 1},
        {"sources": [{**PUBLISHED_SOURCES[0], "name": "bad/name"}]},
        {"sources": [{**PUBLISHED_SOURCES[0], "name": "x" * 129}]},
        {"sources": [PUBLISHED_SOURCES[0], PUBLISHED_SOURCES[0]]},
        {"sources": [{**PUBLISHED_SOURCES[0], "metadata": {"blob": "x" * 9000}}]},
        {"sources": [{"type": "file", "name": "f", "connection_config": {"url": "ftp://x/y"}}]},
    ],
)
def test_bad_connect_requests_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ConnectRequest.model_validate(body)


def test_validation_errors_never_echo_the_password() -> None:
    bad = {
        **PUBLISHED_SOURCES[0]["connection_config"],
        "port": "not-a-port",
        "password": "hunter2-secret",
    }  # type: ignore[dict-item]
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(SourceConfigInput).validate_python(
            {"type": "database", "connection_config": bad}
        )
    assert "hunter2-secret" not in str(caught.value)


def test_split_masks_every_secret_and_merge_restores_them() -> None:
    config = ApiConfig.model_validate(
        {
            "base_url": "https://api.example.com",
            "api_key": "k-123",
            "headers": {"X-Api-Key": "h-456", "Accept": "application/json"},
            "basic_auth": {"username": "me", "password": "b-789"},
        }
    )
    masked, secrets = split_secrets(config)
    text = str(masked)
    for value in ("k-123", "h-456", "b-789"):
        assert value not in text
    assert masked["api_key"] == MASK
    assert masked["headers"]["Accept"] == "application/json"
    restored = merge_secrets("api", masked, secrets)
    assert isinstance(restored, ApiConfig)
    assert restored.api_key is not None and restored.api_key.get_secret_value() == "k-123"
    assert restored.basic_auth is not None
    assert restored.basic_auth.password.get_secret_value() == "b-789"


def test_file_credentials_are_secret() -> None:
    config = FileConfig.model_validate(
        {
            "url": "s3://b/k.csv",
            "credentials": {"aws_access_key_id": "AKIA1", "aws_secret_access_key": "very-secret"},
        }
    )
    masked, secrets = split_secrets(config)
    assert "very-secret" not in str(masked)
    assert [path for path, _ in secrets] == [["credentials", "aws_secret_access_key"]]


def test_sync_options_bounds() -> None:
    assert SyncRequest.model_validate({}).sync_options.batch_size == 10_000
    for size in (0, 100_001):
        with pytest.raises(ValidationError):
            SyncRequest.model_validate({"sync_options": {"batch_size": size}})
    with pytest.raises(ValidationError):
        SyncRequest.model_validate({"source_ids": ["not-an-id"]})
