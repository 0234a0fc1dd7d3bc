"""Every job reaches a terminal status: the dead-letter consumer and the reaper.

- A continuation that SQS dead-letters (the worker crashed on it, ran out of memory or
  time, `maxReceiveCount` times) fails its unit, and so its job, with that reason.
- The reaper runs on a schedule. A live job that holds none of its sources' leases any
  more is ended: `superseded` (as failed) when another job took a lease, `stalled`
  (as failed) when its leases lapsed, i.e. no part was counted for the lease period.
  A job whose units have all ended but which was never finished (a crash in between)
  is finished.

So a job stays `running` without progress at most the lease period plus one reaper
interval (README, "Guarantees under faults").
"""

from __future__ import annotations

import json
import time

from datasources.config import get_settings
from datasources.dal import jobs as jobs_dal
from datasources.dal.jobs import TERMINAL
from datasources.dal.keys import Tenant
from datasources.ids import now_iso
from datasources.observability import logger
from datasources.sync.cleanup import is_cleanup_message
from datasources.sync.engine import _finish_job_if_done, end_job, supersede, sweep_unit


def dead_lettered(body: str, receive_count: int) -> None:
    """Fail the unit of a continuation that was dead-lettered (if still current)."""
    message = json.loads(body)
    if is_cleanup_message(body):
        # Nothing to fail: the sources it still names stay listed, their secrets were not
        # scheduled yet (cleanup schedules secrets before items), and a new cleanup
        # request removes them. Said loudly, since nobody is waiting on this message.
        logger.error(
            "a cleanup continuation was dead-lettered; its sources remain until cleaned up again",
            extra={"pending_source_ids": message.get("source_ids", [])},
        )
        return
    tenant = Tenant.from_pk(message["pk"])
    job = jobs_dal.get_job(tenant, message["job_id"])
    unit = jobs_dal.get_unit(tenant, message["job_id"], message["unit_id"]) if job else None
    if job is None or unit is None:
        return
    if unit.status not in TERMINAL and job.status not in TERMINAL:
        if int(message.get("seq", 0)) < unit.continuation_seq:
            return  # a newer continuation carries the unit on
        error = (
            f"the worker gave up on this stream after {receive_count} deliveries without "
            "an answer (it crashed, ran out of memory or out of time); sync again to resume"
        )
        jobs_dal.end_unit(tenant, unit, status="failed", error=error, finished_at=now_iso())
    sweep_unit(tenant, unit)
    _finish_job_if_done(tenant, job.job_id)


def reap(now: float | None = None) -> list[str]:
    """End every live job that can make no more progress; returns the ids it ended."""
    settings = get_settings()
    clock = int(now if now is not None else time.time())
    ended: list[str] = []
    for tenant, job_id in jobs_dal.live_jobs():
        job = jobs_dal.get_job(tenant, job_id)
        if job is None:
            jobs_dal.drop_live(tenant, job_id)
            continue
        if job.status in TERMINAL:
            # Ended, but its leases or live entry were left by a crash: tidy them.
            jobs_dal.release_leases(tenant, job)
            jobs_dal.drop_live(tenant, job_id)
            continue
        units = jobs_dal.get_units(tenant, job_id)
        open_sources = {u.source_id for u in units if u.status not in TERMINAL}
        leases = {sid: jobs_dal.lease_holder(tenant, sid) for sid in open_sources or job.source_ids}
        taken = [holder for holder, _ in leases.values() if holder and holder != job_id]
        if taken:
            supersede(tenant, job_id, taken[0])
            ended.append(job_id)
        elif all(expires < clock for _, expires in leases.values()):
            reason = (
                f"stalled: no progress for {settings.job_lease_seconds} s (the worker "
                "stopped without an answer); sync again to resume"
            )
            if end_job(tenant, job_id, status="failed", error=reason):
                ended.append(job_id)
        elif not open_sources:
            _finish_job_if_done(tenant, job_id)
    if ended:
        logger.warning("reaper ended jobs", extra={"job_ids": ended})
    return ended
