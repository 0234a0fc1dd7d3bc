"""Small helpers shared by the end-to-end suites: the envelope, job polling, parts in S3."""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import requests

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

TERMINAL = {"completed", "failed", "cancelled", "partial"}
HTTP_TIMEOUT = 60


def envelope(response: requests.Response, status: int) -> Any:
    """The `data` of a response after checking its status code and envelope."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"status", "message", "data"}, body
    assert body["status"] == ("success" if status < 400 else "error"), body
    return body["data"]


def api(stack: LocalStack, workspace: str) -> str:
    return f"{stack.base_url}/{workspace}"


def post(stack: LocalStack, workspace: str, endpoint: str, body: Any, **kw: Any) -> Any:
    return requests.post(
        f"{api(stack, workspace)}/{endpoint}",
        headers=kw.pop("headers", None) or stack.headers(),
        json=body,
        timeout=HTTP_TIMEOUT,
        **kw,
    )


def get(stack: LocalStack, workspace: str, endpoint: str, params: dict[str, str]) -> Any:
    return requests.get(
        f"{api(stack, workspace)}/{endpoint}",
        headers=stack.headers(),
        params=params,
        timeout=HTTP_TIMEOUT,
    )


def connect(stack: LocalStack, workspace: str, source_type: str, name: str, config: Any) -> Any:
    """Connect one source; returns it as the API answered."""
    (source,) = envelope(
        post(
            stack,
            workspace,
            "connect",
            {"sources": [{"type": source_type, "name": name, "connection_config": config}]},
        ),
        201,
    )["connected_sources"]
    return source


def job_status(stack: LocalStack, workspace: str, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = envelope(
        get(stack, workspace, f"sync/{job_id}", {"scope": "user"}),
        200,
    )
    return job


def wait_for_job(
    stack: LocalStack, workspace: str, job_id: str, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = job_status(stack, workspace, job_id)
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job['status']}:\n{stack.log_tail()}")
        time.sleep(0.3)


def sync(stack: LocalStack, workspace: str, source_id: str, **options: Any) -> dict[str, Any]:
    """POST /sync for one source and wait for the job to end; returns its final status."""
    response = post(stack, workspace, "sync", {"source_ids": [source_id], "sync_options": options})
    assert response.status_code in {200, 202}, response.text
    return wait_for_job(stack, workspace, response.json()["data"]["job_id"])


def only_stream(job: dict[str, Any]) -> dict[str, Any]:
    ((stream,),) = [source["streams"] for source in job["sources"]]
    return dict(stream)


def part_keys(stack: LocalStack, output: str, suffix: str = ".parquet") -> tuple[str, list[str]]:
    """(bucket, sorted part keys) under a stream's `output` (`s3://bucket/prefix/`)."""
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    keys: list[str] = []
    paginator = stack.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return bucket, sorted(
        k for k in keys if k.rsplit("/", 1)[-1].startswith("part-") and k.endswith(suffix)
    )


def parquet_table(
    stack: LocalStack, output: str, columns: list[str] | None = None
) -> tuple[pa.Table, int]:
    """The parts under `output` as one Arrow table (key order), and how many parts."""
    bucket, parts = part_keys(stack, output)
    assert parts, f"no Parquet parts under {output}"
    tables = [
        pq.read_table(
            io.BytesIO(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read()),
            columns=columns,
        )
        for key in parts
    ]
    return pa.concat_tables(tables, promote_options="default"), len(parts)


def manifest(stack: LocalStack, output: str) -> dict[str, Any]:
    import json

    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    body = stack.s3.get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/_manifest.json")["Body"]
    return dict(json.loads(body.read()))
