"""PartUploader: concurrent PUTs, checkpoints strictly in order, and what a refusal leaves.

S3 and the DAL are replaced by recording fakes: these tests are about ordering and
clean-up under concurrency, which the integration suite (moto) cannot steer.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from datasources import aws
from datasources.dal.jobs import JobRecord, UnitRecord
from datasources.dal.keys import Scope, Tenant
from datasources.sync import parts
from datasources.sync.parts import EncodedPart, PartUploader

TENANT = Tenant(organization="acme", workspace_id="ws1", scope=Scope.USER, owner="u1")


class FakeS3:
    def __init__(self, slow: dict[str, float] | None = None, fail: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self.slow = slow or {}
        self.fail = fail
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.slow.get(Key, random.uniform(0, 0.01)))
            if Key == self.fail:
                raise ConnectionError("S3 is down")
            with self._lock:
                self.objects[Key] = Body
        finally:
            with self._lock:
                self.in_flight -= 1

    def delete_object(self, Bucket: str, Key: str) -> None:
        with self._lock:
            self.objects.pop(Key, None)
            self.deleted.append(Key)


class FakeDal:
    """The DAL calls PartUploader makes, with a unit whose seq moves as in DynamoDB."""

    def __init__(self, s3: FakeS3, refuse_at: int | None = None, job_status: str = "running"):
        self.s3 = s3
        self.refuse_at = refuse_at
        self.job_status = job_status
        self.stored_seq = 0
        self.stored_status = "running"
        self.committed: list[tuple[int, bool]] = []  # (seq, part already stored?)
        self.ended: list[str] = []
        self.lease_job: str | None = "job_1"

    def checkpoint(self, tenant: Tenant, unit: UnitRecord, **kwargs: Any) -> bool:
        if self.refuse_at is not None and unit.seq >= self.refuse_at:
            return False
        assert unit.seq == self.stored_seq
        key = f"p/part-{unit.seq:05d}.parquet"
        self.committed.append((unit.seq, key in self.s3.objects))
        self.stored_seq += 1
        return True

    def get_job(self, tenant: Tenant, job_id: str) -> JobRecord:
        return JobRecord(
            job_id=job_id,
            status=self.job_status,
            source_ids=["s"],
            options={},
            created_at="2026-01-01T00:00:00Z",
            created_by="u1",
        )

    def get_unit(self, tenant: Tenant, job_id: str, unit_id: str) -> UnitRecord:
        return UnitRecord(
            unit_id=unit_id,
            job_id=job_id,
            source_id="s",
            stream="t",
            seq=self.stored_seq,
            status=self.stored_status,
        )

    def end_unit(self, tenant: Tenant, unit: UnitRecord, *, status: str, **kwargs: Any) -> None:
        self.ended.append(status)

    def lease_holder(self, tenant: Tenant, source_id: str) -> tuple[str | None, int]:
        return self.lease_job, 0


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch):
    def install(s3: FakeS3, dal: FakeDal) -> None:
        monkeypatch.setattr(aws, "client", lambda service: s3)
        for name in ("checkpoint", "get_job", "get_unit", "end_unit", "lease_holder"):
            monkeypatch.setattr(parts.jobs_dal, name, getattr(dal, name))

    return install


def unit() -> UnitRecord:
    return UnitRecord(unit_id="u00000", job_id="job_1", source_id="s", stream="t")


def part(seq: int) -> EncodedPart:
    return EncodedPart(
        seq=seq,
        key=f"p/part-{seq:05d}.parquet",
        body=b"x" * (seq + 1),
        records=10,
        resume_token={"after": [seq]},
        cursor_pending=None,
    )


def test_parts_are_stored_concurrently_and_committed_in_order_after_their_put(fakes):
    # Part 0 is the slowest to store: its checkpoint must still come first.
    s3 = FakeS3(slow={"p/part-00000.parquet": 0.2})
    dal = FakeDal(s3)
    fakes(s3, dal)
    work = unit()
    uploader = PartUploader(TENANT, work, attempt="a1", bucket="b", lease_seconds=60)
    for seq in range(12):
        assert uploader.submit(part(seq))
    assert uploader.finish()
    assert dal.committed == [(seq, True) for seq in range(12)]
    assert s3.max_in_flight > 1
    assert (work.seq, work.records, work.resume_token) == (12, 120, {"after": [11]})


def test_submit_blocks_while_max_in_flight_parts_are_uncommitted(fakes):
    s3 = FakeS3(slow={f"p/part-{seq:05d}.parquet": 0.05 for seq in range(9)})
    dal = FakeDal(s3)
    fakes(s3, dal)
    uploader = PartUploader(
        TENANT, unit(), attempt="a1", bucket="b", lease_seconds=60, max_in_flight=2
    )
    for seq in range(9):
        uploader.submit(part(seq))
    assert uploader.finish()
    assert s3.max_in_flight <= 2


def test_a_cancelled_job_stops_the_work_and_takes_back_every_uncounted_part(fakes):
    s3 = FakeS3()
    dal = FakeDal(s3, refuse_at=3, job_status="cancelled")
    fakes(s3, dal)
    work = unit()
    uploader = PartUploader(TENANT, work, attempt="a1", bucket="b", lease_seconds=60)
    accepted = [uploader.submit(part(seq)) for seq in range(10)]
    assert not uploader.finish()
    assert accepted[:3] == [True] * 3 and accepted[-1] is False
    # Parts 0-2 were counted and stay; whatever was stored after them is gone.
    assert sorted(s3.objects) == [f"p/part-{seq:05d}.parquet" for seq in range(3)]
    assert dal.ended == ["cancelled"]
    assert work.seq == 3


def test_a_refused_run_deletes_only_its_own_uncounted_parts(fakes):
    # Refused while the job runs (another delivery moved the unit on): the parts this
    # run stored past its last count carry this run's own keys, so nobody can count
    # them; they go, and the counted ones stay.
    s3 = FakeS3()
    dal = FakeDal(s3, refuse_at=2)
    fakes(s3, dal)
    uploader = PartUploader(TENANT, unit(), attempt="a1", bucket="b", lease_seconds=60)
    for seq in range(5):
        if not uploader.submit(part(seq)):
            break
    assert not uploader.finish()
    assert sorted(s3.objects) == [f"p/part-{seq:05d}.parquet" for seq in range(2)]
    assert dal.ended == [] and uploader.lease_lost_to is None


def test_a_refusal_after_the_lease_was_taken_names_the_new_holder(fakes):
    s3 = FakeS3()
    dal = FakeDal(s3, refuse_at=1)
    dal.lease_job = "job_2"
    fakes(s3, dal)
    uploader = PartUploader(TENANT, unit(), attempt="a1", bucket="b", lease_seconds=60)
    for seq in range(3):
        if not uploader.submit(part(seq)):
            break
    assert not uploader.finish()
    assert uploader.lease_lost_to == "job_2"
    assert sorted(s3.objects) == ["p/part-00000.parquet"]


def test_an_s3_failure_is_raised_in_the_caller_and_nothing_after_it_is_committed(fakes):
    s3 = FakeS3(fail="p/part-00002.parquet")
    dal = FakeDal(s3)
    fakes(s3, dal)
    uploader = PartUploader(TENANT, unit(), attempt="a1", bucket="b", lease_seconds=60)
    with pytest.raises(ConnectionError, match="S3 is down"):
        for seq in range(10):
            uploader.submit(part(seq))
        uploader.finish()
    uploader.close()
    assert [seq for seq, _ in dal.committed] == [0, 1]
    # Nothing stored after the failure is left behind uncounted.
    assert sorted(s3.objects) == [f"p/part-{seq:05d}.parquet" for seq in range(2)]


def test_a_checkpoint_names_the_attempt_of_each_counted_part() -> None:
    work = UnitRecord(
        unit_id="u", job_id="j", source_id="s", stream="t", seq=5, segments=[[2, "a"], [4, "b"]]
    )
    # Parts 0-1 predate recorded attempts (keys without one); 2-3 are a's, 4 is b's.
    assert [work.attempt_of(seq) for seq in range(6)] == ["", "", "a", "a", "b", None]
