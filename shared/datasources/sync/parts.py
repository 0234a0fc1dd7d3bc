"""Store parts and commit them in order, off the encoder's thread.

Per part the engine waits on S3 (the PUT) and on DynamoDB (the checkpoint transaction)
about as long as it spends encoding Parquet (make bench), and in a Lambda those waits
are network round trips. So the engine only encodes; this module

- stores up to `max_in_flight` parts at once, each PUT in a pool thread (they are
  independent: every part has its own key, unique to this run), and
- commits them strictly in order in one committer thread: part k's checkpoint runs
  once part k is stored and part k-1 is committed, exactly as when all ran inline.

Memory stays bounded: `submit` blocks while `max_in_flight` parts are uncommitted.

A refused checkpoint, or a failure, ends the work. The parts this run stored but did
not count are deleted again: their keys are this run's own, so nobody else can ever
count them. Only a part whose checkpoint failed without an answer is left (it may have
been counted); the engine's sweep removes it once the unit has ended, if uncounted.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from datasources.aws import s3
from datasources.dal import jobs as jobs_dal
from datasources.dal.jobs import TERMINAL, UnitRecord
from datasources.dal.keys import Tenant
from datasources.ids import now_iso

_POLL_SECONDS = 0.1
# Parts stored concurrently: enough to hide a PUT's round trip behind the checkpoints
# and the encoder; each holds one encoded part in memory until it is committed.
MAX_IN_FLIGHT = 3


@dataclass
class EncodedPart:
    seq: int
    key: str
    body: bytes
    records: int
    resume_token: dict[str, Any] | None
    cursor_pending: dict[str, Any] | None


class PartUploader:
    """Store and commit the parts of `unit`, in submission order.

    `submit` returns False once a checkpoint was refused (another delivery moved the
    unit on, or the job was cancelled): nothing more may be written. `finish` waits
    for the parts already submitted, then says whether all of them were committed.
    An S3 or DynamoDB failure is raised in the caller, by the next `submit` or by
    `finish`. `unit` is advanced by the committer as parts commit: read it only after
    `finish` or `close`.
    """

    def __init__(
        self,
        tenant: Tenant,
        unit: UnitRecord,
        *,
        attempt: str,
        bucket: str,
        lease_seconds: int,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._tenant = tenant
        self._unit = unit
        self._attempt = attempt
        self._bucket = bucket
        self._lease_seconds = lease_seconds
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._puts = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="sync-put")
        self._queue: queue.Queue[tuple[EncodedPart, Future[Any]] | None] = queue.Queue()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        # Set when a checkpoint was refused because another job holds the source's lease.
        self.lease_lost_to: str | None = None
        self._committer = threading.Thread(target=self._run, name="sync-commit", daemon=True)
        self._committer.start()

    def submit(self, part: EncodedPart) -> bool:
        """Start storing `part`; False when the work has stopped (see the class)."""
        while not self._slots.acquire(timeout=_POLL_SECONDS):
            if self._stopped.is_set():
                self._raise_if_failed()
                return False
        if self._stopped.is_set():
            self._slots.release()
            self._raise_if_failed()
            return False
        self._queue.put((part, self._puts.submit(self._put, part)))
        return True

    def finish(self) -> bool:
        """Wait for every submitted part; True when all of them were committed."""
        self._end()
        self._raise_if_failed()
        return not self._stopped.is_set()

    def close(self) -> None:
        """Stop (the caller is failing): wait for the PUTs started, commit nothing more."""
        self._stopped.set()
        self._end()

    def _end(self) -> None:
        if self._committer.is_alive():
            self._queue.put(None)
            self._committer.join()
        self._puts.shutdown(wait=True)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _put(self, part: EncodedPart) -> None:
        s3.put(self._bucket, part.key, part.body)

    # ---- the committer thread

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            part, stored = item
            try:
                if self._stopped.is_set():
                    self._discard(part, stored)
                else:
                    try:
                        stored.result()
                    except BaseException:
                        self._discard(part, stored)
                        raise
                    # A checkpoint that raises may still have counted the part: it is
                    # kept, and the sweep decides from the stored checkpoint.
                    self._commit(part)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                if self._error is None:
                    self._error = exc
                self._stopped.set()
            finally:
                self._slots.release()

    def _commit(self, part: EncodedPart) -> None:
        unit = self._unit
        committed = jobs_dal.checkpoint(
            self._tenant,
            unit,
            attempt=self._attempt,
            records=part.records,
            size=len(part.body),
            resume_token=part.resume_token,
            cursor_pending=part.cursor_pending,
            columns=unit.columns,
            lease_seconds=self._lease_seconds,
        )
        if committed:
            unit.seq += 1
            unit.records += part.records
            unit.bytes += len(part.body)
            unit.resume_token = part.resume_token
            unit.cursor_pending = part.cursor_pending
            return
        self._stopped.set()
        self._delete(part)
        job = jobs_dal.get_job(self._tenant, unit.job_id)
        stored_unit = jobs_dal.get_unit(self._tenant, unit.job_id, unit.unit_id)
        cancelled = job is None or job.status == "cancelled"
        ended = stored_unit is None or stored_unit.status in TERMINAL
        if cancelled and not ended:
            jobs_dal.end_unit(
                self._tenant, unit, status="cancelled", error=None, finished_at=now_iso()
            )
        holder, _ = jobs_dal.lease_holder(self._tenant, unit.source_id)
        if holder != unit.job_id and job is not None and job.status not in TERMINAL:
            self.lease_lost_to = holder or "(none)"

    def _discard(self, part: EncodedPart, stored: Future[Any]) -> None:
        """A part stored (or being stored) that will not be counted: wait, then delete."""
        with contextlib.suppress(Exception):
            stored.result()
        self._delete(part)

    def _delete(self, part: EncodedPart) -> None:
        # Best effort: a part left behind is removed by the engine's sweep.
        with contextlib.suppress(Exception):
            s3.delete(self._bucket, part.key)
