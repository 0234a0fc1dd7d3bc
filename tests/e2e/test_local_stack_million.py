"""End to end over HTTP against the local stack: a million-row file through the queue.

Given a gzip CSV of 1,000,000 rows uploaded under `uploads/acme/`, when a client syncs
it with batches of 50,000 on a stack whose inline budget is 1 s (tests/e2e/conftest.py
starts it with SyncTimeBudgetSeconds=1), then POST /sync answers `running`, the worker
finishes the job through the queue while GET /sync/{job_id} shows the count rising, and
the parts hold every id exactly once.
"""

from __future__ import annotations

import gzip
import io
import time
import uuid
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.e2e.helpers import TERMINAL, connect, job_status, only_stream, part_keys, post

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 1_000_000
BATCH = 20_000
TIMEOUT_SECONDS = 170


def million_rows_csv_gz() -> bytes:
    lines = ["id,grp,amount,name,updated_at"]
    lines.extend(
        f"{i},{i % 97},{i % 10_000}.{i % 100:02d},n{i},2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
        for i in range(1, ROWS + 1)
    )
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)


@pytest.mark.timeout(240)
def test_a_million_rows_sync_through_the_queue_with_rising_progress(
    local_stack: LocalStack,
) -> None:
    stack = local_stack
    workspace = f"ws_e2e_{uuid.uuid4().hex[:10]}"
    began = time.monotonic()
    key = f"uploads/acme/{workspace}/million.csv.gz"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=million_rows_csv_gz())
    source = connect(stack, workspace, "file", "million", {"url": f"s3://{stack.bucket}/{key}"})

    started = post(
        stack,
        workspace,
        "sync",
        {"source_ids": [source["id"]], "sync_options": {"batch_size": BATCH}},
    )
    assert started.status_code == 202, started.text
    first = started.json()["data"]
    assert first["status"] == "running", first
    assert first["records_processed"] < ROWS
    job_id = first["job_id"]

    # Poll the job: its count never goes down and is seen rising before completion.
    seen = [int(first["records_processed"])]
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        job = job_status(stack, workspace, job_id)
        count = int(job["records_processed"])
        assert count >= seen[-1], f"progress went back: {seen[-1]} -> {count}"
        if job["status"] in TERMINAL:
            break
        seen.append(count)
        assert time.monotonic() < deadline, f"job still running at {count}:\n{stack.log_tail()}"
        time.sleep(0.05)
    synced = time.monotonic()
    assert job["status"] == "completed", job
    assert job["records_processed"] == ROWS
    rising = sorted(set(seen))
    assert len(rising) >= 3, f"progress seen before completion: {rising}"
    # The last part's checkpoint lands just before the stream completes, so a poll may
    # see the full count while the job is still running; never more than the total.
    assert all(0 <= value <= ROWS for value in rising)
    stream = only_stream(job)
    assert stream["records"] == ROWS and stream["parts"] == ROWS // BATCH

    # Every id exactly once, read part by part (the `id` column only).
    bucket, parts = part_keys(stack, stream["output"])
    assert len(parts) == ROWS // BATCH
    ids = pa.concat_arrays(
        [
            pq.read_table(
                io.BytesIO(stack.s3.get_object(Bucket=bucket, Key=part)["Body"].read()),
                columns=["id"],
            )
            .column("id")
            .combine_chunks()
            for part in parts
        ]
    )
    assert len(ids) == ROWS
    assert pc.count_distinct(ids).as_py() == ROWS, "duplicated ids"
    assert pc.min(ids).as_py() == 1 and pc.max(ids).as_py() == ROWS
    print(
        f"\n1,000,000 rows: upload+connect+sync {synced - began:.1f} s, "
        f"verify {time.monotonic() - synced:.1f} s, progress seen {rising}"
    )
