"""Source credentials in Secrets Manager: one secret per source, never in DynamoDB or S3."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from datasources import aws
from datasources.config import get_settings
from datasources.errors import StorageError
from datasources.models.common import PathKey

SecretPaths = list[tuple[list[PathKey], str]]


def secret_name(organization: str, source_id: str) -> str:
    """Every secret lives under this stack's prefix, the only place its IAM policy allows."""
    return f"{get_settings().secret_prefix}/{organization}/{source_id}"


def put_secrets(organization: str, source_id: str, secrets: SecretPaths) -> str | None:
    """Store a source's secret fields; returns the ARN, or None when it has no secret."""
    if not secrets:
        return None
    payload = json.dumps({"paths": [[path, value] for path, value in secrets]})
    try:
        response = aws.client("secretsmanager").create_secret(
            Name=secret_name(organization, source_id),
            SecretString=payload,
            Tags=[{"Key": "datasources:source_id", "Value": source_id}],
        )
    except ClientError as exc:
        raise StorageError(
            f"could not store the credentials ({aws.error_code(exc) or 'error'})"
        ) from None
    return str(response["ARN"])


def get_secrets(arn: str | None) -> SecretPaths:
    """The secret fields of a source, by path, as `merge_secrets` wants them."""
    if not arn:
        return []
    try:
        raw = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except ClientError as exc:
        raise StorageError(
            f"could not read the source's credentials ({aws.error_code(exc) or 'error'})"
        ) from None
    data: dict[str, Any] = json.loads(raw)
    return [(list(path), str(value)) for path, value in data["paths"]]


def delete_secret(arn: str | None, *, immediately: bool = False) -> None:
    """Delete a source's secret, with the documented recovery window unless `immediately`
    (used to undo a connect that failed before the source existed)."""
    if not arn:
        return
    params: dict[str, Any] = {"SecretId": arn}
    if immediately:
        params["ForceDeleteWithoutRecovery"] = True
    else:
        params["RecoveryWindowInDays"] = get_settings().secret_recovery_days
    try:
        aws.client("secretsmanager").delete_secret(**params)
    except ClientError as exc:
        code = aws.error_code(exc)
        if code == "ResourceNotFoundException":
            return
        # A cleanup stopped between a secret and its source item runs again: a secret
        # already scheduled for deletion is done.
        if code == "InvalidRequestException" and _scheduled_for_deletion(arn):
            return
        raise StorageError(
            f"could not delete the source's credentials ({code or 'error'})"
        ) from None


def _scheduled_for_deletion(arn: str) -> bool:
    try:
        described = aws.client("secretsmanager").describe_secret(SecretId=arn)
    except ClientError:
        return False
    return described.get("DeletedDate") is not None
