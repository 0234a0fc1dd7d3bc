"""The sync engine's promises, proven by counting every record in the landing zone.

File sources in emulated S3 drive these tests; the database suite repeats the cursor
boundary case against a real PostgreSQL server.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest

from datasources.dal import jobs as jobs_dal
from tests.conftest import Stack, mint


def csv_rows(start: int, stop: int, *, extra: bool = False) -> bytes:
    header = "id,name,updated_at" + (",region" if extra else "") + "\n"
    lines = [
        f"{i},row-{i},2024-03-{1 + i % 28:02d}T08:00:00Z" + (f",eu-{i % 3}" if extra else "")
        for i in range(start, stop)
    ]
    return (header + "\n".join(lines) + "\n").encode()


def connect_file(stack: Stack, key: str, body: bytes, *, url: str | None = None) -> str:
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    config = {"url": url or f"s3://{stack.bucket}/{key}"}
    response = stack.call(
        "connect",
        body={
            "sources": [
                {
                    "type": "file",
                    "name": key.removeprefix("uploads/acme/").replace("/", "-"),
                    "connection_config": config,
                }
            ]
        },
    )
    assert response.status_code == 201, response.body
    return str(response.data["connected_sources"][0]["id"])


def sync(stack: Stack, source_id: str, **options: Any) -> Any:
    return stack.call("sync", body={"source_ids": [source_id], "sync_options": options})


def rows_of_job(stack: Stack, source_id: str, job_id: str) -> list[dict[str, Any]]:
    keys = [
        k
        for k in stack.objects(f"org=acme/workspace=ws_demo/source={source_id}/")
        if f"/job={job_id}/part-" in k
    ]
    rows: list[dict[str, Any]] = []
    for key in sorted(keys):
        rows.extend(stack.read_parts(key))
    return rows


def status(stack: Stack, job_id: str) -> dict[str, Any]:
    response = stack.call("status", path={"job_id": job_id}, query={"scope": "user"})
    assert response.status_code == 200, response.body
    return dict(response.data)


def assert_exact(rows: list[dict[str, Any]], expected_ids: range) -> None:
    counts = Counter(r["id"] for r in rows)
    duplicates = [i for i, n in counts.items() if n > 1]
    assert not duplicates, f"duplicated ids: {duplicates[:10]}"
    assert sorted(counts) == list(expected_ids)


def test_a_sync_larger_than_the_time_budget_completes_through_the_chain(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/big/orders.csv", csv_rows(1, 5001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    started = sync(stack, source_id, batch_size=400)
    assert started.status_code == 202
    job = started.data
    assert job["status"] == "running" and job["status_url"].endswith(
        f"/sync/{job['job_id']}?scope=user"
    )
    # 1 s of remaining time and a 1 s reserve: each invocation does one chunk, then chains.
    invocations = stack.drain(remaining_ms=1000)
    assert invocations >= 12
    final = status(stack, job["job_id"])
    assert final["status"] == "completed" and final["records_processed"] == 5000
    assert final["sources"][0]["streams"][0]["parts"] == 13
    assert_exact(rows_of_job(stack, source_id, job["job_id"]), range(1, 5001))


def test_a_worker_killed_between_part_and_checkpoint_is_redelivered_without_duplicates(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_id = connect_file(stack, "uploads/acme/crash/orders.csv", csv_rows(1, 2001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0, RETRY_DELAY_SECONDS=0)
    job_id = sync(stack, source_id, batch_size=300).data["job_id"]
    real_checkpoint = jobs_dal.checkpoint
    calls = {"n": 0}

    def crash_on_third(*args: Any, **kwargs: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash after the part was written")
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(jobs_dal, "checkpoint", crash_on_third)
    message = stack.receive(1)[0]
    first = stack.deliver(message, remaining_ms=60_000)
    # Two parts were counted before the crash: that progress hands the unit to a fresh
    # continuation (its receive count starts again) instead of failing the message.
    assert not first.get("batchItemFailures")
    # A late redelivery of the old message is stale and does nothing.
    message["Attributes"]["ApproximateReceiveCount"] = "2"
    second = stack.deliver(message, remaining_ms=60_000)
    assert not second.get("batchItemFailures")
    stack.drain()
    final = status(stack, job_id)
    assert final["status"] == "completed" and final["records_processed"] == 2000
    assert_exact(rows_of_job(stack, source_id, job_id), range(1, 2001))


def test_a_part_nobody_counted_is_left_out_of_the_manifest_and_deleted(stack: Stack) -> None:
    # A delivery that stored part 7 and died before its checkpoint, after which the
    # source shrank: the run that completes the unit never writes part 7 again.
    source_id = connect_file(stack, "uploads/acme/stale/orders.csv", csv_rows(1, 1001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job_id = sync(stack, source_id, batch_size=500).data["job_id"]
    stack.deliver(stack.receive(1)[0], remaining_ms=1000)  # part 0, then a continuation
    first = next(k for k in stack.objects() if f"job={job_id}/part-00000" in k)
    prefix = first.rsplit("/", 1)[0]
    stale = f"{prefix}/part-00007-deadbeef.parquet"
    stack.s3.put_object(Bucket=stack.bucket, Key=stale, Body=b"not counted")
    stack.drain(remaining_ms=60_000)
    final = status(stack, job_id)
    assert final["status"] == "completed" and final["records_processed"] == 1000
    assert stale not in stack.objects(prefix)
    manifest = json.loads(
        stack.s3.get_object(Bucket=stack.bucket, Key=f"{prefix}/_manifest.json")["Body"].read()
    )
    names = [f["key"].rsplit("/", 1)[1] for f in manifest["files"]]
    assert [n.split("-")[1] for n in names] == ["00000", "00001"]
    assert sorted(stack.objects(f"{prefix}/part-")) == sorted(f["key"] for f in manifest["files"])
    assert_exact(rows_of_job(stack, source_id, job_id), range(1, 1001))


def test_the_same_message_delivered_twice_writes_no_duplicate(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/dup/orders.csv", csv_rows(1, 1501))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job_id = sync(stack, source_id, batch_size=500).data["job_id"]
    message = stack.receive(1)[0]
    stack.deliver(message, remaining_ms=1000)
    stack.deliver(message, remaining_ms=1000)  # the duplicate
    stack.drain(remaining_ms=1000)
    stack.deliver(message, remaining_ms=1000)  # and once more after completion
    final = status(stack, job_id)
    assert final["status"] == "completed" and final["records_processed"] == 1500
    assert_exact(rows_of_job(stack, source_id, job_id), range(1, 1501))


def test_a_source_failing_mid_sync_fails_the_job_keeps_state_and_the_next_run_recovers(
    stack: Stack,
) -> None:
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/multi/a.csv", Body=csv_rows(1, 301))
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key="uploads/acme/multi/b.csv",
        Body=b'id,name,updated_at\n1,x\n"unterminated\n',
    )
    source_id = connect_file(
        stack,
        "uploads/acme/multi/a.csv",
        csv_rows(1, 301),
        url=f"s3://{stack.bucket}/uploads/acme/multi/",
    )
    first = sync(stack, source_id, batch_size=100)
    job = first.data
    assert job["status"] == "failed", job
    stream = job["sources"][0]["streams"][0]
    assert stream["status"] == "failed" and stream["error"]
    assert "b.csv" in stream["error"] or "multi" in stream["error"]
    assert jobs_dal.get_stream_state.__name__  # state is read through the DAL below
    from datasources.dal.keys import Tenant
    from datasources.models.common import Scope

    tenant = Tenant("acme", "ws_demo", Scope.USER, "user-1")
    assert jobs_dal.get_stream_state(tenant, source_id, stream["stream"]) is None
    # The source is fixed; the next run recovers every row, none skipped.
    stack.s3.put_object(
        Bucket=stack.bucket, Key="uploads/acme/multi/b.csv", Body=csv_rows(301, 401)
    )
    second = sync(stack, source_id, batch_size=100).data
    assert second["status"] == "completed"
    assert_exact(rows_of_job(stack, source_id, second["job_id"]), range(1, 401))


def test_retries_exhausted_mark_the_job_failed_and_send_the_message_to_the_dlq(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_id = connect_file(stack, "uploads/acme/dlq/orders.csv", csv_rows(1, 101))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job_id = sync(stack, source_id, batch_size=50).data["job_id"]
    stack.s3.delete_object(
        Bucket=stack.bucket, Key="uploads/acme/dlq/orders.csv"
    )  # the source breaks
    message = stack.receive(1)[0]
    for attempt in (1, 2, 3):
        message["Attributes"]["ApproximateReceiveCount"] = str(attempt)
        result = stack.deliver(message)
        # Retried while attempts remain; the last one is given up explicitly: the unit
        # fails and the message goes to the dead-letter queue (not left to SQS).
        expected = [] if attempt == 3 else [{"itemIdentifier": message["MessageId"]}]
        assert result["batchItemFailures"] == expected
        running = status(stack, job_id)
        assert running["status"] == ("failed" if attempt == 3 else "running")
    final = status(stack, job_id)
    assert (
        final["error"] and "gave up after 3 attempts" in final["sources"][0]["streams"][0]["error"]
    )
    dead = stack.sqs.receive_message(QueueUrl=stack.resources.dlq_url).get("Messages", [])
    assert [json.loads(m["Body"])["job_id"] for m in dead] == [job_id]
    # The source is free again: a new sync may start.
    stack.s3.put_object(
        Bucket=stack.bucket, Key="uploads/acme/dlq/orders.csv", Body=csv_rows(1, 101)
    )
    stack.configure(SYNC_TIME_BUDGET_SECONDS=20)
    assert sync(stack, source_id).data["status"] == "completed"


def test_two_syncs_of_one_source_make_one_job_and_409_names_it(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/lease/orders.csv", csv_rows(1, 1001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    first = sync(stack, source_id, batch_size=100)
    second = sync(stack, source_id, batch_size=100)
    assert second.status_code == 409
    assert second.data["running_job_id"] == first.data["job_id"]
    assert first.data["job_id"] in second.body["message"]


def test_concurrent_syncs_race_for_the_lease_and_exactly_one_wins(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/race/orders.csv", csv_rows(1, 501))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def go() -> None:
        barrier.wait()
        codes.append(sync(stack, source_id, batch_size=100).status_code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202, 409]


def test_an_expired_lease_of_a_crashed_job_does_not_lock_the_source(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/expire/orders.csv", csv_rows(1, 201))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0, JOB_LEASE_SECONDS=-10)
    sync(stack, source_id, batch_size=100)  # its worker never runs: a crashed job
    stack.configure(SYNC_TIME_BUDGET_SECONDS=20, JOB_LEASE_SECONDS=900)
    assert sync(stack, source_id, batch_size=100).status_code == 200


def test_cleanup_during_a_running_sync_cancels_it_and_no_part_is_written_after(
    stack: Stack,
) -> None:
    source_id = connect_file(stack, "uploads/acme/cancel/orders.csv", csv_rows(1, 2001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job_id = sync(stack, source_id, batch_size=200).data["job_id"]
    stack.deliver(stack.receive(1)[0], remaining_ms=1000)  # one chunk, then a continuation
    before = [k for k in stack.objects() if f"job={job_id}" in k]
    cleanup = stack.call("cleanup", body={"source_ids": [source_id]})
    assert cleanup.data["cancelled_job_ids"] == [job_id]
    stack.drain(remaining_ms=1000)
    after = [k for k in stack.objects() if f"job={job_id}" in k]
    assert after == before and len(before) == 1
    assert status(stack, job_id)["status"] == "cancelled"


def test_incremental_runs_land_only_new_rows_and_full_refresh_is_a_new_snapshot(
    stack: Stack,
) -> None:
    # File cursors are compared by value (files carry no key order): rows newer than the
    # committed cursor land, older ones do not.
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/inc/a.csv", Body=csv_rows(1, 11))
    source_id = connect_file(
        stack,
        "uploads/acme/inc/a.csv",
        csv_rows(1, 11),
        url=f"s3://{stack.bucket}/uploads/acme/inc/",
    )
    first = sync(stack, source_id).data
    assert first["records_processed"] == 10
    newer = b"id,name,updated_at\n100,late,2024-04-01T00:00:00Z\n101,later,2024-04-02T00:00:00Z\n"
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/inc/b.csv", Body=newer)
    second = sync(stack, source_id).data
    assert second["records_processed"] == 2
    assert sorted(r["id"] for r in rows_of_job(stack, source_id, second["job_id"])) == [100, 101]
    full = sync(stack, source_id, incremental=False).data
    assert full["records_processed"] == 12
    manifest_key = next(k for k in stack.objects() if f"job={full['job_id']}/_manifest.json" in k)
    manifest = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=manifest_key)["Body"].read())
    assert manifest["mode"] == "full_refresh"
    assert manifest["latest_complete_snapshot_job_id"] == full["job_id"]
    # The state survived the full refresh; a reset makes the next incremental run start over.
    assert sync(stack, source_id).data["records_processed"] == 0
    assert sync(stack, source_id, reset_state=True).data["records_processed"] == 12


def test_a_column_added_between_runs_is_carried_into_parts_and_the_manifest(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/drift/orders.csv", csv_rows(1, 21))
    sync(stack, source_id, incremental=False)
    stack.s3.put_object(
        Bucket=stack.bucket, Key="uploads/acme/drift/orders.csv", Body=csv_rows(1, 21, extra=True)
    )
    job = sync(stack, source_id, incremental=False).data
    rows = rows_of_job(stack, source_id, job["job_id"])
    assert len(rows) == 20 and rows[0]["region"].startswith("eu-")
    manifest_key = next(k for k in stack.objects() if f"job={job['job_id']}/_manifest.json" in k)
    manifest = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=manifest_key)["Body"].read())
    assert manifest["schema_changes"]["added"] == ["region"]


def test_json_lines_output_on_request(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/jsonl/orders.csv", csv_rows(1, 51))
    job = sync(stack, source_id, format="jsonl", batch_size=20).data
    keys = [k for k in stack.objects() if f"job={job['job_id']}/part-" in k]
    assert len(keys) == 3 and all(k.endswith(".jsonl.gz") for k in keys)
    assert_exact(rows_of_job(stack, source_id, job["job_id"]), range(1, 51))


def test_streams_option_selects_and_unknown_streams_are_refused(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/pick/orders.csv", csv_rows(1, 11))
    assert sync(stack, source_id, streams=["nope"]).status_code == 422
    assert sync(stack, source_id, streams=["orders"]).data["records_processed"] == 10


def test_sync_is_scoped_to_the_tenant_and_no_message_carries_a_secret(stack: Stack) -> None:
    source_id = connect_file(stack, "uploads/acme/tenant/orders.csv", csv_rows(1, 101))
    assert (
        stack.call("sync", body={"source_ids": [source_id]}, token=mint(org="other")).status_code
        == 404
    )
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    sync(stack, source_id, batch_size=10)
    body = stack.receive(1)[0]["Body"]
    assert set(json.loads(body)) == {"job_id", "pk", "unit_id", "seq"}
