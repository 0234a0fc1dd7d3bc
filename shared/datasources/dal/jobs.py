"""Sync jobs, their work units, per-stream state and the one-job-per-source lease.

Every write that moves a sync forward is conditional, so a duplicate SQS delivery or
a crashed-and-retried worker can never advance a checkpoint twice:
- a unit's checkpoint moves from `seq` to `seq + 1` only if it still is `seq`;
- a unit completes, and its stream state commits, only from the checkpoint it read;
- a source's lease is taken only if free or expired, and released only by its job;
- part commits and stream-state commits hold only while the job still holds the
  source's lease: the job id is the fencing token (a job takes each lease once, and
  ids are never reused, so a job that lost its lease can never count a write again).

Every such write can be retried by the SDK after its reply was lost; the retry then
fails its own condition. So each one is idempotent: a failed condition is followed by
a consistent read that recognises our own write (a token written with it), and
transactions also carry a ClientRequestToken, which real DynamoDB deduplicates.

A job reaches a terminal status only through `finish_job`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from datasources import aws
from datasources.dal.keys import Tenant, job_sk, source_sk, state_sk, unit_sk
from datasources.dal.table import table
from datasources.errors import StorageError, SyncAlreadyRunning

TERMINAL = frozenset({"completed", "failed", "cancelled"})
# Unit fields stored as JSON text (nested, and free of DynamoDB's float restriction).
_JSON_FIELDS = ("cursor_start", "cursor_pending", "resume_token", "columns", "notes", "segments")
# Live jobs are indexed in one partition of their own, so the reaper finds every job
# that may need ending with one Query (no Scan, no index to maintain).
LIVE_PK = "LIVE#jobs"


class JobRecord(BaseModel):
    job_id: str
    status: str
    source_ids: list[str]
    options: dict[str, Any]
    created_at: str
    created_by: str
    unit_count: int = 0
    units_ended: int = 0
    records_processed: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    # Who started the job: "api" (POST /sync), "schedule" or "upload".
    trigger: str = "api"


class UnitRecord(BaseModel):
    """One (source, stream) of a job and its checkpoint."""

    unit_id: str
    job_id: str
    source_id: str
    stream: str
    status: str = "queued"
    mode: str = "full_refresh"
    cursor_field: str | None = None
    cursor_start: dict[str, Any] | None = None
    cursor_pending: dict[str, Any] | None = None
    resume_token: dict[str, Any] | None = None
    seq: int = 0
    continuation_seq: int = 0
    records: int = 0
    bytes: int = 0
    columns: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    output_prefix: str = ""
    # [[first_seq, attempt], ...]: which run (attempt) committed the parts from
    # first_seq on. Part keys carry their attempt, so this names every counted part.
    segments: list[list[Any]] = Field(default_factory=list)

    def attempt_of(self, seq: int) -> str | None:
        """The attempt whose part `seq` was counted (None if `seq` is not committed)."""
        if seq >= self.seq:
            return None
        # Parts counted before attempts were recorded have keys without one ("").
        owner = ""
        for first, attempt in self.segments:
            if int(first) <= seq:
                owner = str(attempt)
        return owner

    def to_item(self, tenant: Tenant, expires_at: int) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": tenant.pk, "sk": unit_sk(self.job_id, self.unit_id)}
        for key, value in self.model_dump().items():
            if key in _JSON_FIELDS:
                item[key] = json.dumps(value, default=str)
            elif value is not None:
                item[key] = value
        item["kind"] = "unit"
        item["expires_at"] = expires_at
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UnitRecord:
        data = {k: v for k, v in item.items() if k in cls.model_fields}
        for key in _JSON_FIELDS:
            if key in data and isinstance(data[key], str):
                data[key] = json.loads(data[key])
        for key in ("seq", "continuation_seq", "records", "bytes", "attempts"):
            if key in data:
                data[key] = int(data[key])
        return cls.model_validate(data)


class StreamStateRecord(BaseModel):
    cursor_field: str | None = None
    cursor_state: dict[str, Any] | None = None
    columns: list[dict[str, Any]] = Field(default_factory=list)
    last_job_id: str | None = None
    last_snapshot_job_id: str | None = None


def _now() -> int:
    return int(time.time())


# ------------------------------------------------------------------ jobs


def create_job(tenant: Tenant, job: JobRecord, *, lease_seconds: int, expires_at: int) -> None:
    """Create the job and take a lease on each of its sources, atomically.

    A source leased by a live job fails the transaction; the caller gets 409 with
    that job's id. An expired lease (a crashed job) is taken over.
    """
    now = _now()
    actions: list[dict[str, Any]] = [
        {
            "Put": {
                "Item": {
                    "pk": tenant.pk,
                    "sk": job_sk(job.job_id),
                    "kind": "job",
                    **job.model_dump(exclude={"options"}, exclude_none=True),
                    "options": json.dumps(job.options),
                    "expires_at": expires_at,
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
    ]
    for source_id in job.source_ids:
        actions.append(
            {
                "Update": {
                    "Key": {"pk": tenant.pk, "sk": source_sk(source_id)},
                    "UpdateExpression": "SET lease_job = :job, lease_expires = :exp",
                    "ConditionExpression": "attribute_exists(pk) AND "
                    "(attribute_not_exists(lease_job) OR lease_expires < :now)",
                    "ExpressionAttributeValues": {
                        ":job": job.job_id,
                        ":exp": now + lease_seconds,
                        ":now": now,
                    },
                }
            }
        )
    actions.append(
        {
            "Put": {
                "Item": {
                    "pk": LIVE_PK,
                    "sk": _live_sk(tenant, job.job_id),
                    "kind": "live",
                    "tenant_pk": tenant.pk,
                    "job_id": job.job_id,
                    "expires_at": expires_at,
                }
            }
        }
    )
    try:
        table().transact_write_items(actions)
    except ClientError as exc:
        if aws.error_code(exc) != "TransactionCanceledException":
            raise StorageError("could not create the sync job") from exc
        if get_job(tenant, job.job_id) is not None:
            return  # a retry of our own transaction: the job id is new, so it is ours
        reasons = exc.response.get("CancellationReasons", [])
        for index, reason in enumerate(reasons):
            if index > 0 and reason.get("Code") == "ConditionalCheckFailed":
                source_id = job.source_ids[index - 1]
                item = (
                    table()
                    .get_item(
                        Key={"pk": tenant.pk, "sk": source_sk(source_id)}, ConsistentRead=True
                    )
                    .get("Item")
                    or {}
                )
                running = item.get("lease_job")
                raise SyncAlreadyRunning(
                    f"source {source_id} is already syncing in job {running}",
                    details={"source_id": source_id, "running_job_id": running},
                ) from None
        raise StorageError("could not create the sync job") from exc


def put_units(tenant: Tenant, units: list[UnitRecord], *, expires_at: int) -> None:
    with table().batch_writer() as batch:
        for unit in units:
            batch.put_item(Item=unit.to_item(tenant, expires_at))


def get_job(tenant: Tenant, job_id: str) -> JobRecord | None:
    item = (
        table()
        .get_item(Key={"pk": tenant.pk, "sk": job_sk(job_id)}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return None
    data = {k: v for k, v in item.items() if k in JobRecord.model_fields}
    data["options"] = json.loads(item.get("options") or "{}")
    data["unit_count"] = int(item.get("unit_count", 0))
    data["records_processed"] = int(item.get("records_processed", 0))
    data["units_ended"] = int(item.get("units_ended", 0))
    return JobRecord.model_validate(data)


def get_units(tenant: Tenant, job_id: str) -> list[UnitRecord]:
    items = table().query_prefix(tenant.pk, unit_sk(job_id, ""), consistent=True)
    return [UnitRecord.from_item(i) for i in items]


def get_unit(tenant: Tenant, job_id: str, unit_id: str) -> UnitRecord | None:
    item = (
        table()
        .get_item(Key={"pk": tenant.pk, "sk": unit_sk(job_id, unit_id)}, ConsistentRead=True)
        .get("Item")
    )
    return UnitRecord.from_item(item) if item else None


def mark_job_running(tenant: Tenant, job_id: str, started_at: str) -> None:
    """queued → running (a no-op for a job already running or ended)."""
    _set_running(tenant, job_sk(job_id), started_at)


def start_unit(tenant: Tenant, unit: UnitRecord, started_at: str) -> bool:
    """queued → running; False when the unit is no longer queued or running."""
    return _set_running(tenant, unit_sk(unit.job_id, unit.unit_id), started_at)


def _set_running(tenant: Tenant, sk: str, started_at: str) -> bool:
    return _update_ignoring_condition(
        tenant,
        sk,
        "SET #s = :running, started_at = if_not_exists(started_at, :t)",
        "#s IN (:queued, :running)",
        {":running": "running", ":queued": "queued", ":t": started_at},
        names={"#s": "status"},
    )


def checkpoint(
    tenant: Tenant,
    unit: UnitRecord,
    *,
    attempt: str,
    records: int,
    size: int,
    resume_token: dict[str, Any] | None,
    cursor_pending: dict[str, Any] | None,
    columns: list[dict[str, Any]],
    lease_seconds: int,
) -> bool:
    """Count part `unit.seq`, written by run `attempt`: advance the unit to `seq + 1`.

    One transaction: the unit (only from the expected seq, only while running), the
    job's running total (only while the job is running: a cancelled job stops here),
    and the source's lease (renewed, only if still this job's: the fence). False when
    any condition fails: another delivery moved on, the job ended, or the lease was
    lost. A retry of our own committed transaction is recognised and returns True.
    """
    now = _now()
    segments = list(unit.segments)
    if not segments or segments[-1][1] != attempt:
        segments.append([unit.seq, attempt])
    actions = [
        {
            "Update": {
                "Key": {"pk": tenant.pk, "sk": unit_sk(unit.job_id, unit.unit_id)},
                "UpdateExpression": "SET seq = :next, resume_token = :tok, cursor_pending = :cur,"
                " #cols = :cols, #segs = :segs ADD records :n, #bytes :b",
                "ConditionExpression": "seq = :seq AND #s = :running",
                "ExpressionAttributeNames": {
                    "#s": "status",
                    "#bytes": "bytes",
                    "#cols": "columns",
                    "#segs": "segments",
                },
                "ExpressionAttributeValues": {
                    ":next": unit.seq + 1,
                    ":seq": unit.seq,
                    ":tok": json.dumps(resume_token, default=str),
                    ":cur": json.dumps(cursor_pending, default=str),
                    ":cols": json.dumps(columns),
                    ":segs": json.dumps(segments),
                    ":n": records,
                    ":b": size,
                    ":running": "running",
                },
            }
        },
        {
            "Update": {
                "Key": {"pk": tenant.pk, "sk": job_sk(unit.job_id)},
                "UpdateExpression": "ADD records_processed :n",
                "ConditionExpression": "#s = :running",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":n": records, ":running": "running"},
            }
        },
        _fence(tenant, unit, now + lease_seconds),
    ]
    token = _request_token("checkpoint", unit, unit.seq, attempt)
    if _transact(actions, "could not checkpoint the sync", token=token):
        unit.segments = segments
        return True
    stored = get_unit(tenant, unit.job_id, unit.unit_id)
    if stored is not None and stored.seq > unit.seq and stored.attempt_of(unit.seq) == attempt:
        unit.segments = stored.segments
        return True  # our own commit, whose reply was lost
    return False


def _fence(tenant: Tenant, unit: UnitRecord, lease_expires: int) -> dict[str, Any]:
    """Renew the source's lease, only while this job holds it (the fencing condition)."""
    return {
        "Update": {
            "Key": {"pk": tenant.pk, "sk": source_sk(unit.source_id)},
            "UpdateExpression": "SET lease_expires = :exp",
            "ConditionExpression": "lease_job = :job",
            "ExpressionAttributeValues": {":exp": lease_expires, ":job": unit.job_id},
        }
    }


def _request_token(*parts: Any) -> str:
    # DynamoDB deduplicates a transaction retried with the same token for 10 minutes;
    # tokens are at most 36 characters, so the identifying parts are hashed into a UUID.
    name = "|".join(
        f"{p.job_id}/{p.unit_id}" if isinstance(p, UnitRecord) else str(p) for p in parts
    )
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def lease_holder(tenant: Tenant, source_id: str) -> tuple[str | None, int]:
    """The job holding a source's lease and when the lease expires (epoch seconds)."""
    item = (
        table()
        .get_item(Key={"pk": tenant.pk, "sk": source_sk(source_id)}, ConsistentRead=True)
        .get("Item")
        or {}
    )
    holder = item.get("lease_job")
    return (str(holder) if holder else None), int(item.get("lease_expires", 0))


def set_continuation(tenant: Tenant, unit: UnitRecord, seq: int) -> None:
    """Record that a continuation for `seq` was enqueued; older messages are then stale."""
    _update_ignoring_condition(
        tenant,
        unit_sk(unit.job_id, unit.unit_id),
        "SET continuation_seq = :seq",
        "continuation_seq < :seq",
        {":seq": seq},
    )


def _count_ended_unit(tenant: Tenant, job_id: str) -> dict[str, Any]:
    # Counted in the same transaction as the unit's own end, so the count is exact even
    # with duplicate deliveries; the job is finished by whoever sees the count complete.
    return {
        "Update": {
            "Key": {"pk": tenant.pk, "sk": job_sk(job_id)},
            "UpdateExpression": "ADD units_ended :one",
            "ExpressionAttributeValues": {":one": 1},
        }
    }


def complete_unit(
    tenant: Tenant,
    unit: UnitRecord,
    *,
    finished_at: str,
    state: StreamStateRecord | None,
    lease_seconds: int,
) -> bool:
    """Finish a unit and commit its stream state in one transaction, from the checkpoint
    it was read at. False when another delivery already finished or moved it, or the
    job lost the source's lease; True for a retry of our own commit."""
    lease_expires = _now() + lease_seconds
    actions: list[dict[str, Any]] = [
        _count_ended_unit(tenant, unit.job_id),
        {
            "Update": {
                "Key": {"pk": tenant.pk, "sk": unit_sk(unit.job_id, unit.unit_id)},
                "UpdateExpression": "SET #s = :done, finished_at = :t",
                "ConditionExpression": "seq = :seq AND #s = :running",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {
                    ":done": "completed",
                    ":t": finished_at,
                    ":seq": unit.seq,
                    ":running": "running",
                },
            }
        },
        # A job that lost its lease must not move the stream's cursor (the fence).
        _fence(tenant, unit, lease_expires),
    ]
    if state is not None:
        actions.append(
            {
                "Put": {
                    "Item": {
                        "pk": tenant.pk,
                        "sk": state_sk(unit.source_id, unit.stream),
                        "kind": "state",
                        "source_id": unit.source_id,
                        "stream": unit.stream,
                        "state": state.model_dump_json(),
                        "updated_at": finished_at,
                    },
                }
            }
        )
    token = _request_token("complete", unit, unit.seq, finished_at)
    if _transact(actions, "could not complete the sync unit", token=token):
        return True
    return _is_own_end(tenant, unit, "completed", finished_at)


def _is_own_end(tenant: Tenant, unit: UnitRecord, status: str, finished_at: str) -> bool:
    stored = get_unit(tenant, unit.job_id, unit.unit_id)
    return stored is not None and stored.status == status and stored.finished_at == finished_at


def end_unit(
    tenant: Tenant, unit: UnitRecord, *, status: str, error: str | None, finished_at: str
) -> bool:
    """Mark a unit failed or cancelled (state is not committed: the next run redoes it)."""
    values: dict[str, Any] = {
        ":st": status,
        ":t": finished_at,
        ":c": "completed",
        ":f": "failed",
        ":x": "cancelled",
    }
    names = {"#s": "status"}
    expression = "SET #s = :st, finished_at = :t"
    if error:
        expression += ", #e = :e"
        names["#e"] = "error"
        values[":e"] = error
    actions = [
        _count_ended_unit(tenant, unit.job_id),
        {
            "Update": {
                "Key": {"pk": tenant.pk, "sk": unit_sk(unit.job_id, unit.unit_id)},
                "UpdateExpression": expression,
                "ConditionExpression": "NOT #s IN (:c, :f, :x)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        },
    ]
    token = _request_token("end", unit, status, finished_at)
    if _transact(actions, "could not end the sync unit", token=token):
        return True
    return _is_own_end(tenant, unit, status, finished_at)


def record_attempt_error(tenant: Tenant, unit: UnitRecord, error: str) -> None:
    """Note a failed attempt that will be retried (visible on the job while it retries)."""
    table().update_item(
        Key={"pk": tenant.pk, "sk": unit_sk(unit.job_id, unit.unit_id)},
        UpdateExpression="SET #e = :e ADD attempts :one",
        ExpressionAttributeNames={"#e": "error"},
        ExpressionAttributeValues={":e": error, ":one": 1},
    )


# A stream's notes are for people: a handful, each said once.
MAX_UNIT_NOTES = 20


def add_unit_notes(tenant: Tenant, unit: UnitRecord, notes: list[str]) -> list[str]:
    """Keep what a connector said about its read (a single-page resource, rows a run left
    out and why) on the stream's unit, each note once; returns the unit's notes.

    The unit is read again first: notes from earlier invocations of a chained run are
    kept. One worker at a time holds a unit (the lease), so the write needs no condition.
    """
    stored = get_unit(tenant, unit.job_id, unit.unit_id)
    known = stored.notes if stored is not None else unit.notes
    merged = list(dict.fromkeys([*known, *notes]))[:MAX_UNIT_NOTES]
    if merged != known:
        table().update_item(
            Key={"pk": tenant.pk, "sk": unit_sk(unit.job_id, unit.unit_id)},
            UpdateExpression="SET notes = :n",
            ExpressionAttributeValues={":n": json.dumps(merged)},
        )
    return merged


def finish_job(
    tenant: Tenant, job: JobRecord, *, status: str, finished_at: str, error: str | None
) -> bool:
    """Move a job to its terminal status once; releases its leases. False if already ended.

    The one way a job ends (completed, failed, cancelled, superseded, stalled,
    dead-lettered): whoever gets True is the one caller that ended it.
    """
    values: dict[str, Any] = {
        ":st": status,
        ":t": finished_at,
        ":q": "queued",
        ":r": "running",
    }
    expression = "SET #s = :st, finished_at = :t"
    names = {"#s": "status"}
    if error:
        expression += ", #e = :e"
        names["#e"] = "error"
        values[":e"] = error
    ended = _update_ignoring_condition(
        tenant, job_sk(job.job_id), expression, "#s IN (:q, :r)", values, names=names
    )
    stored = None if ended else get_job(tenant, job.job_id)
    if not ended and stored is not None:
        # A retry of our own update whose reply was lost fails its condition: same
        # status and time stamp means it was ours.
        ended = stored.status == status and stored.finished_at == finished_at
    if ended or (stored is not None and stored.status in TERMINAL):
        # Releasing an ended job's leases is always right, and makes a lost reply harmless.
        release_leases(tenant, job)
        drop_live(tenant, job.job_id)
    return ended


def _live_sk(tenant: Tenant, job_id: str) -> str:
    return f"{tenant.pk}|{job_id}"


def drop_live(tenant: Tenant, job_id: str) -> None:
    """Remove an ended job from the live index (idempotent)."""
    table().delete_item(Key={"pk": LIVE_PK, "sk": _live_sk(tenant, job_id)})


def live_jobs() -> list[tuple[Tenant, str]]:
    """Every job not yet known to have ended, as (tenant, job id)."""
    items = table().query_prefix(LIVE_PK, "ORG#", consistent=True)
    return [(Tenant.from_pk(i["tenant_pk"]), str(i["job_id"])) for i in items]


def release_leases(tenant: Tenant, job: JobRecord) -> None:
    for source_id in job.source_ids:
        _update_ignoring_condition(
            tenant,
            source_sk(source_id),
            "REMOVE lease_job, lease_expires",
            "lease_job = :job",
            {":job": job.job_id},
        )


def record_last_sync(tenant: Tenant, source_id: str, summary: dict[str, Any]) -> None:
    _update_ignoring_condition(
        tenant,
        source_sk(source_id),
        "SET last_sync = :s",
        "attribute_exists(pk)",
        {":s": json.dumps(summary, default=str)},
    )


def get_stream_states(tenant: Tenant, source_id: str) -> dict[str, StreamStateRecord]:
    """Every stream's committed state of a source, in one paginated Query (planning a
    sync of a database with thousands of tables must not cost one read per table)."""
    items = table().query_prefix(tenant.pk, state_sk(source_id, ""), consistent=True)
    return {i["stream"]: StreamStateRecord.model_validate_json(i["state"]) for i in items}


def get_stream_state(tenant: Tenant, source_id: str, stream: str) -> StreamStateRecord | None:
    item = (
        table()
        .get_item(Key={"pk": tenant.pk, "sk": state_sk(source_id, stream)}, ConsistentRead=True)
        .get("Item")
    )
    return StreamStateRecord.model_validate_json(item["state"]) if item else None


def cancel_source_jobs(tenant: Tenant, source_ids: list[str], finished_at: str) -> list[str]:
    """Cancel the live jobs holding a lease on any of these sources; returns their ids."""
    from datasources.dal.sources import get_sources

    cancelled: list[str] = []
    for source in get_sources(tenant, source_ids).values():
        if not source.lease_job or source.lease_job in cancelled:
            continue
        job = get_job(tenant, source.lease_job)
        if job and finish_job(
            tenant,
            job,
            status="cancelled",
            finished_at=finished_at,
            error="cancelled: the source was removed by cleanup",
        ):
            cancelled.append(job.job_id)
    return cancelled


def _transact(actions: list[dict[str, Any]], message: str, *, token: str | None = None) -> bool:
    try:
        table().transact_write_items(actions, token=token)
    except ClientError as exc:
        if aws.error_code(exc) == "TransactionCanceledException":
            return False
        raise StorageError(message) from exc
    return True


def _update_ignoring_condition(
    tenant: Tenant,
    sk: str,
    expression: str,
    condition: str,
    values: dict[str, Any],
    *,
    names: dict[str, str] | None = None,
) -> bool:
    params: dict[str, Any] = {
        "Key": {"pk": tenant.pk, "sk": sk},
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": values,
    }
    if names:
        params["ExpressionAttributeNames"] = names
    try:
        table().update_item(**params)
    except ClientError as exc:
        if aws.error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise StorageError("could not update the sync state") from exc
    return True
