"""The sync engine: plan units, work them in chunks, chain through SQS.

The design is in docs/architecture.md, "Sync engine".

A unit is one (source, stream) of a job. Working a unit means: read a batch from the
connector, write it as one part at a key unique to this run (the attempt), then
advance the unit's checkpoint with a conditional update that names the attempt. Time
runs out → the unit's next position is already stored, and one SQS message continues
it in the worker. Whoever finishes the last unit writes the job's final status.

Faults: a failure after progress continues from a fresh message (the attempt limit
counts attempts without progress); a failure the worker gives up on fails the unit and
sends its message to the dead-letter queue; a job whose lease lapses is ended by the
reaper (services/reaper.py). Every end removes the parts nobody counted (`sweep_unit`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from datasources import types
from datasources.aws import s3, sqs
from datasources.config import get_settings
from datasources.connectors.base import Batch, Connector, StreamState
from datasources.dal import jobs as jobs_dal
from datasources.dal import sources as sources_dal
from datasources.dal.jobs import TERMINAL, JobRecord, StreamStateRecord, UnitRecord
from datasources.dal.keys import Tenant
from datasources.dal.sources import SourceRecord
from datasources.errors import (
    ConnectionFailed,
    DataSourcesError,
    SourceConnectionLost,
    SourceReadError,
    StorageError,
    StreamUnreadable,
    Throttled,
    ValidationFailed,
)
from datasources.ids import new_id, now_iso
from datasources.limits import deadline_from
from datasources.models.common import MAX_TRANSACTION_ITEMS
from datasources.models.requests import SyncOptions
from datasources.models.responses import SyncJobView
from datasources.models.streams import Column, Table
from datasources.observability import failure_metric, log_failure, logger, unit_metrics
from datasources.sync.events import job_ended
from datasources.sync.readahead import ReadAhead
from datasources.sync.sources import open_source
from datasources.sync.status import job_status
from datasources.types import choose_cursor

RemainingMillis = Callable[[], int]
# A job is created in one transaction: its item, its live-job marker and a lease on each
# source (dal.jobs.create_job).
MAX_SOURCES_PER_JOB = MAX_TRANSACTION_ITEMS - 2


@dataclass
class UnitOutcome:
    status: str  # "completed", "more", "stopped", "failed"
    error: str | None = None


@dataclass
class _Connectors:
    """Connectors opened during one invocation, one per source, closed at the end."""

    tenant: Tenant
    sources: dict[str, SourceRecord]
    opened: dict[str, Connector] = field(default_factory=dict)

    def get(self, source_id: str) -> Connector:
        if source_id not in self.opened:
            self.opened[source_id] = open_source(self.sources[source_id], self.tenant)
        return self.opened[source_id]

    def close(self) -> None:
        for connector in self.opened.values():
            # Closing must never hide the real outcome of the sync.
            with contextlib.suppress(Exception):
                connector.close()
        self.opened.clear()


def run_job(
    tenant: Tenant,
    sources: list[SourceRecord],
    options: SyncOptions,
    remaining_ms: RemainingMillis,
    *,
    created_by: str,
    trigger: str,
) -> SyncJobView:
    """Plan and start a job over `sources`; `trigger` says who asked (api, schedule, upload).

    Works inline while the time budget lasts (none for a trigger, which hands every
    unit to the worker), enqueues the rest. Raises SyncAlreadyRunning (409) when a
    source is leased by a live job.
    """
    settings = get_settings()
    if not sources:
        return SyncJobView(job_id=None, status="completed", records_processed=0, sources=[])
    if len(sources) > MAX_SOURCES_PER_JOB:
        raise ValidationFailed(
            f"a sync can cover at most {MAX_SOURCES_PER_JOB} sources; pass source_ids"
        )

    connectors = _Connectors(tenant, {s.id: s for s in sources})
    deadline = time.monotonic() + min(
        settings.sync_time_budget_seconds, max(0.0, remaining_ms() / 1000 - 5)
    )
    try:
        job_id = new_id("job")
        units = _plan_units(tenant, job_id, sources, options, connectors)
        now = now_iso()
        job = JobRecord(
            job_id=job_id,
            status="queued",
            source_ids=[s.id for s in sources],
            options=options.model_dump(),
            created_at=now,
            created_by=created_by,
            unit_count=len(units),
            trigger=trigger,
        )
        expires_at = int(time.time()) + settings.job_ttl_days * 86400
        jobs_dal.create_job(
            tenant, job, lease_seconds=settings.job_lease_seconds, expires_at=expires_at
        )
        jobs_dal.put_units(tenant, units, expires_at=expires_at)
        jobs_dal.mark_job_running(tenant, job_id, now)
        job.status = "running"
        logger.append_keys(job_id=job_id)
        for unit in units:
            if time.monotonic() >= deadline:
                _enqueue(tenant, unit)
                continue
            logger.append_keys(source_id=unit.source_id, stream=unit.stream)
            try:
                outcome = _run_unit(tenant, job, unit, connectors.get(unit.source_id), deadline)
            except Exception as exc:  # noqa: BLE001 - any failure ends this unit, reported on the job
                log_failure("sync unit failed", exc, _describe(exc))
                if is_transient(exc):
                    # As the worker would: retry from the queue, not fail the job at once.
                    jobs_dal.record_attempt_error(tenant, unit, _describe(exc))
                    _enqueue(tenant, _stored(tenant, unit), delay=settings.retry_delay_seconds)
                else:
                    _fail_unit(tenant, unit, _describe(exc), stage=_stage(exc))
                continue
            if outcome.status == "more":
                _enqueue(tenant, unit)
        _finish_job_if_done(tenant, job_id)
    finally:
        connectors.close()
    return job_status(tenant, job_id)


def _plan_units(
    tenant: Tenant,
    job_id: str,
    sources: list[SourceRecord],
    options: SyncOptions,
    connectors: _Connectors,
) -> list[UnitRecord]:
    units: list[UnitRecord] = []
    reset_all = options.reset_state is True
    reset_streams = set(options.reset_state) if isinstance(options.reset_state, list) else set()
    for source in sources:
        tables = connectors.get(source.id).discover()
        selected = _select_streams(tables, options.streams, source)
        states = jobs_dal.get_stream_states(tenant, source.id)
        for table in selected:
            previous = states.get(table.name)
            if reset_all or table.name in reset_streams:
                previous = None
            cursor = choose_cursor(table.cursor_candidates, options.cursor_fields.get(table.name))
            names = {c.name for c in table.columns}
            if cursor and cursor not in names and cursor not in table.cursor_candidates:
                raise ValidationFailed(
                    f"cursor field '{cursor}' is not a column of stream '{table.name}'"
                )
            notes: list[str] = []
            mode = "incremental" if options.incremental and cursor else "full_refresh"
            if options.incremental and not cursor:
                notes.append("no cursor column found: this stream is synced as a full refresh")
            start = None
            if mode == "incremental" and previous and previous.cursor_field == cursor:
                start = previous.cursor_state
            if mode == "incremental":
                notes.extend(
                    _incremental_notes(connectors.get(source.id), table.name, cursor, start)
                )
            unit_id = f"u{len(units):05d}"
            units.append(
                UnitRecord(
                    unit_id=unit_id,
                    job_id=job_id,
                    source_id=source.id,
                    stream=table.name,
                    mode=mode,
                    cursor_field=cursor if mode == "incremental" else None,
                    cursor_start=start,
                    columns=[c.model_dump() for c in table.columns],
                    notes=notes,
                    output_prefix=_prefix(tenant, source.id, table.name, job_id),
                )
            )
    return units


def _incremental_notes(
    connector: Connector, stream: str, cursor: str | None, start: dict[str, Any] | None
) -> list[str]:
    """What an incremental run of the stream leaves out: rows the connector will not
    read (its `incremental_notes`, where it has them) and updates a cursor cannot see."""
    notes: list[str] = []
    if types.incremental_captures(cursor) == "inserts":
        notes.append(
            f"only inserts are captured: the cursor '{cursor}' does not change when a row is "
            "updated, so updated rows are not read again (a full refresh reads them)"
        )
    ask = getattr(connector, "incremental_notes", None)
    if ask is not None:
        notes.extend(ask(stream, StreamState(cursor_field=cursor, cursor_state=start)))
    return notes


def _select_streams(
    tables: list[Table], streams: list[str] | None, source: SourceRecord
) -> list[Table]:
    if not streams:
        return tables
    by_name = {t.name: t for t in tables}
    unknown = [s for s in streams if s not in by_name]
    if unknown and len(unknown) == len(streams):
        raise ValidationFailed(
            f"source {source.id} has no stream named {', '.join(unknown)}",
            details={"unknown_streams": unknown},
        )
    return [by_name[s] for s in streams if s in by_name]


def _prefix(tenant: Tenant, source_id: str, stream: str, job_id: str) -> str:
    from datasources.sync.writer import job_prefix

    return job_prefix(tenant, source_id, stream, job_id)


# ------------------------------------------------------------------ working a unit


def _run_unit(
    tenant: Tenant, job: JobRecord, unit: UnitRecord, connector: Connector, deadline: float
) -> UnitOutcome:
    """Work `unit` from its checkpoint until it completes or `deadline` passes."""
    settings = get_settings()
    if not jobs_dal.start_unit(tenant, unit, now_iso()):
        return UnitOutcome("stopped")
    # This run's own name: its part keys carry it, and its checkpoints record it.
    attempt = secrets.token_hex(4)
    batch_size = int(job.options.get("batch_size") or settings.default_batch_size)
    fmt = str(job.options.get("format") or "parquet")
    columns = [Column.model_validate(c) for c in unit.columns]
    state = StreamState(
        cursor_field=unit.cursor_field,
        cursor_state=unit.cursor_start,
        resume_token=unit.resume_token,
    )
    pending = unit.cursor_pending
    reader = ReadAhead(connector.read(unit.stream, state, batch_size))
    try:
        return _write_batches(
            tenant,
            unit,
            reader,
            columns,
            fmt,
            pending,
            attempt,
            settings.job_lease_seconds,
            deadline,
        )
    finally:
        reader.close()


def _write_batches(
    tenant: Tenant,
    unit: UnitRecord,
    batches: Iterable[Batch],
    columns: list[Column],
    fmt: str,
    pending: dict[str, Any] | None,
    attempt: str,
    lease_seconds: int,
    deadline: float,
) -> UnitOutcome:
    """One part and one checkpoint per batch, until the batches end or time runs out.

    This thread encodes; a PartUploader stores the parts already encoded (several at
    once) and checkpoints them in order meanwhile. `unit` is advanced by the uploader
    and read again only after it finished.
    """
    from datasources.sync import writer
    from datasources.sync.parts import EncodedPart, PartUploader

    uploader = PartUploader(
        tenant,
        unit,
        attempt=attempt,
        bucket=get_settings().bucket_name,
        lease_seconds=lease_seconds,
    )
    written_columns: list[dict[str, str]] = []
    seq = unit.seq
    out_of_time = False
    said: set[str] = set()
    try:
        for batch in batches:
            if batch.notes and not said.issuperset(batch.notes):
                # What the connector says about its read belongs to the job's answer:
                # a green job must not hide a resource it read as a single page.
                said.update(batch.notes)
                jobs_dal.add_unit_notes(tenant, unit, batch.notes)
            if batch.num_rows == 0:
                # An empty batch has no position of its own: a continuation that finds
                # nothing left must keep this run's position, not the one it started from.
                pending = pending or batch.cursor_state
                continue
            table = writer.to_arrow(batch.records, columns)
            part = EncodedPart(
                seq=seq,
                key=writer.part_key(unit.output_prefix, seq, fmt, attempt),
                body=writer.encode(table, fmt),
                records=table.num_rows,
                resume_token=batch.resume_token,
                cursor_pending=batch.cursor_state or pending,
            )
            pending = part.cursor_pending
            written_columns = _merge_columns(written_columns, writer.arrow_columns(table))
            # Hand the batch's buffers back now: without it the allocator keeps them, and
            # a long sync's peak memory creeps up with the number of batches, not their size.
            del table, batch
            writer.release_memory()
            if not uploader.submit(part):
                break
            seq += 1
            if time.monotonic() >= deadline:
                out_of_time = True
                break
        committed = uploader.finish()
    finally:
        uploader.close()
    if not committed:
        # Another delivery moved this unit on, the job was cancelled (the uploader has
        # then ended the unit), or another job took the source's lease: stop here.
        if uploader.lease_lost_to:
            supersede(tenant, unit.job_id, uploader.lease_lost_to)
        return UnitOutcome("stopped")
    if out_of_time:
        return UnitOutcome("more")
    if not _complete_unit(tenant, unit, pending, written_columns, lease_seconds):
        holder, _ = jobs_dal.lease_holder(tenant, unit.source_id)
        if holder != unit.job_id:
            supersede(tenant, unit.job_id, holder or "(none)")
        return UnitOutcome("stopped")
    return UnitOutcome("completed")


def _merge_columns(known: list[dict[str, str]], new: list[dict[str, str]]) -> list[dict[str, str]]:
    names = {c["name"] for c in known}
    return known + [c for c in new if c["name"] not in names]


def _complete_unit(
    tenant: Tenant,
    unit: UnitRecord,
    pending: dict[str, Any] | None,
    written_columns: list[dict[str, str]],
    lease_seconds: int,
) -> bool:
    previous = jobs_dal.get_stream_state(tenant, unit.source_id, unit.stream)
    columns = unit.columns
    if unit.mode == "incremental":
        state = StreamStateRecord(
            cursor_field=unit.cursor_field,
            cursor_state=pending or unit.cursor_start,
            columns=columns,
            last_job_id=unit.job_id,
            last_snapshot_job_id=previous.last_snapshot_job_id if previous else None,
        )
    else:
        # A full refresh is a complete snapshot; it leaves the incremental cursor as it was.
        state = StreamStateRecord(
            cursor_field=previous.cursor_field if previous else None,
            cursor_state=previous.cursor_state if previous else None,
            columns=columns,
            last_job_id=unit.job_id,
            last_snapshot_job_id=unit.job_id,
        )
    finished = now_iso()
    # The manifest goes first: if the worker dies before the transaction below, the
    # redelivered message finds nothing left to read and writes it again, then completes.
    _write_manifest(tenant, unit, state, previous, pending, finished)
    done = jobs_dal.complete_unit(
        tenant, unit, finished_at=finished, state=state, lease_seconds=lease_seconds
    )
    # Once the unit has ended nobody can count another part: what is left goes.
    sweep_unit(tenant, jobs_dal.get_unit(tenant, unit.job_id, unit.unit_id) or unit)
    return done


def _write_manifest(
    tenant: Tenant,
    unit: UnitRecord,
    state: StreamStateRecord,
    previous: StreamStateRecord | None,
    pending: dict[str, Any] | None,
    finished: str,
) -> None:
    settings = get_settings()
    files = [{"key": key, "bytes": size} for key, size, counted in _parts_of(unit) if counted]
    if len(files) != unit.seq:
        # Never complete a unit whose manifest would leave out rows it counted.
        raise StorageError(f"{unit.seq - len(files)} counted part(s) missing from the bucket")
    before = {c["name"] for c in (previous.columns if previous else [])}
    now_cols = {c["name"] for c in unit.columns}
    manifest = {
        "job_id": unit.job_id,
        "source_id": unit.source_id,
        "stream": unit.stream,
        "mode": unit.mode,
        "status": "completed",
        "record_count": unit.records,
        "bytes": unit.bytes,
        "files": files,
        "schema": unit.columns,
        "schema_changes": {
            "added": sorted(now_cols - before) if previous else [],
            "removed": sorted(before - now_cols) if previous else [],
        },
        "cursor_field": unit.cursor_field,
        "cursor_range": {"from": unit.cursor_start, "to": pending or unit.cursor_start},
        "latest_complete_snapshot_job_id": state.last_snapshot_job_id,
        "notes": unit.notes,
        "completed_at": finished,
    }
    s3.put(
        settings.bucket_name,
        f"{unit.output_prefix}/_manifest.json",
        json.dumps(manifest, default=str, indent=2).encode(),
        content_type="application/json",
    )


def _parts_of(unit: UnitRecord) -> list[tuple[str, int, bool]]:
    """Every part stored under the unit's prefix: (key, bytes, counted by the checkpoint)."""
    from datasources.sync.writer import part_id

    found: list[tuple[str, int, bool]] = []
    for key, size in s3.list_objects(get_settings().bucket_name, f"{unit.output_prefix}/part-"):
        seq, attempt = part_id(key)
        found.append((key, size, unit.attempt_of(seq) == attempt))
    return sorted(found)


def sweep_unit(tenant: Tenant, unit: UnitRecord) -> int:
    """Delete the parts of an ended unit that its checkpoint does not count (and the
    manifest of a unit that did not complete); returns how many objects went.

    Only for an ended unit (or a unit of an ended job): nobody can count a part then,
    so a part the checkpoint does not name would only duplicate or orphan rows.
    """
    unit = jobs_dal.get_unit(tenant, unit.job_id, unit.unit_id) or unit  # the stored checkpoint
    doomed = [key for key, _, counted in _parts_of(unit) if not counted]
    if unit.status != "completed":
        doomed.append(f"{unit.output_prefix}/_manifest.json")
    s3.delete_keys(get_settings().bucket_name, doomed)
    return len(doomed)


def end_job(tenant: Tenant, job_id: str, *, status: str, error: str | None) -> bool:
    """End a job that cannot go on (superseded, stalled, dead-lettered): its job record
    first (so no checkpoint of it can count any more), then its open units, then the
    parts nobody counted. True if this call ended it."""
    job = jobs_dal.get_job(tenant, job_id)
    if job is None:
        return False
    finished = now_iso()
    ended = jobs_dal.finish_job(tenant, job, status=status, finished_at=finished, error=error)
    final = status if ended else (jobs_dal.get_job(tenant, job_id) or job).status
    for unit in jobs_dal.get_units(tenant, job_id):
        if unit.status not in TERMINAL:
            # Open units end as their job did (a job cancelled meanwhile stays cancelled).
            status_now = "cancelled" if final == "cancelled" else "failed"
            if (
                jobs_dal.end_unit(
                    tenant,
                    unit,
                    status=status_now,
                    error=error if ended else None,
                    finished_at=finished,
                )
                and status_now == "failed"
            ):
                log_stream_failed(unit, stage="job", cause=error or f"the job {final}")
        sweep_unit(tenant, unit)
    if ended:
        _record_last_sync(tenant, job, status, finished, jobs_dal.get_units(tenant, job_id))
        job_ended(tenant, job_id)
    return ended


def supersede(tenant: Tenant, job_id: str, holder: str) -> None:
    """A job that lost its source's lease to `holder` can count nothing more: end it."""
    end_job(
        tenant,
        job_id,
        status="failed",
        error=f"superseded: job {holder} holds the source's lease, which this job lost "
        "after making no progress for the lease period",
    )


def _fail_unit(tenant: Tenant, unit: UnitRecord, error: str, *, stage: str) -> None:
    if jobs_dal.end_unit(tenant, unit, status="failed", error=error, finished_at=now_iso()):
        log_stream_failed(unit, stage=stage, cause=error)
    sweep_unit(tenant, unit)


def log_stream_failed(unit: UnitRecord, *, stage: str, cause: str) -> None:
    """The one ERROR line of a stream that ended failed: a failed job is found in the log
    by its id, and each failed stream by source and stream, with where and why.

    `cause` is the job's own error text (a DataSourcesError message, which connectors
    sanitize, or an exception's kind): the same text the status endpoint shows.
    """
    logger.error(
        "sync stream failed",
        extra={
            "job_id": unit.job_id,
            "source_id": unit.source_id,
            "stream": unit.stream,
            "stage": stage,
            "cause": cause,
        },
    )


def _stage(exc: BaseException) -> str:
    """Where a unit failed: a connector's own stage, else the kind of step."""
    stage = getattr(exc, "stage", None)
    if stage:
        return str(stage)
    if isinstance(exc, SourceReadError):
        return "read"
    if isinstance(exc, StorageError):
        return "write"
    if isinstance(exc, ValidationFailed):
        return "validate"
    return "sync"


def _stored(tenant: Tenant, unit: UnitRecord) -> UnitRecord:
    return jobs_dal.get_unit(tenant, unit.job_id, unit.unit_id) or unit


def is_transient(exc: BaseException) -> bool:
    """Whether a failure may pass by itself (a lost connection, AWS or the source busy),
    as opposed to one that will repeat (a bad file, a dropped table)."""
    if not isinstance(exc, DataSourcesError):
        return True  # an SDK or socket error: DataSourcesError covers every known fault
    if isinstance(exc, StorageError | Throttled):
        return True
    if isinstance(exc, ConnectionFailed):
        return exc.stage in {"tcp", "timeout", "dns"}
    # A read error is transient only when the connector found the connection lost.
    return isinstance(exc, SourceConnectionLost)


def _finish_job_if_done(tenant: Tenant, job_id: str) -> None:
    """If every unit has ended, give the job its final status (once) and free the sources."""
    job = jobs_dal.get_job(tenant, job_id)
    if job is None or job.status in TERMINAL or job.units_ended < job.unit_count:
        return
    units = jobs_dal.get_units(tenant, job_id)
    if len(units) < job.unit_count or any(u.status not in TERMINAL for u in units):
        return
    failed = [u for u in units if u.status == "failed"]
    cancelled = [u for u in units if u.status == "cancelled"]
    status = "failed" if failed else "cancelled" if cancelled else "completed"
    error = None
    if failed:
        error = f"{len(failed)} of {len(units)} streams failed; first: {failed[0].stream}: {failed[0].error}"
    finished = now_iso()
    if jobs_dal.finish_job(tenant, job, status=status, finished_at=finished, error=error):
        _record_last_sync(tenant, job, status, finished, units)
        job_ended(tenant, job_id)


def _record_last_sync(
    tenant: Tenant, job: JobRecord, status: str, finished: str, units: list[UnitRecord]
) -> None:
    for source_id in job.source_ids:
        mine = [u for u in units if u.source_id == source_id]
        jobs_dal.record_last_sync(
            tenant,
            source_id,
            {
                "job_id": job.job_id,
                "status": status,
                "finished_at": finished,
                "records": sum(u.records for u in mine),
            },
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DataSourcesError):
        return exc.message
    # Unknown exceptions may quote a DSN or a URL: report only their kind.
    return f"unexpected error while syncing ({type(exc).__name__})"


# ------------------------------------------------------------------ SQS chaining


def _enqueue(tenant: Tenant, unit: UnitRecord, *, delay: int = 0) -> None:
    settings = get_settings()
    body = {"job_id": unit.job_id, "pk": tenant.pk, "unit_id": unit.unit_id, "seq": unit.seq}
    sqs.send(settings.queue_url, json.dumps(body), delay_seconds=min(900, delay))
    # Sent first, recorded second: a crash in between leaves the old message current,
    # so the unit is still carried on (see handle_message's staleness rule).
    jobs_dal.set_continuation(tenant, unit, unit.seq)


def retry_delay(attempts: int) -> int:
    """Seconds before attempt `attempts + 1` of a unit that made no progress."""
    return min(900, get_settings().retry_delay_seconds * 2 ** max(0, attempts - 1))


def handle_message(body: str, receive_count: int, remaining_ms: RemainingMillis) -> None:
    """Continue one unit from an SQS message. Raises to have the message retried."""
    settings = get_settings()
    message = json.loads(body)
    tenant = Tenant.from_pk(message["pk"])
    job = jobs_dal.get_job(tenant, message["job_id"])
    if job is None:
        return
    unit = jobs_dal.get_unit(tenant, job.job_id, message["unit_id"])
    if unit is None:
        return
    if job.status in TERMINAL:
        sweep_unit(tenant, unit)
        return
    if unit.status in TERMINAL:
        _finish_job_if_done(tenant, job.job_id)
        return
    if int(message.get("seq", 0)) < unit.continuation_seq:
        return  # a newer continuation of this unit is in the queue: this one is stale
    logger.append_keys(job_id=job.job_id, source_id=unit.source_id, stream=unit.stream)
    source = sources_dal.get_source(tenant, unit.source_id)
    if source is None:
        jobs_dal.end_unit(tenant, unit, status="cancelled", error=None, finished_at=now_iso())
        sweep_unit(tenant, unit)
        _finish_job_if_done(tenant, job.job_id)
        return
    deadline = time.monotonic() + max(0.0, remaining_ms() / 1000 - settings.worker_reserve_seconds)
    connectors = _Connectors(tenant, {source.id: source})
    started_seq = unit.seq
    before = (unit.records, unit.bytes, unit.seq, time.monotonic())
    try:
        with deadline_from(remaining_ms()):  # upstream reads end before the function does
            outcome = _run_unit(tenant, job, unit, connectors.get(source.id), deadline)
    except Exception as exc:
        error = _describe(exc)
        log_failure("sync unit attempt failed", exc, error)
        failure_metric(exc)
        stored = _stored(tenant, unit)
        if stored.status in TERMINAL:
            _finish_job_if_done(tenant, job.job_id)
            return
        if isinstance(exc, StreamUnreadable):
            # A lasting condition of this stream: another attempt would meet it again.
            _fail_unit(tenant, stored, error, stage=_stage(exc))
            _finish_job_if_done(tenant, job.job_id)
            return
        if stored.seq > started_seq:
            # Progress since this message was received: carry on from a fresh message,
            # whose receive count starts again (attempts count lack of progress).
            jobs_dal.record_attempt_error(tenant, stored, error)
            _enqueue(tenant, stored, delay=retry_delay(1))
            return
        if receive_count >= settings.max_receives:
            _fail_unit(
                tenant,
                stored,
                f"{error} (gave up after {receive_count} attempts)",
                stage=_stage(exc),
            )
            _finish_job_if_done(tenant, job.job_id)
            _dead_letter(body)
            return
        jobs_dal.record_attempt_error(tenant, stored, error)
        raise
    finally:
        connectors.close()
    unit_metrics(
        records=unit.records - before[0],
        size=unit.bytes - before[1],
        parts=unit.seq - before[2],
        seconds=time.monotonic() - before[3],
    )
    if outcome.status == "more":
        _enqueue(tenant, unit)
    else:
        _finish_job_if_done(tenant, job.job_id)


def _dead_letter(body: str) -> None:
    """Hand a continuation the worker gave up on to the dead-letter queue explicitly
    (the unit is already failed), instead of relying on more receives to move it."""
    url = get_settings().dead_letter_queue_url
    if url:
        sqs.send(url, body)
