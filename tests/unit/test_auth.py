"""JWT verification: each way a token can be wrong ends in 401 with a plain message."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from datasources import auth
from datasources.config import Settings, get_settings
from datasources.errors import Forbidden, Unauthorized
from datasources.models.common import Role, Scope

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture(autouse=True)
def hs256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.delenv("JWKS_URL", raising=False)
    monkeypatch.delenv("JWT_AUDIENCE", raising=False)
    monkeypatch.delenv("JWT_ISSUER", raising=False)
    monkeypatch.setenv("JWT_ALGORITHMS", "HS256")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": "user-1",
        "organization": "acme",
        "role": "member",
        # Far enough ahead that a slow run (collection to call) cannot expire it.
        "exp": int(time.time()) + 7200,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_given_a_valid_hs256_token_when_authenticated_then_the_principal_carries_its_claims() -> (
    None
):
    principal = auth.authenticate(bearer(jwt.encode(claims(), SECRET, algorithm="HS256")))
    assert principal == auth.Principal("user-1", "acme", Role.MEMBER)


def test_header_name_is_case_insensitive() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert auth.authenticate({"authorization": f"bearer {token}"}).sub == "user-1"


@pytest.mark.parametrize(
    ("token_claims", "message"),
    [
        (claims(exp=int(time.time()) - 120), "expired"),
        (claims(nbf=int(time.time()) + 3600), "not valid yet"),
        (claims(exp=None), "'exp'"),
        (claims(sub=None), "'sub'"),
        (claims(organization=None), "organization"),
        (claims(organization="acme#WS#other"), "organization"),
        (claims(role="owner"), "role"),
    ],
)
def test_given_bad_claims_when_authenticated_then_401(
    token_claims: dict[str, object], message: str
) -> None:
    with pytest.raises(Unauthorized) as caught:
        auth.authenticate(bearer(jwt.encode(token_claims, SECRET, algorithm="HS256")))
    assert message in caught.value.message


def test_wrong_signature_is_rejected() -> None:
    token = jwt.encode(claims(), "another-secret-of-sufficient-length-123456", algorithm="HS256")
    with pytest.raises(Unauthorized, match="signature"):
        auth.authenticate(bearer(token))


def _unsigned(payload: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def test_alg_none_is_rejected() -> None:
    with pytest.raises(Unauthorized, match="algorithm"):
        auth.authenticate(bearer(_unsigned(claims())))


def test_hs256_signed_with_the_rs256_public_key_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The classic confusion attack: the server accepts RS256 via JWKS; the attacker signs
    # HS256 with the public key. HS256 is not in the accepted list, so it never verifies.
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256")
    monkeypatch.setenv("JWKS_URL", "https://issuer.invalid/.well-known/jwks.json")
    get_settings.cache_clear()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # pyjwt refuses to HMAC-sign with a PEM key, so build the forged token by hand.
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    signature = hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest()
    forged = (
        header + b"." + body + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")
    ).decode()
    with pytest.raises(Unauthorized, match="algorithm"):
        auth.authenticate(bearer(forged))


def test_rs256_and_es256_tokens_verify_against_the_jwks(monkeypatch: pytest.MonkeyPatch) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    keys = {"rsa-1": rsa_key.public_key(), "ec-1": ec_key.public_key()}

    class FakeJwks:
        def get_signing_key_from_jwt(self, token: str) -> object:
            kid = jwt.get_unverified_header(token)["kid"]
            if kid not in keys:
                raise jwt.PyJWKClientError("unknown kid")
            return type("Key", (), {"key": keys[kid]})()

    monkeypatch.setenv("JWT_ALGORITHMS", "RS256,ES256")
    monkeypatch.setenv("JWKS_URL", "https://issuer.invalid/.well-known/jwks.json")
    monkeypatch.setenv("JWT_AUDIENCE", "datasources")
    monkeypatch.setenv("JWT_ISSUER", "https://issuer.invalid/")
    get_settings.cache_clear()
    monkeypatch.setattr(auth, "_jwks_client", lambda url: FakeJwks())
    good = claims(aud="datasources", iss="https://issuer.invalid/")
    rs = jwt.encode(good, rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(good, ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert auth.authenticate(bearer(rs)).organization == "acme"
    assert auth.authenticate(bearer(es)).organization == "acme"
    wrong_aud = jwt.encode(
        claims(aud="other", iss="https://issuer.invalid/"),
        rsa_key,
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    )
    with pytest.raises(Unauthorized, match="audience"):
        auth.authenticate(bearer(wrong_aud))
    wrong_iss = jwt.encode(
        claims(aud="datasources", iss="https://evil.invalid/"),
        rsa_key,
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    )
    with pytest.raises(Unauthorized, match="issuer"):
        auth.authenticate(bearer(wrong_iss))
    unknown_kid = jwt.encode(good, rsa_key, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(Unauthorized):
        auth.authenticate(bearer(unknown_kid))
    hs = jwt.encode(good, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="algorithm"):
        auth.authenticate(bearer(hs))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer %%%garbage%%%"},
        {"Authorization": "Bearer " + "A" * 20_000},
    ],
)
def test_missing_garbage_or_oversized_tokens_are_401(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        auth.authenticate(headers)


def test_role_rules() -> None:
    viewer = auth.Principal("u", "o", Role.VIEWER)
    member = auth.Principal("u", "o", Role.MEMBER)
    admin = auth.Principal("u", "o", Role.ADMIN)
    for scope in Scope:
        with pytest.raises(Forbidden):
            viewer.require_write(scope)
        admin.require_write(scope)
    member.require_write(Scope.USER)
    with pytest.raises(Forbidden):
        member.require_write(Scope.ORGANIZATION)
    assert member.owner_for(Scope.USER) == "u"
    assert member.owner_for(Scope.ORGANIZATION) == "-"


def test_settings_default_is_hs256_only() -> None:
    assert Settings().jwt_algorithms == ["HS256"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_tampered_payload_fails_the_hmac_check() -> None:
    header, _, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged = _b64(json.dumps(claims(organization="other-org")).encode())
    with pytest.raises(Unauthorized, match="signature"):
        auth.authenticate(bearer(f"{header}.{forged}.{signature}"))


@pytest.mark.parametrize(
    "token",
    ["a.b", "a.b.c.d", "e30.e30.", "!!.e30.abc", _b64(b"[1]") + "." + _b64(b"{}") + ".x"],
)
def test_tokens_that_are_not_three_base64url_parts_of_json_objects_are_malformed(
    token: str,
) -> None:
    with pytest.raises(Unauthorized):
        auth.authenticate(bearer(token))


@pytest.mark.parametrize(
    ("token_claims", "message"),
    [
        (claims(exp="tomorrow"), "'exp' must be a number"),
        (claims(exp=True), "'exp' must be a number"),
        (claims(nbf="soon"), "'nbf' must be a number"),
        (claims(aud="someone-else"), "audience"),
    ],
)
def test_malformed_time_claims_and_unexpected_audiences_are_refused(
    token_claims: dict[str, object], message: str
) -> None:
    with pytest.raises(Unauthorized, match=message):
        auth.authenticate(bearer(jwt.encode(token_claims, SECRET, algorithm="HS256")))


def test_critical_header_extensions_are_refused() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"crit": ["exp"]})
    with pytest.raises(Unauthorized, match="critical"):
        auth.authenticate(bearer(token))


def test_hs384_and_hs512_verify_when_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_ALGORITHMS", "HS384,HS512")
    get_settings.cache_clear()
    for algorithm in ("HS384", "HS512"):
        token = jwt.encode(claims(), SECRET, algorithm=algorithm)
        assert auth.authenticate(bearer(token)).sub == "user-1"
    with pytest.raises(Unauthorized, match="algorithm"):
        auth.authenticate(bearer(jwt.encode(claims(), SECRET, algorithm="HS256")))


def test_the_leeway_is_thirty_seconds() -> None:
    just_expired = jwt.encode(claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256")
    assert auth.authenticate(bearer(just_expired)).sub == "user-1"
    long_expired = jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="expired"):
        auth.authenticate(bearer(long_expired))
