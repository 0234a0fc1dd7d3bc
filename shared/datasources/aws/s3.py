"""The landing bucket's objects: store, list, delete; and S3 clients for connectors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from datasources import aws
from datasources.backoff import send_until_done
from datasources.config import get_settings
from datasources.errors import StorageError

# DeleteObjects takes at most 1000 keys per call.
_DELETE_BATCH = 1000


def client_factory(**kwargs: Any) -> Any:
    """S3 clients for connectors: the service's own, or one with a source's foreign keys."""
    if not kwargs:
        return aws.client("s3")
    import boto3

    settings = get_settings()
    kwargs.setdefault("region_name", settings.aws_region)
    return boto3.client("s3", endpoint_url=settings.aws_endpoint_url, **kwargs)


def put(bucket: str, key: str, body: bytes, *, content_type: str | None = None) -> None:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
    if content_type:
        params["ContentType"] = content_type
    aws.client("s3").put_object(**params)


def delete(bucket: str, key: str) -> None:
    aws.client("s3").delete_object(Bucket=bucket, Key=key)


def list_objects(bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    """(key, size) of every object under `prefix`, page by page."""
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"], int(obj["Size"])


def delete_keys(bucket: str, keys: list[str]) -> None:
    """Delete `keys`, 1000 per call; the keys S3 reports as not deleted are retried with
    backoff, and a StorageError names how many are left after the last attempt."""
    s3 = aws.client("s3")

    def send(batch: list[str]) -> list[str]:
        response = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        return [str(error["Key"]) for error in response.get("Errors", [])]

    for start in range(0, len(keys), _DELETE_BATCH):
        left = send_until_done(send, keys[start : start + _DELETE_BATCH])
        if left:
            raise StorageError(f"could not delete {len(left)} object(s) from the bucket")
