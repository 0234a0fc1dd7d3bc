"""JWT authentication and the role/scope rules (README "Security")."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from datasources.config import Settings, get_settings
from datasources.errors import Forbidden, Unauthorized
from datasources.models.common import CLAIM_PATTERN, Role, Scope, fullmatches
from datasources.tokens import (
    MAX_JWT_DEPTH,
    TokenError,
    b64url_decode,
    decode_segment,
    finite_number,
)

if TYPE_CHECKING:
    import jwt

_HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_LEEWAY_SECONDS = 30
_ASYMMETRIC_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    sub: str
    organization: str
    role: Role

    def owner_for(self, scope: Scope) -> str:
        """The owner segment of the tenant key: the user for `user` scope, '-' otherwise."""
        return self.sub if scope is Scope.USER else "-"

    def require_write(self, scope: Scope) -> None:
        """`viewer` never writes; `organization` scope needs `admin`."""
        if self.role is Role.VIEWER:
            raise Forbidden("the viewer role cannot change data sources")
        if scope is Scope.ORGANIZATION and self.role is not Role.ADMIN:
            raise Forbidden("writing in organization scope needs the admin role")


def authenticate(headers: dict[str, str] | None) -> Principal:
    """Verify the bearer token in `headers` and return its principal (401 otherwise)."""
    settings = get_settings()
    token = _bearer_token(headers or {}, settings)
    claims = _decode(token, settings)
    sub, organization, role = claims.get("sub"), claims.get("organization"), claims.get("role")
    for name, value in (("sub", sub), ("organization", organization)):
        if not fullmatches(CLAIM_PATTERN, value):
            raise Unauthorized(f"token claim '{name}' is missing or malformed")
    if role is not None and not isinstance(role, str):
        raise Unauthorized("token claim 'role' must be admin, member or viewer")
    try:
        parsed_role = Role(role if role is not None else Role.VIEWER)
    except ValueError:
        raise Unauthorized("token claim 'role' must be admin, member or viewer") from None
    return Principal(sub=str(sub), organization=str(organization), role=parsed_role)


def _bearer_token(headers: dict[str, str], settings: Settings) -> str:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if len(token) > settings.max_token_bytes:
        raise Unauthorized("token is too large")
    return token.strip()


def _decode(token: str, settings: Settings) -> dict[str, Any]:
    header, payload, signing_input, signature = _split(token)
    algorithm = header.get("alg")
    # The accepted list is explicit: `none` and anything not configured never pass, and
    # an HMAC algorithm is only accepted with the HMAC secret (no RS/HS key confusion).
    if not isinstance(algorithm, str) or algorithm not in settings.jwt_algorithms:
        raise Unauthorized("token algorithm is not accepted")
    if "crit" in header:
        raise Unauthorized("token uses critical extensions this service does not support")
    if algorithm in _HMAC_ALGORITHMS:
        # HMAC tokens (the default deployment) are checked with the standard library:
        # PyJWT would import `cryptography`, ~130 ms of every light function's cold start.
        key = _hmac_secret(settings).encode("utf-8")
        expected = hmac.new(key, signing_input, _HMAC_ALGORITHMS[algorithm]).digest()
        if not hmac.compare_digest(expected, signature):
            raise Unauthorized("token signature is invalid")
    elif algorithm in _ASYMMETRIC_ALGORITHMS and settings.jwks_url:
        _verify_asymmetric(token, algorithm, settings.jwks_url)
    else:
        raise Unauthorized("token algorithm is not accepted")
    _check_claims(payload, settings)
    return payload


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signing input and signature of a compact JWS; 401 when malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthorized("token is malformed")
    # Bounded before any JSON is parsed (the whole token is already within
    # max_token_bytes): a deep or non-finite header is refused like any malformed one.
    limit = len(token)
    try:
        header = decode_segment(parts[0], max_chars=limit, max_depth=MAX_JWT_DEPTH)
        payload = decode_segment(parts[1], max_chars=limit, max_depth=MAX_JWT_DEPTH)
        signature = b64url_decode(parts[2], max_chars=limit)
    except TokenError:
        raise Unauthorized("token is malformed") from None
    return header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def _verify_asymmetric(token: str, algorithm: str, jwks_url: str) -> None:
    # Imported here: only deployments that accept RS256/ES256 tokens pay for it.
    import jwt

    try:
        key = _jwks_client(jwks_url).get_signing_key_from_jwt(token).key
    except jwt.PyJWTError:
        raise Unauthorized("token signing key is unknown") from None
    try:
        # Claims are checked below, the same way for every algorithm.
        jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.PyJWTError:
        raise Unauthorized("token signature is invalid") from None


def _check_claims(claims: dict[str, Any], settings: Settings) -> None:
    """exp (required), nbf, iat, iss and aud, with 30 s of leeway for clock skew."""
    now = time.time()
    for name in ("exp", "sub"):
        if name not in claims:
            raise Unauthorized(f"token is missing the '{name}' claim")
    times: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        if name in claims:
            # Finite only: an exp of NaN compares false with everything and never expires.
            number = finite_number(claims[name])
            if number is None:
                raise Unauthorized(f"token claim '{name}' must be a number (finite)")
            times[name] = number
    if now > times["exp"] + _LEEWAY_SECONDS:
        raise Unauthorized("token has expired")
    if "nbf" in times and now + _LEEWAY_SECONDS < times["nbf"]:
        raise Unauthorized("token is not valid yet")
    if settings.jwt_issuer is not None:
        if "iss" not in claims:
            raise Unauthorized("token is missing the 'iss' claim")
        if claims["iss"] != settings.jwt_issuer:
            raise Unauthorized("token issuer is not accepted")
    audience = claims.get("aud")
    if settings.jwt_audience is not None:
        if audience is None:
            raise Unauthorized("token is missing the 'aud' claim")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or settings.jwt_audience not in audiences:
            raise Unauthorized("token audience is not accepted")
    elif audience is not None:
        # A token meant for a named audience is not for a service that expects none.
        raise Unauthorized("token audience is not accepted")


def _hmac_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.jwt_secret_arn:
        from datasources.aws.secrets import signing_key

        return signing_key(settings.jwt_secret_arn)
    raise Unauthorized("token algorithm is not accepted")


@cache
def _jwks_client(url: str) -> jwt.PyJWKClient:
    import jwt

    # Keys are cached by PyJWKClient; a cold start fetches the set once.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)
