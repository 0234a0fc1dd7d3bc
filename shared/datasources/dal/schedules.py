"""Schedules (kept on their source's item), the upload index, and trigger claims.

A schedule's config and run state live on the source item: deleting a source deletes
its schedule, and list/connect read it with the source. An `on_upload` source also
has an index item under its organization (`ORG#{org}#UPLOADS`), because an S3 event
names only a key: the trigger finds the organization's upload sources with one Query.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from datasources import aws
from datasources.dal.keys import Tenant, source_sk, trigger_sk, uploads_pk
from datasources.dal.table import table
from datasources.errors import SourceNotFound, StorageError


@dataclass
class ScheduleChange:
    """One source's new schedule (`config` None removes it) and its upload index entry."""

    source_id: str
    config: dict[str, Any] | None
    upload_index: dict[str, Any] | None
    had_upload_index: bool


@dataclass
class UploadSource:
    tenant: Tenant
    source_id: str
    url: str
    pattern: str | None


def set_schedules(tenant: Tenant, changes: list[ScheduleChange]) -> None:
    """Write every change in one transaction: all sources get their schedule, or none.

    Each source must still exist (a cleanup racing this request wins). Setting a
    schedule clears its failure count and pause: that is how a paused one resumes.
    """
    actions: list[dict[str, Any]] = []
    for change in changes:
        key = {"pk": tenant.pk, "sk": source_sk(change.source_id)}
        if change.config is not None:
            update: dict[str, Any] = {
                "Key": key,
                "UpdateExpression": "SET schedule = :c, schedule_failures = :zero "
                "REMOVE schedule_paused",
                "ExpressionAttributeValues": {":c": json.dumps(change.config), ":zero": 0},
            }
        else:
            update = {
                "Key": key,
                "UpdateExpression": "REMOVE schedule, schedule_failures, schedule_paused, "
                "schedule_last_run",
            }
        update["ConditionExpression"] = "attribute_exists(pk)"
        actions.append({"Update": update})
        index_key = {"pk": uploads_pk(tenant.organization), "sk": source_sk(change.source_id)}
        if change.upload_index is not None:
            actions.append(
                {
                    "Put": {
                        "Item": {
                            **index_key,
                            "kind": "upload_source",
                            "tenant_pk": tenant.pk,
                            **change.upload_index,
                        }
                    }
                }
            )
        elif change.had_upload_index:
            actions.append({"Delete": {"Key": index_key}})
    try:
        table().transact_write_items(actions)
    except ClientError as exc:
        if aws.error_code(exc) == "TransactionCanceledException":
            raise SourceNotFound("a data source of the request no longer exists") from None
        raise StorageError("could not save the schedules") from exc


def upload_sources(organization: str) -> list[UploadSource]:
    """The organization's `on_upload` sources, from its upload index (one Query)."""
    items = table().query_prefix(uploads_pk(organization), "SOURCE#", consistent=True)
    return [
        UploadSource(
            tenant=Tenant.from_pk(str(item["tenant_pk"])),
            source_id=str(item["source_id"]),
            url=str(item["url"]),
            pattern=str(item["pattern"]) if item.get("pattern") else None,
        )
        for item in items
        # An index item always names a tenant of its own organization; anything else
        # is ignored rather than trusted.
        if str(item.get("tenant_pk", "")).startswith(f"ORG#{organization}#WS#")
    ]


def claim_trigger(tenant: Tenant, key: str, *, ttl_days: int) -> bool:
    """Record that trigger `key` is being handled; False if it already was.

    Scheduler and EventBridge deliver at least once: a conditional put on the
    trigger's own key (schedule + scheduled time, or source + S3 event id) lets one
    delivery through and turns the others into no-ops.
    """
    try:
        table().put_item(
            Item={
                "pk": tenant.pk,
                "sk": trigger_sk(key),
                "kind": "trigger",
                "expires_at": int(time.time()) + ttl_days * 86400,
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise StorageError("could not record the trigger") from exc
    return True


def release_trigger(tenant: Tenant, key: str) -> None:
    """Forget a claim whose work was not done, so its redelivery is handled."""
    table().delete_item(Key={"pk": tenant.pk, "sk": trigger_sk(key)})


def record_last_run(tenant: Tenant, source_id: str, last_run: dict[str, Any]) -> None:
    """Set the schedule's `last_run` (only while the source still has a schedule)."""
    try:
        table().update_item(
            Key={"pk": tenant.pk, "sk": source_sk(source_id)},
            UpdateExpression="SET schedule_last_run = :r",
            ConditionExpression="attribute_exists(schedule)",
            ExpressionAttributeValues={":r": json.dumps(last_run, default=str)},
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise StorageError("could not record the schedule's last run") from exc


def record_failure(tenant: Tenant, source_id: str) -> int | None:
    """Count one failed triggered run; the new count (None: the source has no schedule)."""
    try:
        attributes = table().update_item(
            Key={"pk": tenant.pk, "sk": source_sk(source_id)},
            UpdateExpression="ADD schedule_failures :one",
            ConditionExpression="attribute_exists(schedule)",
            ExpressionAttributeValues={":one": 1},
            ReturnValues="UPDATED_NEW",
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return None
        raise StorageError("could not count the failed run") from exc
    return int(attributes.get("schedule_failures", 0))


def pause(tenant: Tenant, source_id: str, reason: str, at_least: int) -> bool:
    """Pause the schedule if its failure count is still `at_least` (a success in
    between resets it); False when it was not paused."""
    try:
        table().update_item(
            Key={"pk": tenant.pk, "sk": source_sk(source_id)},
            UpdateExpression="SET schedule_paused = :why",
            ConditionExpression="attribute_exists(schedule) AND schedule_failures >= :n",
            ExpressionAttributeValues={":why": reason, ":n": at_least},
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise StorageError("could not pause the schedule") from exc
    return True


def reset_failures(tenant: Tenant, source_id: str, *, resume: bool) -> None:
    """A successful run clears the failure count; `resume` also lifts a pause."""
    expression = "SET schedule_failures = :zero" + (" REMOVE schedule_paused" if resume else "")
    try:
        table().update_item(
            Key={"pk": tenant.pk, "sk": source_sk(source_id)},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(schedule)",
            ExpressionAttributeValues={":zero": 0},
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise StorageError("could not reset the schedule's failures") from exc
