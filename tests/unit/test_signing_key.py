"""The token signing key kept in Secrets Manager: read again after its maximum age (a
rotated key needs no cold start), and a failure to read it is a 503, not a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from botocore.exceptions import ClientError

from datasources import auth, aws
from datasources.aws import secrets
from datasources.config import get_settings
from datasources.errors import ServiceUnavailable, Unauthorized
from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.common import ResponseModel

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt-key"
OLD = "the-old-signing-key-that-is-long-enough-for-hs256"
NEW = "the-new-signing-key-that-is-long-enough-for-hs256"


class FakeSecretsManager:
    def __init__(self, value: str) -> None:
        self.value: str | None = value
        self.reads = 0

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        self.reads += 1
        if self.value is None:
            raise ClientError(
                {"Error": {"Code": "InternalServiceError", "Message": "down"}}, "GetSecretValue"
            )
        return {"SecretString": self.value}


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> FakeSecretsManager:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("JWT_SECRET_ARN", ARN)
    monkeypatch.setenv("JWT_ALGORITHMS", "HS256")
    for name in ("JWKS_URL", "JWT_AUDIENCE", "JWT_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    fake = FakeSecretsManager(OLD)
    monkeypatch.setattr(aws, "client", lambda service: fake)
    monkeypatch.setattr(secrets, "_signing_keys", None)
    yield fake
    get_settings.cache_clear()


def bearer(key: str) -> dict[str, str]:
    claims = {"sub": "user-1", "organization": "acme", "exp": int(time.time()) + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm='HS256')}"}


def test_the_signing_key_has_a_bounded_cache_age() -> None:
    assert 0 < secrets.SIGNING_KEY_MAX_AGE_SECONDS <= 900


def test_a_rotated_key_is_used_once_the_cached_one_is_older_than_its_maximum_age(
    keys: FakeSecretsManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "SIGNING_KEY_MAX_AGE_SECONDS", 1)
    # Given the key read once, when it is rotated, then within its age the cached key
    # still verifies (no second read) and the new one does not yet.
    assert auth.authenticate(bearer(OLD)).sub == "user-1"
    keys.value = NEW
    assert auth.authenticate(bearer(OLD)).sub == "user-1"
    with pytest.raises(Unauthorized):
        auth.authenticate(bearer(NEW))
    assert keys.reads == 1
    # When its age has passed, then the rotated key is read and verifies, the old one not.
    time.sleep(1.1)
    assert auth.authenticate(bearer(NEW)).sub == "user-1"
    with pytest.raises(Unauthorized):
        auth.authenticate(bearer(OLD))
    assert keys.reads == 2


def test_a_signing_key_that_cannot_be_read_is_a_503(keys: FakeSecretsManager) -> None:
    keys.value = None
    with pytest.raises(ServiceUnavailable):
        auth.authenticate(bearer(OLD))

    class Answer(ResponseModel):
        ok: bool

    @api_route(response=Answer)
    def route(request: ApiRequest[None]) -> ApiResult:
        return ApiResult(Answer(ok=True), "ok")

    event = {
        "headers": bearer(OLD),
        "pathParameters": {"workspace_id": "ws_demo"},
        "requestContext": {"requestId": "req-1"},
    }
    response = route(event, None)
    body = json.loads(response["body"])
    assert response["statusCode"] == 503
    assert body["data"]["code"] == "service_unavailable"
    assert ARN not in response["body"]
