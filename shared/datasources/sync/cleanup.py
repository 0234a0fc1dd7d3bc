"""Cleanup of many sources within a time budget, continued through the sync queue.

Sources are removed in chunks. In each chunk the live jobs are cancelled, then the
secrets are scheduled for deletion, and only then are the items deleted: whenever the
work stops (the budget runs out, or the function is killed), every source whose item is
gone has had its secret scheduled; a source whose secret was scheduled but whose item
is still there is deleted by the next cleanup (scheduling twice is harmless). The ids
left when the budget runs out go to the sync queue as `cleanup` messages, and the
worker goes on with them the same way.

Imported by the cleanup function (a light function) and the worker: no connector or
engine code here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from datasources.aws import sqs
from datasources.aws.secrets import delete_secret
from datasources.config import get_settings
from datasources.dal import sources as sources_dal
from datasources.dal.keys import Tenant
from datasources.dal.sources import SourceRecord
from datasources.errors import StorageError
from datasources.observability import logger

CLEANUP_KIND = "cleanup"
# Sources per chunk: one BatchWriteItem of their items and name guards, and 25 secret
# deletions, about a second against AWS; the budget is checked between chunks.
CHUNK = 25
# Ids per queue message: about 27 KB, well under SQS's 256 KiB.
IDS_PER_MESSAGE = 1000
# Kept free at the end of an API request for the queue messages and the response.
REQUEST_RESERVE_SECONDS = 4.0


@dataclass
class CleanupProgress:
    deleted: list[str] = field(default_factory=list)
    cancelled_jobs: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def request_deadline(remaining_ms: int) -> float:
    """The monotonic time an API request stops deleting: the sync time budget, within the
    function's remaining time less a reserve."""
    budget = min(
        get_settings().sync_time_budget_seconds,
        remaining_ms / 1000 - REQUEST_RESERVE_SECONDS,
    )
    return time.monotonic() + max(0.0, budget)


def remove_sources(
    tenant: Tenant, targets: list[SourceRecord], deadline: float, now: Callable[[], str]
) -> CleanupProgress:
    """Remove `targets` chunk by chunk until `deadline`; the rest are queued as pending.

    At least one chunk is removed per call, so a continuation always makes progress.
    """
    from datasources.dal.jobs import cancel_source_jobs
    from datasources.sync.events import job_ended

    progress = CleanupProgress()
    states = sources_dal.state_keys_by_source(tenant) if len(targets) > CHUNK else None
    last_chunk_seconds = 0.0
    for start in range(0, len(targets), CHUNK):
        # Stop before a chunk that would likely end past the deadline (as long as the last).
        if start and time.monotonic() + last_chunk_seconds >= deadline:
            progress.pending = [s.id for s in targets[start:]]
            break
        began = time.monotonic()
        chunk = targets[start : start + CHUNK]
        cancelled = cancel_source_jobs(tenant, [s.id for s in chunk], now())
        for job_id in cancelled:
            job_ended(tenant, job_id)  # exactly the calls that cancelled it get here
        progress.cancelled_jobs += cancelled
        _remove_schedules(chunk)
        for source in chunk:
            delete_secret(source.secret_arn)
        sources_dal.delete_sources(tenant, chunk, states)
        progress.deleted += [s.id for s in chunk]
        last_chunk_seconds = time.monotonic() - began
    if progress.pending:
        enqueue(tenant, progress.pending)
    return progress


def _remove_schedules(sources: list[SourceRecord]) -> None:
    """Delete the Scheduler schedules of sources being cleaned up (their items go with them)."""
    from datasources.aws import scheduler
    from datasources.models.schedule_expression import is_timed

    for source in sources:
        if is_timed(source.schedule):
            scheduler.delete_schedule(source.id)


def enqueue(tenant: Tenant, source_ids: list[str]) -> None:
    """Queue the cleanup of `source_ids` for the worker."""
    bodies = [
        json.dumps(
            {
                "kind": CLEANUP_KIND,
                "pk": tenant.pk,
                "source_ids": source_ids[start : start + IDS_PER_MESSAGE],
            }
        )
        for start in range(0, len(source_ids), IDS_PER_MESSAGE)
    ]
    try:
        sqs.send_batch(get_settings().queue_url, bodies)
    except (ClientError, StorageError) as exc:
        raise StorageError(
            "could not queue the rest of the cleanup; run it again for the sources still listed"
        ) from exc


def is_cleanup_message(body: str) -> bool:
    """Whether an SQS body is a cleanup continuation (not a sync unit)."""
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("kind") == CLEANUP_KIND


def continue_cleanup(body: str, remaining_ms: Callable[[], int], now: Callable[[], str]) -> None:
    """Worker side: remove the sources of one cleanup message that still exist."""
    message: dict[str, Any] = json.loads(body)
    tenant = Tenant.from_pk(str(message["pk"]))
    ids = [str(i) for i in message["source_ids"]]
    found = sources_dal.get_sources(tenant, ids)
    targets = [found[i] for i in ids if i in found]
    reserve = get_settings().worker_reserve_seconds
    deadline = time.monotonic() + max(0.0, remaining_ms() / 1000 - reserve)
    logger.append_keys(cleanup_sources=len(targets))
    progress = remove_sources(tenant, targets, deadline, now)
    logger.info(
        "cleanup continued",
        extra={"deleted": len(progress.deleted), "pending": len(progress.pending)},
    )
