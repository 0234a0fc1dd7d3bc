"""End to end on the local stack: schedules fire, uploads trigger, completion events land.

The stack runs as `make dev` does: the scheduler loop reads the schedules from the
emulated Scheduler API and sends to the trigger queue; uploads to the emulated bucket
reach the same queue through the template's EventBridge rule; the worker loop feeds
the trigger function with the template's batching window; ended jobs put their event
on the emulated default bus.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from local import DEFAULT_STACK_NAME
from tests.e2e.helpers import envelope, get, post, wait_for_job

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
START = datetime(2025, 1, 1, tzinfo=UTC)


def client(stack: LocalStack, service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=stack.aws_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def csv_file(first_id: int, rows: int) -> bytes:
    lines = ["id,name,updated_at"]
    for i in range(first_id, first_id + rows):
        stamp = (START + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{i},row-{i},{stamp}")
    return ("\n".join(lines) + "\n").encode()


def folder_source(stack: LocalStack, workspace: str, folder: str) -> str:
    body = {
        "sources": [
            {
                "type": "file",
                "name": "uploads",
                "connection_config": {"url": f"s3://{stack.bucket}/{folder}", "pattern": "*.csv"},
            }
        ]
    }
    (source,) = envelope(post(stack, workspace, "connect", body), 201)["connected_sources"]
    return str(source["id"])


def set_schedule(stack: LocalStack, workspace: str, source_id: str, schedule: str | None) -> Any:
    body = {"source_ids": [source_id], "schedule": schedule}
    return envelope(post(stack, workspace, "schedule", body), 200)


def schedule_of(stack: LocalStack, workspace: str) -> dict[str, Any]:
    (view,) = envelope(get(stack, workspace, "schedules", {"scope": "user"}), 200)["schedules"]
    return dict(view)


def workspace_jobs(stack: LocalStack, workspace: str) -> list[dict[str, Any]]:
    ddb = client(stack, "dynamodb")
    pk = f"ORG#acme#WS#{workspace}#SCOPE#user#OWNER#user-1"
    items = ddb.query(
        TableName=f"{DEFAULT_STACK_NAME}-DataTable",
        KeyConditionExpression="pk = :pk AND begins_with(sk, :job)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":job": {"S": "JOB#"}},
        ConsistentRead=True,
    )["Items"]
    return [
        {k: next(iter(v.values())) for k, v in item.items()}
        for item in items
        if item["kind"]["S"] == "job"
    ]


def wait_until(check: Any, timeout: float, stack: LocalStack) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"not within {timeout} s:\n{stack.log_tail()}")


def test_a_rate_1_minute_schedule_starts_a_job_with_trigger_schedule(
    local_stack: LocalStack,
) -> None:
    workspace = f"ws_sched_{uuid.uuid4().hex[:8]}"
    folder = f"uploads/acme/{workspace}/"
    local_stack.s3.put_object(Bucket=local_stack.bucket, Key=f"{folder}a.csv", Body=csv_file(1, 5))
    source_id = folder_source(local_stack, workspace, folder)
    set_schedule(local_stack, workspace, source_id, "rate(1 minute)")
    assert schedule_of(local_stack, workspace)["next_run_at"]

    def started() -> Any:
        last = schedule_of(local_stack, workspace)["last_run"]
        return last if last and last.get("job_id") else None

    # Due 60 s after it was set, then at most the trigger queue's 10 s batching window.
    last = wait_until(started, 80, local_stack)
    job = wait_for_job(local_stack, workspace, last["job_id"])
    assert job["trigger"] == "schedule" and job["status"] == "completed"
    assert job["records_processed"] == 5
    set_schedule(local_stack, workspace, source_id, None)


def test_an_upload_starts_one_job_with_trigger_upload(local_stack: LocalStack) -> None:
    workspace = f"ws_upl_{uuid.uuid4().hex[:8]}"
    folder = f"uploads/acme/{workspace}/"
    source_id = folder_source(local_stack, workspace, folder)
    set_schedule(local_stack, workspace, source_id, "on_upload")
    local_stack.s3.put_object(Bucket=local_stack.bucket, Key=f"{folder}a.csv", Body=csv_file(1, 7))
    (job,) = wait_until(lambda: workspace_jobs(local_stack, workspace), 90, local_stack)
    final = wait_for_job(local_stack, workspace, job["job_id"])
    assert final["trigger"] == "upload" and final["status"] == "completed"
    assert final["records_processed"] == 7
    time.sleep(2)
    assert len(workspace_jobs(local_stack, workspace)) == 1


def test_a_burst_of_50_uploads_lands_every_record_exactly_once_in_one_or_two_jobs(
    local_stack: LocalStack,
) -> None:
    import io

    import pyarrow.parquet as pq

    workspace = f"ws_burst_{uuid.uuid4().hex[:8]}"
    folder = f"uploads/acme/{workspace}/"
    source_id = folder_source(local_stack, workspace, folder)
    set_schedule(local_stack, workspace, source_id, "on_upload")
    for n in range(50):
        local_stack.s3.put_object(
            Bucket=local_stack.bucket, Key=f"{folder}f{n:03d}.csv", Body=csv_file(n * 10 + 1, 10)
        )

    def settled() -> list[dict[str, Any]] | None:
        jobs = workspace_jobs(local_stack, workspace)
        if not jobs or any(j["status"] not in {"completed", "failed", "cancelled"} for j in jobs):
            return None
        queue = client(local_stack, "sqs").get_queue_url(
            QueueName=f"{DEFAULT_STACK_NAME}-TriggerQueue"
        )["QueueUrl"]
        attrs = client(local_stack, "sqs").get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if any(int(v) for v in attrs.values()):
            return None
        return jobs

    jobs = wait_until(settled, 180, local_stack)
    assert 1 <= len(jobs) <= 2, jobs
    assert {j["status"] for j in jobs} == {"completed"}
    assert {j["trigger"] for j in jobs} == {"upload"}
    ids: list[int] = []
    s3 = local_stack.s3
    for job in jobs:
        prefix = f"org=acme/workspace={workspace}/source={source_id}/"
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=local_stack.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                key = item["Key"]
                if f"/job={job['job_id']}/part-" in key:
                    body = s3.get_object(Bucket=local_stack.bucket, Key=key)["Body"].read()
                    ids.extend(pq.read_table(io.BytesIO(body)).column("id").to_pylist())
    assert sorted(ids) == list(range(1, 501))


def test_a_completion_event_reaches_an_sqs_queue_through_a_rule_on_the_default_bus(
    local_stack: LocalStack,
) -> None:
    workspace = f"ws_evt_{uuid.uuid4().hex[:8]}"
    sqs, events = client(local_stack, "sqs"), client(local_stack, "events")
    url = sqs.create_queue(QueueName=f"e2e-completions-{workspace}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = f"e2e-jobs-{workspace}"
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {"source": ["datasources"], "detail": {"workspace_id": [workspace]}}
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    folder = f"uploads/acme/{workspace}/"
    local_stack.s3.put_object(Bucket=local_stack.bucket, Key=f"{folder}a.csv", Body=csv_file(1, 3))
    source_id = folder_source(local_stack, workspace, folder)
    response = post(local_stack, workspace, "sync", {"source_ids": [source_id]})
    job = wait_for_job(local_stack, workspace, response.json()["data"]["job_id"])

    def received() -> Any:
        return sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")

    (message,) = wait_until(received, 30, local_stack)
    event = json.loads(message["Body"])
    assert event["source"] == "datasources" and event["detail-type"] == "Sync Job Completed"
    assert event["detail"]["job_id"] == job["job_id"]
    assert event["detail"]["records_processed"] == 3 and event["detail"]["trigger"] == "api"
    # The stack's own log shows it too.
    wait_until(
        lambda: f"Sync Job Completed: {job['job_id']}" in local_stack.log_path.read_text(),
        15,
        local_stack,
    )
