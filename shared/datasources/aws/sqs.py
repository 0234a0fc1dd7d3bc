"""The service's queues: send continuations, send them in batches, delay a retry."""

from __future__ import annotations

from typing import Any

from datasources import aws
from datasources.backoff import send_until_done
from datasources.errors import StorageError

# SendMessageBatch takes at most 10 entries, of at most 256 KiB together, per call.
_SEND_BATCH = 10
_BATCH_BYTES = 262_144


def send(queue_url: str, body: str, *, delay_seconds: int | None = None) -> None:
    """Send one message; `delay_seconds` (0 included) overrides the queue's own delay."""
    params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if delay_seconds is not None:
        params["DelaySeconds"] = delay_seconds
    aws.client("sqs").send_message(**params)


def send_batch(queue_url: str, bodies: list[str]) -> None:
    """Send `bodies`, 10 per call; entries SQS failed on its side are sent again with
    backoff. A StorageError when some could not be sent (a sender fault is not retried:
    it would fail again)."""
    sqs = aws.client("sqs")
    refused: list[str] = []

    def send_entries(entries: list[dict[str, str]]) -> list[dict[str, str]]:
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        by_id = {entry["Id"]: entry for entry in entries}
        again = []
        for failed in response.get("Failed", []):
            if failed.get("SenderFault"):
                refused.append(str(failed.get("Code", "")))
            else:
                again.append(by_id[failed["Id"]])
        return again

    for batch in _batches(bodies):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
        left = send_until_done(send_entries, entries)
        if left or refused:
            raise StorageError(f"could not queue {len(left or []) + len(refused)} message(s)")


def _batches(bodies: list[str]) -> list[list[str]]:
    batches: list[list[str]] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if not batches or len(batches[-1]) == _SEND_BATCH or size + length > _BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(body)
        size += length
    return batches


def retry_after(queue_url: str, receipt_handle: str, seconds: int) -> None:
    """Bring a received message back after `seconds` (its visibility timeout)."""
    aws.client("sqs").change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
    )
