"""Issue 17's fault cases, each run in-process against moto with the fault hook.

Every case ends with the data checks (tests/faults/checks.py): rows landed == source
rows, distinct ids == rows, no part outside the manifest, or, for a job that cannot
finish, a clear error and no uncounted part; and a terminal status within the bound
the reaper guarantees (lease period + one reaper interval).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from datasources.dal import jobs as jobs_dal
from datasources.dal.keys import source_sk
from datasources.errors import StorageError
from local.context import FakeLambdaContext
from tests.conftest import Stack
from tests.faults.checks import (
    TENANT,
    assert_clean_end,
    assert_exactly_once,
    job_status,
    parts_under,
)
from tests.faults.hook import Faults, transaction_touching, update_setting
from tests.integration.test_sync_engine import connect_file, csv_rows, sync


def start_chained(stack: Stack, name: str, rows: int, batch: int) -> tuple[str, str]:
    source_id = connect_file(stack, f"uploads/acme/{name}/orders.csv", csv_rows(1, rows + 1))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    started = sync(stack, source_id, batch_size=batch)
    assert started.status_code == 202, started.body
    return source_id, started.data["job_id"]


def reaper(stack: Stack, event: dict[str, Any]) -> Any:
    return stack.handler("sync_reaper")(event, FakeLambdaContext(frozen=True))


def dead_letters(stack: Stack) -> list[dict[str, Any]]:
    return list(
        stack.sqs.receive_message(
            QueueUrl=stack.resources.dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
    )


# 1 ---------------------------------------------------------------------------------


def test_1_a_lost_reply_on_a_checkpoint_does_not_stall_the_unit(
    stack: Stack, faulty: Faults
) -> None:
    _, job_id = start_chained(stack, "c1", 3000, 300)
    # The checkpoint of part 2 goes through; its reply is lost; the SDK sends it again.
    faulty.lose_reply_of.append(transaction_touching("'N': '3'"))
    stack.drain(remaining_ms=60_000)
    assert faulty.injected == 1
    assert_exactly_once(stack, job_id, list(range(1, 3001)))


# 2 ---------------------------------------------------------------------------------


def test_2_a_lost_reply_on_the_final_update_frees_the_source(stack: Stack, faulty: Faults) -> None:
    source_id, job_id = start_chained(stack, "c2", 600, 300)
    faulty.lose_reply_of.append(update_setting("completed"))
    stack.drain(remaining_ms=60_000)
    assert faulty.injected == 1
    assert_exactly_once(stack, job_id, list(range(1, 601)))
    # The next sync of the source starts at once (no 409 until the lease expires).
    stack.configure(SYNC_TIME_BUDGET_SECONDS=20)
    assert sync(stack, source_id, incremental=False).status_code == 200


# 3 ---------------------------------------------------------------------------------


def test_3_a_message_dead_lettered_by_crashes_fails_its_job_cleanly(
    stack: Stack, faulty: Faults
) -> None:
    _, job_id = start_chained(stack, "c3", 900, 300)
    # A worker that dies on the message (out of memory, timeout) never answers: SQS
    # hands it out again until maxReceiveCount (3), then moves it to the DLQ.
    for _ in range(3):
        assert stack.receive(1)
    assert not stack.receive(1)
    (dead,) = dead_letters(stack)
    assert job_status(stack, job_id)["status"] == "running"
    reaper(stack, stack.sqs_event(dead))
    job = assert_clean_end(stack, job_id)
    assert "gave up" in job["sources"][0]["streams"][0]["error"]


def test_3b_a_job_whose_worker_vanished_ends_within_the_lease_plus_one_interval(
    stack: Stack, faulty: Faults
) -> None:
    from datasources.services.reaper import reap

    _, job_id = start_chained(stack, "c3b", 900, 300)
    stack.receive(1)  # taken by a worker that is SIGKILLed: no message, no progress
    lease = 900
    assert reap(now=time.time() + lease - 5) == []  # within the lease: still live
    assert reap(now=time.time() + lease + 5) == [job_id]  # the next run ends it
    job = assert_clean_end(stack, job_id)
    assert "stalled" in job["error"]


# 4 ---------------------------------------------------------------------------------


def test_4_a_job_that_lost_its_lease_commits_nothing_and_is_superseded(
    stack: Stack, faulty: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_id = connect_file(stack, "uploads/acme/c4/orders.csv", csv_rows(1, 1001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    first = sync(stack, source_id, batch_size=500).data["job_id"]
    real_complete = jobs_dal.complete_unit
    crashes = {"n": 0}

    def crash_once(*args: Any, **kwargs: Any) -> bool:
        crashes["n"] += 1
        if crashes["n"] == 1:
            raise StorageError("the worker died before its final commit")
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(jobs_dal, "complete_unit", crash_once)
    message = stack.receive(1)[0]
    stack.deliver(message)  # every part counted, the final commit lost
    # The lease lapses; a second job takes the source and completes.
    stack.ddb.update_item(
        TableName=stack.resources.table_name,
        Key={"pk": {"S": TENANT.pk}, "sk": {"S": source_sk(source_id)}},
        UpdateExpression="SET lease_expires = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    stack.configure(SYNC_TIME_BUDGET_SECONDS=20)
    second = sync(stack, source_id, batch_size=500).data["job_id"]
    assert_exactly_once(stack, second, list(range(1, 1001)))
    # The first job's retry arrives late: it finds nothing left to read and tries
    # to commit its stream state.
    assert stack.drain() >= 1
    state = jobs_dal.get_stream_state(TENANT, source_id, "orders")
    assert state is not None and state.last_job_id == second
    job = assert_clean_end(stack, first)
    assert "superseded" in job["error"]


# 5 ---------------------------------------------------------------------------------


def test_5_two_workers_on_one_unit_never_replace_a_counted_part(
    stack: Stack, faulty: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id = start_chained(stack, "c5", 1000, 500)
    message = stack.receive(1)[0]
    from datasources import aws

    s3 = aws.client("s3")
    real_put = s3.put_object
    first_put = threading.Event()
    release = threading.Event()
    held = {"done": False}

    def slow_first_put(**kwargs: Any) -> Any:
        if "/part-" in kwargs["Key"] and not held["done"]:
            held["done"] = True
            first_put.set()
            release.wait(30)  # the first worker stalls here, past its visibility
        return real_put(**kwargs)

    monkeypatch.setattr(s3, "put_object", slow_first_put)
    loser = threading.Thread(
        target=stack.handler("sync_worker"),
        args=(stack.sqs_event(message), FakeLambdaContext(timeout_seconds=60, frozen=True)),
    )
    loser.start()
    assert first_put.wait(30)
    # Meanwhile rows 1-10 are deleted at the source and a second worker gets the unit.
    stack.s3.put_object(
        Bucket=stack.bucket, Key="uploads/acme/c5/orders.csv", Body=csv_rows(11, 1001)
    )
    message["Attributes"]["ApproximateReceiveCount"] = "2"
    stack.handler("sync_worker")(
        stack.sqs_event(message), FakeLambdaContext(timeout_seconds=60, frozen=True)
    )
    release.set()
    loser.join(60)
    stack.drain(remaining_ms=60_000)
    assert_exactly_once(stack, job_id, list(range(11, 1001)))


# 6 ---------------------------------------------------------------------------------


def test_6_a_failed_job_leaves_no_uncounted_part(
    stack: Stack, faulty: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id = start_chained(stack, "c6", 3000, 200)
    real_checkpoint = jobs_dal.checkpoint
    calls = {"n": 0}

    def dynamodb_gone_after_two(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] > 2:
            raise StorageError("could not checkpoint the sync")
        return bool(real_checkpoint(*args, **kwargs))

    monkeypatch.setattr(jobs_dal, "checkpoint", dynamodb_gone_after_two)
    for _ in range(10):
        if not stack.drain(remaining_ms=60_000, max_rounds=10):
            break
    assert_clean_end(stack, job_id)


def test_6b_cleanup_mid_sync_leaves_no_uncounted_part(stack: Stack, faulty: Faults) -> None:
    source_id, job_id = start_chained(stack, "c6b", 2000, 200)
    stack.deliver(stack.receive(1)[0], remaining_ms=1000)
    assert stack.call("cleanup", body={"source_ids": [source_id]}).data["cancelled_job_ids"]
    stack.drain(remaining_ms=60_000)
    assert_clean_end(stack, job_id)


# 8 ---------------------------------------------------------------------------------


def test_8_a_transient_failure_inline_hands_the_unit_to_the_queue(
    stack: Stack, faulty: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_id = connect_file(stack, "uploads/acme/c8/orders.csv", csv_rows(1, 1001))
    real_checkpoint = jobs_dal.checkpoint
    calls = {"n": 0}

    def killed_once(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            raise StorageError("could not checkpoint the sync")
        return bool(real_checkpoint(*args, **kwargs))

    monkeypatch.setattr(jobs_dal, "checkpoint", killed_once)
    started = sync(stack, source_id, batch_size=200)
    assert started.data["status"] == "running", started.body
    stack.drain(remaining_ms=60_000)
    assert_exactly_once(stack, started.data["job_id"], list(range(1, 1001)))


# 9 ---------------------------------------------------------------------------------


def test_9_transient_failures_after_progress_do_not_use_up_the_attempts(
    stack: Stack, faulty: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job_id = start_chained(stack, "c9", 3000, 200)
    real_checkpoint = jobs_dal.checkpoint
    calls = {"n": 0}

    def every_third_fails(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise StorageError("could not checkpoint the sync")
        return bool(real_checkpoint(*args, **kwargs))

    monkeypatch.setattr(jobs_dal, "checkpoint", every_third_fails)
    stack.drain(remaining_ms=60_000)  # one long invocation per message, as deployed
    assert calls["n"] >= 9
    assert_exactly_once(stack, job_id, list(range(1, 3001)))


# 1 and 3, at a rate --------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_resets_and_lost_replies_at_a_rate_land_every_row_once(
    stack: Stack, faulty: Faults, rate: float
) -> None:
    _, job_id = start_chained(stack, f"rate{int(rate * 100)}", 20_000, 500)
    faulty.reset_rate = rate
    faulty.lost_reply_rate = rate
    for _ in range(20):
        if not stack.drain(remaining_ms=60_000):
            break
    assert faulty.injected > 0
    job = job_status(stack, job_id)
    if job["status"] == "completed":
        assert_exactly_once(stack, job_id, list(range(1, 20_001)))
    else:
        assert_clean_end(stack, job_id)
    assert parts_under(stack, job_id)


@pytest.mark.slow
@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_a_million_row_chained_sync_under_faults_lands_every_row_once_or_fails_clean(
    stack: Stack, faulty: Faults, rate: float
) -> None:
    rows = 1_000_000
    _, job_id = start_chained(stack, f"million{int(rate * 100)}", rows, 10_000)
    faulty.reset_rate = rate
    faulty.lost_reply_rate = rate
    started = time.monotonic()
    # Short invocations (3 s, 1 s reserve): the sync is chained through many messages.
    for _ in range(50):
        if not stack.drain(remaining_ms=3000):
            break
    assert faulty.injected > 0
    job = job_status(stack, job_id)
    assert job["status"] != "running", "left running"
    if job["status"] == "completed":
        assert_exactly_once(stack, job_id, list(range(1, rows + 1)))
    else:
        assert_clean_end(stack, job_id)
    print(
        f"rate {rate}: {job['status']} in {time.monotonic() - started:.0f} s, "
        f"{faulty.injected} faults injected"
    )
