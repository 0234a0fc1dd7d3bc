"""The data checks every fault case ends with: count rows, not status codes."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from datasources.dal import jobs as jobs_dal
from datasources.dal.keys import Tenant
from datasources.models.common import Scope
from tests.conftest import Stack

TENANT = Tenant("acme", "ws_demo", Scope.USER, "user-1")


def job_status(stack: Stack, job_id: str) -> dict[str, Any]:
    response = stack.call("status", path={"job_id": job_id}, query={"scope": "user"})
    assert response.status_code == 200, response.body
    return dict(response.data)


def parts_under(stack: Stack, job_id: str) -> list[str]:
    return sorted(k for k in stack.objects() if f"/job={job_id}/part-" in k)


def manifest_files(stack: Stack, job_id: str) -> list[str]:
    files: list[str] = []
    for key in stack.objects():
        if f"/job={job_id}/_manifest.json" in key:
            body = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
            files.extend(f["key"] for f in json.loads(body)["files"])
    return sorted(files)


def rows_in(stack: Stack, keys: list[str]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for key in keys:
        body = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    return rows


def assert_exactly_once(stack: Stack, job_id: str, expected_ids: list[int]) -> None:
    """Completed; rows landed == source rows; distinct ids == rows; no part outside
    the manifest."""
    job = job_status(stack, job_id)
    assert job["status"] == "completed", job
    parts = parts_under(stack, job_id)
    assert parts == manifest_files(stack, job_id), "a part outside the manifest"
    ids = [r["id"] for r in rows_in(stack, parts)]
    duplicated = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicated, f"duplicated ids: {duplicated[:10]}"
    assert sorted(ids) == sorted(expected_ids)
    assert job["records_processed"] == len(expected_ids)


def assert_clean_end(stack: Stack, job_id: str) -> dict[str, Any]:
    """Ended (not completed) with an error, and every part left is one its checkpoint
    counted: no uncounted part, no manifest of an unfinished unit."""
    job = job_status(stack, job_id)
    assert job["status"] in {"failed", "cancelled"}, job
    assert job["error"], job
    counted: set[str] = set()
    for unit in jobs_dal.get_units(TENANT, job_id):
        for key in parts_under(stack, job_id):
            from datasources.sync.writer import part_id

            seq, attempt = part_id(key)
            if key.startswith(unit.output_prefix + "/") and unit.attempt_of(seq) == attempt:
                counted.add(key)
    assert set(parts_under(stack, job_id)) == counted, "uncounted parts left"
    assert len(rows_in(stack, sorted(counted))) == job["records_processed"]
    return job
