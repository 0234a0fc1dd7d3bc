"""Secrets Manager: source credentials (one secret per source, never in DynamoDB or S3)
and the token signing key."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from datasources import aws
from datasources.config import get_settings
from datasources.errors import ServiceUnavailable, StorageError
from datasources.models.common import PathKey

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider

SecretPaths = list[tuple[list[PathKey], str]]

# A rotated signing key is read again within this time, without waiting for a cold start.
SIGNING_KEY_MAX_AGE_SECONDS = 300

_signing_keys: SecretsProvider | None = None


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


def signing_key(arn: str) -> str:
    """The token signing secret at `arn`, cached for SIGNING_KEY_MAX_AGE_SECONDS.

    ServiceUnavailable (503) when Secrets Manager cannot give it: no token can be
    checked then, and the caller may try again.
    """
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        value = _signing_key_provider().get(arn, max_age=SIGNING_KEY_MAX_AGE_SECONDS)
    except GetParameterError:
        raise ServiceUnavailable(
            "the token signing key cannot be read right now; try again shortly"
        ) from None
    return str(value)


def _signing_key_provider() -> SecretsProvider:
    """Powertools' cache over the service's own client (made again when it is)."""
    global _signing_keys
    client = aws.client("secretsmanager")
    if _signing_keys is None or _signing_keys.client is not client:
        # Imported here: only deployments that keep the key in Secrets Manager load it.
        from aws_lambda_powertools.utilities.parameters.secrets import SecretsProvider

        _signing_keys = SecretsProvider(boto3_client=client)
    return _signing_keys
