"""Event-triggered syncs: a source's schedule fired, or a file landed under uploads/.

Both arrive on the trigger queue: EventBridge Scheduler sends each schedule's input
there, and the rule on the landing bucket's *Object Created* events sends the S3 event
there. The trigger function receives them in batches (the event source's batching
window), which is how a burst of uploads becomes one sync: every event of one batch
that concerns a source starts (at most) one job for it.

A trigger
- is idempotent: a conditional put on (schedule, scheduled time) or (source, S3 event
  id) lets one delivery through (`dal.schedules.claim_trigger`);
- skips a source that is already syncing: a schedule records it in `last_run`; an
  upload is retried later (its files would otherwise wait for the next upload);
- counts failed runs, and pauses the schedule after `max_consecutive_failures`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from datasources.config import get_settings
from datasources.dal import schedules as schedules_dal
from datasources.dal import sources as sources_dal
from datasources.dal.keys import Tenant
from datasources.dal.schedules import UploadSource
from datasources.dal.sources import SourceRecord
from datasources.errors import DataSourcesError, StorageError, SyncAlreadyRunning
from datasources.ids import now_iso
from datasources.models.requests import SyncOptions
from datasources.models.schedule_expression import ON_UPLOAD
from datasources.observability import log_failure, logger
from datasources.sync.events import count_failure


@dataclass
class TriggerMessage:
    """One message of the trigger queue."""

    message_id: str
    body: dict[str, Any]


@dataclass
class _UploadGroup:
    tenant: Tenant
    source_id: str
    events: list[tuple[str, str]] = field(default_factory=list)  # (S3 event id, message id)


def handle_messages(messages: list[TriggerMessage]) -> set[str]:
    """Start the syncs these triggers ask for; return the ids of messages to retry."""
    retry: set[str] = set()
    uploads: list[TriggerMessage] = []
    for message in messages:
        body = message.body
        if body.get("trigger") == "schedule":
            try:
                _scheduled(
                    Tenant.from_pk(str(body["pk"])),
                    str(body["source_id"]),
                    str(body.get("scheduled_time") or ""),
                )
            except (KeyError, ValueError):
                logger.warning("malformed schedule trigger dropped")
            except Exception as exc:  # noqa: BLE001 - retried by the queue
                log_failure("schedule trigger failed", exc, type(exc).__name__)
                retry.add(message.message_id)
        elif body.get("source") == "aws.s3" and body.get("detail-type") == "Object Created":
            uploads.append(message)
        else:
            logger.warning("unknown trigger message dropped")
    if uploads:
        retry |= _uploaded(uploads)
    logger.remove_keys(["job_id", "source_id", "stream"])
    return retry


# ------------------------------------------------------------------ schedules


def _scheduled(tenant: Tenant, source_id: str, scheduled_time: str) -> None:
    logger.remove_keys(["job_id", "stream"])
    logger.append_keys(source_id=source_id)
    source = sources_dal.get_source(tenant, source_id)
    if source is None or not source.schedule or source.schedule["schedule"] == ON_UPLOAD:
        # Removed since the schedule fired (its Scheduler schedule is gone too).
        logger.info("schedule trigger for a source without a schedule ignored")
        return
    settings = get_settings()
    key = f"schedule#{source_id}#{scheduled_time}"
    if not schedules_dal.claim_trigger(tenant, key, ttl_days=settings.trigger_dedup_days):
        logger.info("duplicate schedule trigger ignored", extra={"scheduled_time": scheduled_time})
        return
    run = {"trigger": "schedule", "scheduled_time": scheduled_time}
    if not _runnable(tenant, source, run):
        return
    try:
        _start(tenant, source, "schedule", run)
    except Exception:
        schedules_dal.release_trigger(tenant, key)
        raise


def _runnable(tenant: Tenant, source: SourceRecord, run: dict[str, Any]) -> bool:
    assert source.schedule is not None
    reason = None
    if source.schedule_paused:
        reason = f"paused: {source.schedule_paused}"
    elif not source.schedule.get("enabled", True):
        reason = "disabled"
    if reason is None:
        return True
    logger.info("trigger skipped", extra={"reason": reason})
    schedules_dal.record_last_run(
        tenant, source.id, {**run, "status": "skipped", "reason": reason, "at": now_iso()}
    )
    return False


def _start(tenant: Tenant, source: SourceRecord, trigger: str, run: dict[str, Any]) -> bool:
    """Start one job for `source`; False when it is already syncing (recorded as skipped)."""
    from datasources.sync.engine import run_job

    assert source.schedule is not None
    options = SyncOptions.model_validate(source.schedule["sync_options"])
    try:
        # No inline budget: every unit goes to the worker, this invocation only plans.
        job = run_job(tenant, [source], options, lambda: 0, created_by=trigger, trigger=trigger)
    except SyncAlreadyRunning as exc:
        running = (exc.details or {}).get("running_job_id")
        logger.info(
            "trigger skipped: the source is already syncing", extra={"running_job_id": running}
        )
        schedules_dal.record_last_run(
            tenant,
            source.id,
            {
                **run,
                "status": "skipped",
                "reason": "already syncing",
                "running_job_id": running,
                "at": now_iso(),
            },
        )
        return False
    except DataSourcesError as exc:
        if isinstance(exc, StorageError):
            raise
        # The source could not be planned (unreachable, bad options): a failed run.
        log_failure("triggered sync could not start", exc, exc.message)
        schedules_dal.record_last_run(
            tenant,
            source.id,
            {**run, "status": "failed", "error": exc.message, "at": now_iso()},
        )
        count_failure(tenant, source.id, source.schedule, exc.message)
        return True
    logger.append_keys(job_id=job.job_id)
    logger.info("triggered sync started", extra={"trigger": trigger, "status": job.status})
    schedules_dal.record_last_run(
        tenant,
        source.id,
        {**run, "status": "started", "job_id": job.job_id, "at": now_iso()},
    )
    return True


# ------------------------------------------------------------------ uploads


def _uploaded(messages: list[TriggerMessage]) -> set[str]:
    settings = get_settings()
    groups: dict[tuple[str, str], _UploadGroup] = {}
    by_org: dict[str, list[UploadSource]] = {}
    for message in messages:
        detail = message.body.get("detail") or {}
        bucket = str((detail.get("bucket") or {}).get("name") or "")
        key = str((detail.get("object") or {}).get("key") or "")
        parts = key.split("/")
        if (
            bucket != settings.bucket_name
            or len(parts) < 3
            or parts[0] != "uploads"
            or not parts[1]
        ):
            continue
        org = parts[1]
        if org not in by_org:
            by_org[org] = schedules_dal.upload_sources(org)
        for source in by_org[org]:
            if upload_matches(source, key):
                group = groups.setdefault(
                    (source.tenant.pk, source.source_id),
                    _UploadGroup(source.tenant, source.source_id),
                )
                group.events.append(
                    (str(message.body.get("id") or message.message_id), message.message_id)
                )
    retry: set[str] = set()
    for group in groups.values():
        try:
            if not _upload_group(group):
                retry.update(message_id for _, message_id in group.events)
        except Exception as exc:  # noqa: BLE001 - retried by the queue
            log_failure("upload trigger failed", exc, type(exc).__name__)
            retry.update(message_id for _, message_id in group.events)
    return retry


def _upload_group(group: _UploadGroup) -> bool:
    """One job for every new upload of a source in this batch; False to retry them."""
    settings = get_settings()
    tenant = group.tenant
    logger.remove_keys(["job_id", "stream"])
    logger.append_keys(source_id=group.source_id)
    claimed = [
        f"upload#{group.source_id}#{event_id}"
        for event_id in dict.fromkeys(e for e, _ in group.events)
        if schedules_dal.claim_trigger(
            tenant, f"upload#{group.source_id}#{event_id}", ttl_days=settings.trigger_dedup_days
        )
    ]
    if not claimed:
        logger.info("duplicate upload triggers ignored", extra={"events": len(group.events)})
        return True
    source = sources_dal.get_source(tenant, group.source_id)
    if source is None or not source.schedule or source.schedule["schedule"] != ON_UPLOAD:
        return True
    run = {"trigger": "upload", "files": len(claimed)}
    if not _runnable(tenant, source, run):
        return True
    try:
        started = _start(tenant, source, "upload", run)
    except Exception as exc:  # noqa: BLE001 - the claims are released and the events retried
        log_failure("upload trigger failed", exc, type(exc).__name__)
        started = False
    if not started:
        # Already syncing (or a storage failure): the job that runs may have listed its
        # files before these landed, so these events come back after a backoff and
        # start the next sync, which reads whatever is new.
        for key in claimed:
            schedules_dal.release_trigger(tenant, key)
        return False
    return True


def upload_matches(source: UploadSource, key: str) -> bool:
    """Whether the file source would read object `key` (its url and `pattern`)."""
    source_key = unquote(urlsplit(source.url).path.lstrip("/"))
    if not (source_key == "" or source_key.endswith("/") or source.pattern):
        return key == source_key
    prefix = source_key if source_key.endswith("/") or not source_key else source_key + "/"
    if not key.startswith(prefix):
        return False
    relative = key[len(prefix) :]
    if not relative or relative.endswith("/"):
        return False
    if source.pattern:
        from datasources.connectors.registry import file_pattern

        return bool(file_pattern(source.pattern).match(relative))
    # Job markers next to the data (_SUCCESS, .crc) are not read by the connector.
    return not relative.rsplit("/", 1)[-1].startswith(("_", "."))
