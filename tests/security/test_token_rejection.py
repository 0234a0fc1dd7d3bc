"""Broken authentication (OWASP API2): every bad token is a 401 on every endpoint, through
the real handlers, with a plain message, no stack trace and nothing else in the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import TEST_JWT_SECRET, Stack
from tests.security.conftest import RecordingHandler

NOW = int(time.time())
JOB = "job_" + "0" * 20


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "user-1",
        "organization": "acme",
        "role": "admin",
        "exp": NOW + 7200,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], key: str = TEST_JWT_SECRET, **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def hs256_with_the_rs256_public_key() -> str:
    """The key-confusion forgery: HMAC-SHA256 keyed with the server's RSA public key."""
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(RSA_PUBLIC_PEM, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


# name -> (Authorization header value or None for no header, settings to apply)
BAD_TOKENS: dict[str, tuple[Callable[[], str | None], dict[str, str]]] = {
    "expired": (lambda: "Bearer " + hs256(claims(exp=NOW - 3600)), {}),
    "not yet valid": (lambda: "Bearer " + hs256(claims(nbf=NOW + 3600)), {}),
    "no exp": (lambda: "Bearer " + hs256(claims(exp=None)), {}),
    "wrong signature": (
        lambda: "Bearer " + hs256(claims(), key="another-secret-0123456789abcdef-xyz"),
        {},
    ),
    "signature stripped": (
        lambda: "Bearer " + hs256(claims()).rsplit(".", 1)[0] + ".",
        {},
    ),
    "alg none": (lambda: "Bearer " + hand_made({"alg": "none", "typ": "JWT"}, claims()), {}),
    "alg None spelled oddly": (
        lambda: "Bearer " + hand_made({"alg": "nOnE"}, claims(), b"sig"),
        {},
    ),
    "alg missing": (lambda: "Bearer " + hand_made({"typ": "JWT"}, claims(), b"sig"), {}),
    "alg not a string": (lambda: "Bearer " + hand_made({"alg": 256}, claims(), b"sig"), {}),
    "RS256 token when only HS256 is accepted": (
        lambda: "Bearer " + jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
        {},
    ),
    "HS256 signed with the RS256 public key (RS256 accepted)": (
        lambda: "Bearer " + hs256_with_the_rs256_public_key(),
        {"JWT_ALGORITHMS": "RS256", "JWKS_URL": "https://issuer.invalid/jwks.json"},
    ),
    "HS256 signed with the RS256 public key (both accepted)": (
        lambda: "Bearer " + hs256_with_the_rs256_public_key(),
        {"JWT_ALGORITHMS": "HS256,RS256", "JWKS_URL": "https://issuer.invalid/jwks.json"},
    ),
    "wrong audience": (
        lambda: "Bearer " + hs256(claims(aud="someone-else")),
        {"JWT_AUDIENCE": "datasources"},
    ),
    "no audience when one is configured": (
        lambda: "Bearer " + hs256(claims()),
        {"JWT_AUDIENCE": "datasources"},
    ),
    "wrong issuer": (
        lambda: "Bearer " + hs256(claims(iss="https://evil.invalid/")),
        {"JWT_ISSUER": "https://issuer.invalid/"},
    ),
    "no issuer when one is configured": (
        lambda: "Bearer " + hs256(claims()),
        {"JWT_ISSUER": "https://issuer.invalid/"},
    ),
    "missing sub": (lambda: "Bearer " + hs256(claims(sub=None)), {}),
    "missing organization": (lambda: "Bearer " + hs256(claims(organization=None)), {}),
    "organization that would break out of the tenant key": (
        lambda: "Bearer " + hs256(claims(organization="acme#WS#ws_demo")),
        {},
    ),
    "sub that is not a string": (lambda: "Bearer " + hs256(claims(sub=12345)), {}),
    "unknown role": (lambda: "Bearer " + hs256(claims(role="root")), {}),
    "oversized token (valid signature)": (
        lambda: "Bearer " + hs256(claims(padding="x" * 9000)),
        {},
    ),
    "oversized garbage": (lambda: "Bearer " + "A" * 200_000, {}),
    "no Authorization header": (lambda: None, {}),
    "empty header": (lambda: "", {}),
    "Basic scheme": (lambda: "Basic dXNlcjpwYXNz", {}),
    "Bearer without token": (lambda: "Bearer ", {}),
    "not a JWT": (lambda: "Bearer not-a-jwt", {}),
    "three garbage segments": (lambda: "Bearer %%%.$$$.^^^", {}),
    "header is not JSON": (lambda: f"Bearer {b64(b'not json')}.{b64(b'{}')}.sig", {}),
    "header is a JSON list": (lambda: f"Bearer {b64(b'[1,2]')}.{b64(b'{}')}.sig", {}),
    "payload is not JSON": (
        lambda: "Bearer " + b64(b'{"alg":"HS256"}') + "." + b64(b"\xff\xfe") + ".sig",
        {},
    ),
    "control characters": (lambda: "Bearer \x00\x01\x02.\x03.\x04", {}),
    "non-ASCII": (lambda: "Bearer ключ.токен.подпись", {}),
}

BODIES: dict[str, Any] = {
    "connect": {
        "sources": [{"type": "file", "name": "x", "connection_config": {"url": "s3://b/k"}}]
    },
    "sync": {},
    "cleanup": {"source_ids": ["src_" + "0" * 20]},
    "test": {"source_config": {"type": "file", "connection_config": {"url": "s3://b/k.csv"}}},
}
QUERIES: dict[str, dict[str, str]] = {
    "list": {"scope": "user"},
    "status": {"scope": "user"},
    "schema": {"source_id": "src_" + "0" * 20},
}


DEFAULTS = {"JWT_ALGORITHMS": "HS256", "JWKS_URL": "", "JWT_AUDIENCE": "", "JWT_ISSUER": ""}


def problems_with(stack: Stack, case: str) -> list[str]:
    """Call every endpoint with the case's token; describe each way the answer is wrong."""
    make, settings = BAD_TOKENS[case]
    stack.configure(**{**DEFAULTS, **settings})
    value = make()
    headers = {} if value is None else {"Authorization": value}
    raw_token = (value or "").partition(" ")[2]
    found: list[str] = []
    for endpoint in Stack.ENDPOINTS:
        response = stack.call(
            endpoint,
            headers=headers,
            body=BODIES.get(endpoint),
            query=QUERIES.get(endpoint),
            path={"job_id": JOB},
        )
        body = response.body
        message = str(body.get("message"))
        checks = {
            "status is 401": response.status_code == 401,
            # Exactly the envelope: a short, plain message and the error code; nothing else.
            "envelope only": set(body) == {"status", "message", "data", "request_id"},
            "error code only": body.get("data") == {"code": "unauthorized"},
            "short plain message": 5 < len(message) < 100 and message.isprintable(),
            "no internals": not any(
                marker in message for marker in ("Traceback", 'File "', "jwt.", "Error(")
            ),
            "token not echoed": len(raw_token) <= 8 or raw_token not in json.dumps(body),
            "not cached": response.headers.get("Cache-Control") == "no-store",
        }
        found.extend(
            f"{case} / {endpoint}: {name} ({body})" for name, ok in checks.items() if not ok
        )
    return found


def test_every_bad_token_is_a_plain_401_on_every_endpoint(
    stack: Stack, all_logs: RecordingHandler
) -> None:
    found: list[str] = []
    for case in BAD_TOKENS:
        found.extend(problems_with(stack, case))
    assert not found, "\n".join(found)
    logged = "\n".join(all_logs.lines)
    assert "request refused" in logged  # the refusals are logged, at INFO ...
    assert "Traceback" not in logged  # ... without a stack trace
    for value in (make() for make, _ in BAD_TOKENS.values()):
        token = (value or "").partition(" ")[2]
        if len(token) > 8:
            assert token not in logged, "a token was logged"


def test_a_valid_token_still_passes_each_configured_check(stack: Stack) -> None:
    # The 401s above are not a handler that refuses everyone.
    stack.configure(JWT_AUDIENCE="datasources", JWT_ISSUER="https://issuer.invalid/")
    good = hs256(claims(aud="datasources", iss="https://issuer.invalid/"))
    response = stack.call("list", query={"scope": "user"}, token=good)
    assert response.status_code == 200, response.body
    at_the_limit = hs256(claims(aud="datasources", iss="https://issuer.invalid/", pad="x" * 5000))
    assert len(at_the_limit) < 8192
    assert stack.call("list", query={"scope": "user"}, token=at_the_limit).status_code == 200
