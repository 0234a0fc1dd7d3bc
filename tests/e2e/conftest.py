"""The local stack (`python -m local.stack`, what `make dev` runs) as a test fixture.

It runs in a subprocess on free loopback ports, exactly as a developer starts it, so
the end-to-end tests drive the same gateway, worker loop and emulated AWS over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import DEFAULT_STACK_NAME
from local.tokens import mint_token
from tests.support.stack_process import running_stack

E2E_JWT_SECRET = "e2e-local-stack-secret-0123456789abcdef"
# Small enough that a few thousand rows outlast POST /sync's inline budget and the
# rest goes through the queue to the worker, as a long sync does when deployed.
E2E_SYNC_BUDGET_SECONDS = 1


@dataclass
class LocalStack:
    """A running local stack: its URLs, a token factory and an S3 client at its endpoint."""

    base_url: str
    root_url: str
    aws_endpoint: str
    bucket: str
    s3: Any
    log_path: Path

    def token(
        self, role: str = "admin", sub: str = "user-1", org: str = "acme", ttl_seconds: int = 600
    ) -> str:
        return mint_token(sub, org, role, secret=E2E_JWT_SECRET, ttl_seconds=ttl_seconds)

    def headers(
        self, role: str = "admin", sub: str = "user-1", org: str = "acme"
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role=role, sub=sub, org=org)}"}

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    with running_stack(
        "local.stack",
        jwt_secret=E2E_JWT_SECRET,
        sync_budget_seconds=E2E_SYNC_BUDGET_SECONDS,
        log_prefix="local-stack-",
    ) as stack:
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=stack.aws_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield LocalStack(
            base_url=f"{stack.root_url}/api/v1/data",
            root_url=stack.root_url,
            aws_endpoint=stack.aws_endpoint,
            bucket=f"{DEFAULT_STACK_NAME}-landingbucket",
            s3=s3,
            log_path=stack.log_path,
        )
