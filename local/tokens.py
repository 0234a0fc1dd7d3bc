"""Mint HS256 tokens for the local stack, the tests and the bench.

    python -m local.tokens --sub user-1 --org acme --role admin

signs with `JWT_SECRET` (or the documented local default), so the token verifies
against a stack started with the same secret. The tests and the bench pass the secret
they gave their functions.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jwt

# Documented default for local mode only; a deployed stack generates its key.
DEV_JWT_SECRET = "local-dev-jwt-secret-change-me-0123456789"  # noqa: S105 - public by design, local only
ROLES = ("admin", "member", "viewer")


def local_jwt_secret() -> str:
    """The secret the local stack signs with: `JWT_SECRET`, else the documented default."""
    return os.environ.get("JWT_SECRET") or DEV_JWT_SECRET


def mint_token(
    sub: str,
    organization: str,
    role: str = "admin",
    secret: str | None = None,
    ttl_seconds: int = 3600,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """Sign a token with the claims the API reads (`sub`, `organization`, `role`, `exp`).

    A negative `ttl_seconds` makes an already expired token, for tests of the 401 path.
    """
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "organization": organization,
        "role": role,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    claims.update(extra_claims or {})
    return jwt.encode(claims, secret or local_jwt_secret(), algorithm="HS256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print an HS256 token for the local stack.")
    parser.add_argument("--sub", default="user-1", help="user id (default: user-1)")
    parser.add_argument("--org", default="acme", help="organization id (default: acme)")
    parser.add_argument("--role", default="admin", choices=ROLES)
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    args = parser.parse_args(argv)
    print(mint_token(args.sub, args.org, args.role, ttl_seconds=args.ttl))


if __name__ == "__main__":
    main()
