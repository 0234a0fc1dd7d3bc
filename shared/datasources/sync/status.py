"""Sync job progress, as GET /sync/{job_id} (and the POST /sync answer) show it.

Kept apart from the engine so the status function imports no connector or pyarrow.
"""

from __future__ import annotations

from datasources.config import get_settings
from datasources.dal import jobs as jobs_dal
from datasources.dal.keys import Tenant
from datasources.errors import JobNotFound
from datasources.models.responses import SourceProgress, StreamProgress, SyncJobView


def job_status(tenant: Tenant, job_id: str) -> SyncJobView:
    """A job's progress, per source and stream (JobNotFound when the tenant has none)."""
    job = jobs_dal.get_job(tenant, job_id)
    if job is None:
        raise JobNotFound(f"sync job {job_id} not found")
    units = jobs_dal.get_units(tenant, job_id)
    settings = get_settings()
    by_source: dict[str, list[StreamProgress]] = {sid: [] for sid in job.source_ids}
    for unit in units:
        by_source.setdefault(unit.source_id, []).append(
            StreamProgress(
                stream=unit.stream,
                status=unit.status,
                mode=unit.mode,
                cursor_field=unit.cursor_field,
                records=unit.records,
                parts=unit.seq,
                bytes=unit.bytes,
                cursor_range={
                    "from": unit.cursor_start,
                    "to": unit.cursor_pending or unit.cursor_start,
                },
                output=f"s3://{settings.bucket_name}/{unit.output_prefix}/",
                started_at=unit.started_at,
                finished_at=unit.finished_at,
                attempts=unit.attempts,
                notes=unit.notes,
                error=unit.error,
            )
        )
    sources = []
    for source_id, streams in by_source.items():
        statuses = {s.status for s in streams}
        status = (
            "failed"
            if "failed" in statuses
            else "running"
            if statuses & {"running", "queued"} and job.status == "running"
            else job.status
            if not streams
            else "cancelled"
            if "cancelled" in statuses
            else "completed"
        )
        sources.append(
            SourceProgress(
                source_id=source_id,
                status=status,
                records_processed=sum(s.records for s in streams),
                streams=streams,
            )
        )
    return SyncJobView(
        job_id=job.job_id,
        status=job.status,
        records_processed=job.records_processed,
        trigger=job.trigger,
        sources=sources,
        options=job.options,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        status_url=f"/api/v1/data/{tenant.workspace_id}/sync/{job.job_id}?scope={tenant.scope.value}",
    )
