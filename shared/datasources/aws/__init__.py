"""boto3 clients, created once per process with the emulated endpoint in local mode.

The modules beside this one wrap the calls of one service each (`s3`, `sqs`,
`secrets`, `scheduler`), as `dal/` does DynamoDB's.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from datasources.config import get_settings


@cache
def client(service: str) -> Any:
    """A boto3 client for `service` ("dynamodb", "s3", "sqs", "secretsmanager", "scheduler", "events")."""
    import boto3
    from botocore.config import Config

    settings = get_settings()
    return boto3.client(  # type: ignore[call-overload]  # the service name is a plain str
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        # Fail fast inside API Gateway's 29 s; the SDK's standard mode retries throttling.
        config=Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard"}),
    )


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" when it has none)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def reset() -> None:
    """Forget cached clients (tests start a fresh emulated AWS per test)."""
    client.cache_clear()
