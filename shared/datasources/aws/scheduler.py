"""One EventBridge Scheduler schedule per source, in the stack's schedule group.

Each schedule sends its input to the trigger queue as the scheduler role (the only
role this service passes); the trigger function starts the sync. The input names the
tenant and the source, and carries Scheduler's own scheduled time, which is the
trigger's idempotency key.
"""

from __future__ import annotations

import json
from typing import Any

from datasources import aws
from datasources.config import get_settings
from datasources.errors import StorageError

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


def schedule_name(source_id: str) -> str:
    # Source ids are unique across tenants and fit Scheduler's name rules ([\w.-]{1,64}).
    return source_id


def target_input(pk: str, source_id: str) -> dict[str, Any]:
    """What the schedule sends to the trigger queue (Scheduler fills in the time);
    `pk` is the tenant key of the source."""
    return {
        "trigger": "schedule",
        "pk": pk,
        "source_id": source_id,
        "scheduled_time": SCHEDULED_TIME,
    }


def put_schedule(pk: str, source_id: str, config: dict[str, Any]) -> None:
    """Create or update the source's schedule with the config's expression and zone."""
    settings = get_settings()
    client = aws.client("scheduler")
    params: dict[str, Any] = {
        "Name": schedule_name(source_id),
        "GroupName": settings.schedule_group,
        "ScheduleExpression": config["schedule"],
        "ScheduleExpressionTimezone": config["timezone"],
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if config["enabled"] else "DISABLED",
        "Description": f"datasources sync of {source_id}",
        "Target": {
            "Arn": settings.trigger_queue_arn,
            "RoleArn": settings.scheduler_role_arn,
            "Input": json.dumps(target_input(pk, source_id)),
            # A failed delivery is retried by Scheduler for a while; the trigger is
            # idempotent on the scheduled time, so a retry never starts a second job.
            "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10},
        },
    }
    try:
        try:
            client.update_schedule(**params)
        except client.exceptions.ResourceNotFoundException:
            client.create_schedule(**params)
    except client.exceptions.ResourceNotFoundException as exc:
        raise StorageError("the schedule group does not exist") from exc
    except Exception as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"could not save the schedule of {source_id}") from exc


def delete_schedule(source_id: str) -> None:
    """Delete the source's schedule; one that is already gone is fine."""
    client = aws.client("scheduler")
    try:
        client.delete_schedule(
            Name=schedule_name(source_id), GroupName=get_settings().schedule_group
        )
    except client.exceptions.ResourceNotFoundException:
        return
    except Exception as exc:
        raise StorageError(f"could not delete the schedule of {source_id}") from exc


def get_schedule(source_id: str) -> dict[str, Any] | None:
    client = aws.client("scheduler")
    try:
        return dict(
            client.get_schedule(
                Name=schedule_name(source_id), GroupName=get_settings().schedule_group
            )
        )
    except client.exceptions.ResourceNotFoundException:
        return None
