"""JWT authentication and the role/scope rules of DESIGN §3."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt

from datasources.config import Settings, get_settings
from datasources.errors import Forbidden, Unauthorized
from datasources.models.common import Role, Scope

# Claims end up inside DynamoDB keys and S3 paths, where '#', '/' and '=' are delimiters.
_CLAIM_PATTERN = re.compile(r"^[A-Za-z0-9_.@:|+-]{1,128}$")
_HMAC_ALGORITHMS = {"HS256", "HS384", "HS512"}
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
        if not isinstance(value, str) or not _CLAIM_PATTERN.match(value):
            raise Unauthorized(f"token claim '{name}' is missing or malformed")
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
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("token is malformed") from None
    algorithm = header.get("alg")
    # The accepted list is explicit: `none` and anything not configured never pass, and
    # an HMAC algorithm is only accepted with the HMAC secret (no RS/HS key confusion).
    if not isinstance(algorithm, str) or algorithm not in settings.jwt_algorithms:
        raise Unauthorized("token algorithm is not accepted")
    key: Any
    if algorithm in _HMAC_ALGORITHMS:
        key = _hmac_secret(settings)
    elif algorithm in _ASYMMETRIC_ALGORITHMS:
        if not settings.jwks_url:
            raise Unauthorized("token algorithm is not accepted")
        try:
            key = _jwks_client(settings.jwks_url).get_signing_key_from_jwt(token).key
        except jwt.PyJWTError:
            raise Unauthorized("token signing key is unknown") from None
    else:
        raise Unauthorized("token algorithm is not accepted")
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("token is not valid yet") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("token audience is not accepted") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("token issuer is not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token is missing the '{exc.claim}' claim") from None
    except jwt.PyJWTError:
        raise Unauthorized("token signature is invalid") from None


def _hmac_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.jwt_secret_arn:
        return _secret_from_arn(settings.jwt_secret_arn)
    raise Unauthorized("token algorithm is not accepted")


@cache
def _secret_from_arn(arn: str) -> str:
    from datasources import aws

    value = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    return str(value)


@cache
def _jwks_client(url: str) -> jwt.PyJWKClient:
    # Keys are cached by PyJWKClient; a cold start fetches the set once.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=5)
