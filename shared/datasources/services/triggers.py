"""The trigger queue's batches: schedules that fired and files that landed."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from datasources.aws import sqs
from datasources.config import get_settings
from datasources.observability import logger
from datasources.sync.triggers import TriggerMessage, handle_messages


def handle_batch(records: list[Any]) -> set[str]:
    """Start the syncs a batch of SQS records (Powertools SQSRecords) asks for; return
    the message ids to retry, which come back after a growing delay."""
    messages = []
    for record in records:
        try:
            body = json.loads(record.body)
        except json.JSONDecodeError:
            body = {}
        messages.append(TriggerMessage(record.message_id, body if isinstance(body, dict) else {}))
    logger.info("trigger batch", extra={"messages": len(messages), "kinds": group_size(messages)})
    retry = handle_messages(messages)
    retry_later([r for r in records if r.message_id in retry])
    return retry


def group_size(messages: list[TriggerMessage]) -> dict[str, int]:
    """How many messages of each kind a batch holds (for the batch's log line)."""
    kinds: dict[str, int] = defaultdict(int)
    for message in messages:
        kinds[str(message.body.get("trigger") or message.body.get("source") or "unknown")] += 1
    return dict(kinds)


def retry_later(records: list[Any]) -> None:
    """Bring the retried messages back after a growing delay, not the queue's timeout.

    An upload whose source is syncing waits for that sync to end: 30 s, 60 s, ... up
    to 15 minutes between attempts (the queue's maxReceiveCount bounds the total).
    """
    settings = get_settings()
    for record in records:
        count = int(record.attributes.approximate_receive_count or 1)
        try:
            sqs.retry_after(
                settings.trigger_queue_url,
                record.receipt_handle,
                min(900, 30 * 2 ** min(count - 1, 5)),
            )
        except Exception:  # noqa: BLE001 - the retry still comes at the queue's own timeout
            logger.warning("could not shorten the trigger's retry delay")
