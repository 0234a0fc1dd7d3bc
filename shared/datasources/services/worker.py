"""The SQS side of the engine: one record → continue one unit, with retry backoff."""

from __future__ import annotations

from typing import Any

from datasources.aws import sqs
from datasources.config import get_settings
from datasources.ids import now_iso
from datasources.observability import logger
from datasources.sync.cleanup import continue_cleanup, is_cleanup_message
from datasources.sync.engine import handle_message, retry_delay


def continue_unit(record: Any, context: Any) -> None:
    """Process one SQS record (a Powertools SQSRecord). Raising marks it a batch failure."""
    receive_count = int(record.attributes.approximate_receive_count or 1)

    def remaining_ms() -> int:
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            return int(context.get_remaining_time_in_millis())
        return 60_000

    try:
        if is_cleanup_message(record.body):
            continue_cleanup(record.body, remaining_ms, now_iso)
        else:
            handle_message(record.body, receive_count, remaining_ms)
    except Exception:
        logger.warning("sync unit attempt failed", extra={"receive_count": receive_count})
        _backoff(record, receive_count)
        raise


def _backoff(record: Any, receive_count: int) -> None:
    # The queue's visibility timeout is 6x the worker's timeout (for crashed workers);
    # a handled failure is retried sooner, with exponential backoff. The worker's role
    # grants sqs:ChangeMessageVisibility itself: the SQS event source's policy does not.
    try:
        sqs.retry_after(get_settings().queue_url, record.receipt_handle, retry_delay(receive_count))
    except Exception:  # noqa: BLE001 - the retry still happens at the queue's own timeout
        logger.warning("could not shorten the retry delay")
