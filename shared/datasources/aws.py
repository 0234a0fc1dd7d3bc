"""boto3 clients, created once per process with the emulated endpoint in local mode."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from datasources.config import get_settings

if TYPE_CHECKING:
    from datasources.dal.table import Table


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


@cache
def table() -> Table:
    """The service's DynamoDB table, with plain Python values in and out."""
    from datasources.dal.table import Table

    return Table(client("dynamodb"), get_settings().table_name)


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" when it has none)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def s3_client_factory(**kwargs: Any) -> Any:
    """S3 clients for connectors: the service's own, or one with a source's foreign keys."""
    if not kwargs:
        return client("s3")
    import boto3

    settings = get_settings()
    kwargs.setdefault("region_name", settings.aws_region)
    return boto3.client("s3", endpoint_url=settings.aws_endpoint_url, **kwargs)


def reset() -> None:
    """Forget cached clients (tests start a fresh emulated AWS per test)."""
    client.cache_clear()
    table.cache_clear()
