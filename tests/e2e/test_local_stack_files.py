"""End to end over HTTP against the local stack: file sources from upload to Parquet.

Given CSV and JSON Lines files in the landing bucket, when a client connects them,
lists them, reads their schema, syncs them, polls the job and cleans up, then every
step answers in the published envelope and the Parquet parts in S3 hold exactly the
files' rows with the discovered types. A larger file outlasts POST /sync's inline
budget, so its sync finishes through the queue and the worker, as it would deployed.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

TERMINAL = {"completed", "failed", "cancelled", "partial"}
START = datetime(2025, 1, 1, tzinfo=UTC)


def csv_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "name": f"Customer {i}, Ltd" if i % 7 == 0 else f"Customer {i}",
            "balance": round(i * 1.25, 2),
            "active": i % 2 == 0,
            "updated_at": START + timedelta(minutes=i),
        }
        for i in range(1, count + 1)
    ]


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    lines = ["id,name,balance,active,updated_at"]
    for row in rows:
        name = f'"{row["name"]}"' if "," in row["name"] else row["name"]
        stamp = row["updated_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{row['id']},{name},{row['balance']},{str(row['active']).lower()},{stamp}")
    return ("\n".join(lines) + "\n").encode()


JSONL_ROWS = [
    {"event_id": 1, "kind": "signup", "value": 0.5, "user": "u1"},
    {"event_id": 2, "kind": "login", "value": 1.0, "user": "u2"},
    {"event_id": 3, "kind": "purchase", "value": 42.75, "user": "u1"},
    {"event_id": 4, "kind": "logout", "value": 0.0, "user": "u3"},
]


def envelope(response: requests.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"status", "message", "data"}, body
    assert body["status"] == ("success" if status < 400 else "error"), body
    return body["data"]


def wait_for_job(
    stack: LocalStack, workspace: str, job_id: str, timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(
            f"{stack.base_url}/{workspace}/sync/{job_id}",
            params={"scope": "user"},
            headers=stack.headers(),
            timeout=30,
        )
        job: dict[str, Any] = envelope(response, 200)
        if job["status"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job['status']}:\n{stack.log_tail()}")
        time.sleep(0.5)


def parquet_rows(stack: LocalStack, output: str) -> tuple[pa.Schema, list[dict[str, Any]], int]:
    """Schema, rows (in key order) and part count of the Parquet parts under `output`."""
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    keys: list[str] = []
    paginator = stack.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    parts = sorted(key for key in keys if key.endswith(".parquet"))
    assert parts, f"no Parquet parts under {output}: {keys}"
    tables = [
        pq.read_table(io.BytesIO(stack.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        for key in parts
    ]
    table = pa.concat_tables(tables)
    return table.schema, table.to_pylist(), len(parts)


@pytest.fixture
def workspace() -> str:
    # The stack is shared by the session: each test works in its own workspace.
    return f"ws_e2e_{uuid.uuid4().hex[:10]}"


def test_files_connect_list_schema_sync_status_cleanup(
    local_stack: LocalStack, workspace: str
) -> None:
    stack = local_stack
    rows = csv_rows(40)
    stack.s3.put_object(
        Bucket=stack.bucket, Key=f"uploads/acme/{workspace}/customers.csv", Body=to_csv(rows)
    )
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=f"uploads/acme/{workspace}/events.jsonl",
        Body="".join(json.dumps(row) + "\n" for row in JSONL_ROWS).encode(),
    )
    base = f"{stack.base_url}/{workspace}"

    # Connect both files.
    connected = envelope(
        requests.post(
            f"{base}/connect",
            headers=stack.headers(),
            json={
                "scope": "user",
                "sources": [
                    {
                        "type": "file",
                        "name": "customers_csv",
                        "connection_config": {
                            "url": f"s3://{stack.bucket}/uploads/acme/{workspace}/customers.csv"
                        },
                        "metadata": {"owner": "e2e"},
                    },
                    {
                        "type": "file",
                        "name": "events_jsonl",
                        "connection_config": {
                            "url": f"s3://{stack.bucket}/uploads/acme/{workspace}/events.jsonl"
                        },
                    },
                ],
            },
            timeout=30,
        ),
        201,
    )["connected_sources"]
    ids = {source["name"]: source["id"] for source in connected}
    assert set(ids) == {"customers_csv", "events_jsonl"}

    # List shows both, in this caller's user scope.
    listed = envelope(
        requests.get(f"{base}/list", params={"scope": "user"}, headers=stack.headers(), timeout=30),
        200,
    )
    assert {source["id"] for source in listed} == set(ids.values())
    assert all(source["type"] == "file" and source["scope"] == "user" for source in listed)

    # Another user of the same organization does not see user-scoped sources.
    other = envelope(
        requests.get(
            f"{base}/list",
            params={"scope": "user"},
            headers=stack.headers(sub="user-2"),
            timeout=30,
        ),
        200,
    )
    assert other == []

    # Schema: the discovered column types.
    schema = envelope(
        requests.get(
            f"{base}/schema",
            params={"source_id": ids["customers_csv"], "scope": "user"},
            headers=stack.headers(),
            timeout=30,
        ),
        200,
    )
    (table,) = schema["tables"]
    columns = {column["name"]: column["type"] for column in table["columns"]}
    assert columns["id"] == "integer"
    assert columns["name"] == "string"
    assert columns["balance"] == "decimal"  # amounts such as 1.25 land exactly
    assert columns["updated_at"].startswith("timestamp")

    # Sync both; small files finish inline or shortly after through the worker.
    started = requests.post(
        f"{base}/sync",
        headers=stack.headers(),
        json={"scope": "user", "source_ids": list(ids.values())},
        timeout=60,
    )
    assert started.status_code in {200, 202}, started.text
    job_id = started.json()["data"]["job_id"]
    job = wait_for_job(stack, workspace, job_id)
    assert job["status"] == "completed", job
    assert job["records_processed"] == len(rows) + len(JSONL_ROWS)

    streams = {
        source["source_id"]: stream for source in job["sources"] for stream in source["streams"]
    }
    csv_schema, csv_back, _ = parquet_rows(stack, streams[ids["customers_csv"]]["output"])
    assert pa.types.is_integer(csv_schema.field("id").type)
    assert pa.types.is_string(csv_schema.field("name").type) or pa.types.is_large_string(
        csv_schema.field("name").type
    )
    assert pa.types.is_decimal(csv_schema.field("balance").type)
    assert pa.types.is_boolean(csv_schema.field("active").type)
    assert pa.types.is_timestamp(csv_schema.field("updated_at").type)
    got = sorted(csv_back, key=lambda row: row["id"])
    assert [row["id"] for row in got] == [row["id"] for row in rows]
    assert [row["name"] for row in got] == [row["name"] for row in rows]
    assert [row["balance"] for row in got] == [row["balance"] for row in rows]
    assert [row["active"] for row in got] == [row["active"] for row in rows]
    assert [row["updated_at"].replace(tzinfo=UTC) for row in got] == [
        row["updated_at"] for row in rows
    ]

    jsonl_schema, jsonl_back, _ = parquet_rows(stack, streams[ids["events_jsonl"]]["output"])
    assert pa.types.is_integer(jsonl_schema.field("event_id").type)
    assert pa.types.is_decimal(jsonl_schema.field("value").type)
    assert (
        sorted(
            ({k: row[k] for k in ("event_id", "kind", "value", "user")} for row in jsonl_back),
            key=lambda row: row["event_id"],
        )
        == JSONL_ROWS
    )

    # Cleanup removes both; the list is then empty.
    cleaned = envelope(
        requests.post(
            f"{base}/cleanup", headers=stack.headers(), json={"scope": "user"}, timeout=30
        ),
        200,
    )
    assert cleaned["deleted_count"] == 2
    assert set(cleaned["deleted_source_ids"]) == set(ids.values())
    after = envelope(
        requests.get(f"{base}/list", params={"scope": "user"}, headers=stack.headers(), timeout=30),
        200,
    )
    assert after == []


def test_a_sync_longer_than_the_inline_budget_finishes_through_the_worker(
    local_stack: LocalStack, workspace: str
) -> None:
    stack = local_stack
    rows = csv_rows(20_000)
    key = f"uploads/acme/{workspace}/big.csv"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=to_csv(rows))
    base = f"{stack.base_url}/{workspace}"
    (source,) = envelope(
        requests.post(
            f"{base}/connect",
            headers=stack.headers(),
            json={
                "sources": [
                    {
                        "type": "file",
                        "name": "big_csv",
                        "connection_config": {"url": f"s3://{stack.bucket}/{key}"},
                    }
                ]
            },
            timeout=30,
        ),
        201,
    )["connected_sources"]

    # 200 chunks of 100 rows cannot all be written within the stack's 1 s inline budget.
    started = requests.post(
        f"{base}/sync",
        headers=stack.headers(),
        json={"source_ids": [source["id"]], "sync_options": {"batch_size": 100}},
        timeout=60,
    )
    assert started.status_code == 202, started.text
    assert started.json()["data"]["status"] in {"running", "queued"}
    job = wait_for_job(stack, workspace, started.json()["data"]["job_id"])
    assert job["status"] == "completed", job
    assert job["records_processed"] == len(rows)
    ((stream,),) = [s["streams"] for s in job["sources"]]
    _, back, parts = parquet_rows(stack, stream["output"])
    assert parts >= 2
    ids = [row["id"] for row in back]
    assert len(ids) == len(set(ids)) == len(rows), "no record lost or doubled across invocations"


def test_the_gateway_keeps_the_envelope_for_auth_and_unknown_routes(
    local_stack: LocalStack, workspace: str
) -> None:
    stack = local_stack
    base = f"{stack.base_url}/{workspace}"
    envelope(requests.get(f"{base}/list", timeout=30), 401)
    expired = {"Authorization": f"Bearer {stack.token(ttl_seconds=-60)}"}
    envelope(requests.get(f"{base}/list", headers=expired, timeout=30), 401)
    envelope(
        requests.post(
            f"{base}/connect",
            headers=stack.headers(role="viewer"),
            json={
                "sources": [
                    {"type": "file", "name": "x", "connection_config": {"url": "s3://b/x.csv"}}
                ]
            },
            timeout=30,
        ),
        403,
    )
    assert envelope(requests.get(f"{base}/nowhere", timeout=30), 404) is None
    assert requests.get(f"{stack.root_url}/docs", timeout=30).status_code == 200
