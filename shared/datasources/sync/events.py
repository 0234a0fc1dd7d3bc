"""What happens once when a job ends: its completion event and its schedule's count.

Every job that ends puts one event on the account's default EventBridge bus
(`Source` "datasources", `DetailType` "Sync Job Completed|Failed|Cancelled") so that
downstream jobs (a crawler, a view refresh, a pipeline) learn that data landed
without polling. The event is built from the job and unit records only: they hold no
secrets. The job's end is decided by one conditional write, so whoever wins it calls
`job_ended` once.
"""

from __future__ import annotations

import json
from typing import Any

from datasources import aws
from datasources.config import get_settings
from datasources.dal import jobs as jobs_dal
from datasources.dal import schedules as schedules_dal
from datasources.dal import sources as sources_dal
from datasources.dal.jobs import JobRecord, UnitRecord
from datasources.dal.keys import Tenant
from datasources.observability import log_failure, logger

EVENT_SOURCE = "datasources"
DETAIL_TYPES = {
    "completed": "Sync Job Completed",
    "failed": "Sync Job Failed",
    "cancelled": "Sync Job Cancelled",
}
# PutEvents takes at most 256 KiB per entry; a job over thousands of tables lists
# its first streams and says the list was cut (GET /sync/{job_id} has them all).
MAX_DETAIL_BYTES = 200_000


def job_ended(tenant: Tenant, job_id: str) -> None:
    """Publish the job's completion event and count it for its sources' schedules.

    Never raises: the job has ended whatever happens here, and a failure is logged
    (with a sanitized traceback) for the alarm on errors to catch.
    """
    try:
        job = jobs_dal.get_job(tenant, job_id)
        if job is None:
            return
        units = jobs_dal.get_units(tenant, job_id)
        publish_job_ended(tenant, job, units)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log_failure("could not publish the job's completion event", exc, type(exc).__name__)
        return
    try:
        count_run(tenant, job)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log_failure("could not count the run for its schedule", exc, type(exc).__name__)


def event_detail(tenant: Tenant, job: JobRecord, units: list[UnitRecord]) -> dict[str, Any]:
    """The event's Detail: the job, its outcome, and where each stream's data landed."""
    bucket = get_settings().bucket_name
    streams = [
        {
            "source_id": unit.source_id,
            "stream": unit.stream,
            "records": unit.records,
            "output_prefix": f"s3://{bucket}/{unit.output_prefix}/",
            "manifest_key": f"{unit.output_prefix}/_manifest.json"
            if unit.status == "completed"
            else None,
        }
        for unit in sorted(units, key=lambda u: u.unit_id)
    ]
    detail: dict[str, Any] = {
        "job_id": job.job_id,
        "organization": tenant.organization,
        "workspace_id": tenant.workspace_id,
        "scope": tenant.scope.value,
        "source_ids": job.source_ids,
        "status": job.status,
        "records_processed": job.records_processed,
        "trigger": job.trigger,
        "started_at": job.started_at,
        "ended_at": job.finished_at,
        "streams": streams,
        "error": job.error,
    }
    while len(json.dumps(detail, default=str)) > MAX_DETAIL_BYTES and detail["streams"]:
        detail["streams"] = detail["streams"][: len(detail["streams"]) // 2]
        detail["streams_truncated"] = True
    return detail


def publish_job_ended(tenant: Tenant, job: JobRecord, units: list[UnitRecord]) -> None:
    """Put the job's one completion event on the configured bus (default: the default bus)."""
    detail_type = DETAIL_TYPES.get(job.status)
    if detail_type is None:
        return  # not ended
    detail = event_detail(tenant, job, units)
    response = aws.client("events").put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, default=str),
                "EventBusName": get_settings().event_bus_name,
            }
        ]
    )
    if response.get("FailedEntryCount"):
        entry = (response.get("Entries") or [{}])[0]
        logger.error(
            "the completion event was refused",
            extra={"job_id": job.job_id, "error_code": entry.get("ErrorCode")},
        )
        return
    logger.info(
        "completion event published",
        extra={"job_id": job.job_id, "detail_type": detail_type, "status": job.status},
    )


def count_run(tenant: Tenant, job: JobRecord) -> None:
    """After a job ended: note its outcome on each source's schedule.

    A failed triggered run counts towards the pause; a completed one clears the count;
    a completed manual sync (POST /sync) also lifts a pause. A cancelled job counts
    for nothing (cleanup cancels).
    """
    if job.status == "cancelled":
        return
    for source_id in job.source_ids:
        source = sources_dal.get_source(tenant, source_id)
        if source is None or not source.schedule:
            continue
        last = source.schedule_last_run
        if last and last.get("job_id") == job.job_id:
            schedules_dal.record_last_run(
                tenant,
                source_id,
                {**last, "job_status": job.status, "ended_at": job.finished_at},
            )
        if job.trigger in ("schedule", "upload"):
            if job.status == "failed":
                count_failure(tenant, source_id, source.schedule, job.error)
            else:
                schedules_dal.reset_failures(tenant, source_id, resume=False)
        elif job.status == "completed" and (source.schedule_paused or source.schedule_failures):
            schedules_dal.reset_failures(tenant, source_id, resume=True)
            logger.info(
                "schedule resumed by a successful manual sync", extra={"source_id": source_id}
            )


def count_failure(
    tenant: Tenant, source_id: str, config: dict[str, Any], error: str | None
) -> None:
    """Count a failed run of a source's schedule; pause the schedule at its limit."""
    failures = schedules_dal.record_failure(tenant, source_id)
    limit = int(config.get("max_consecutive_failures") or 5)
    if failures is not None and failures >= limit:
        reason = (
            f"paused after {failures} consecutive failed runs; last error: {error or 'unknown'}"
        )
        if schedules_dal.pause(tenant, source_id, reason[:1000], limit):
            logger.warning(
                "schedule paused", extra={"source_id": source_id, "consecutive_failures": failures}
            )
