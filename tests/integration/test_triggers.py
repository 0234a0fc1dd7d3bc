"""Schedules, upload triggers and completion events: handlers against moto built from
template.yaml (Scheduler group, trigger queue, upload rule, default bus)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import EVENTS, Stack, mint

CSV = b"id,name,updated_at\n" + b"".join(
    f"{i},name-{i},2024-01-{1 + i % 28:02d}T10:00:00Z\n".encode() for i in range(1, 21)
)


def file_source(stack: Stack, key: str = "uploads/acme/orders.csv", name: str = "orders") -> str:
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=CSV)
    body = {
        "scope": "user",
        "sources": [
            {
                "type": "file",
                "name": name,
                "connection_config": {"url": f"s3://{stack.bucket}/{key}"},
            }
        ],
    }
    response = stack.call("connect", body=body)
    assert response.status_code == 201, response.body
    # The set-up upload's own Object Created event is not part of the test.
    stack.sqs.purge_queue(QueueUrl=stack.trigger_queue_url)
    return str(response.data["connected_sources"][0]["id"])


def folder_source(stack: Stack, prefix: str = "uploads/acme/orders/") -> str:
    body = {
        "scope": "user",
        "sources": [
            {
                "type": "file",
                "name": "orders_folder",
                "connection_config": {"url": f"s3://{stack.bucket}/{prefix}", "pattern": "*.csv"},
            }
        ],
    }
    response = stack.call("connect", body=body)
    assert response.status_code == 201, response.body
    return str(response.data["connected_sources"][0]["id"])


def set_schedule(
    stack: Stack,
    source_ids: list[str],
    schedule: str | None,
    token: str | None = None,
    **extra: Any,
) -> Any:
    body = {"scope": "user", "source_ids": source_ids, "schedule": schedule, **extra}
    return stack.call("schedule", body=body, token=token)


def scheduler(stack: Stack) -> Any:
    import boto3

    return boto3.client("scheduler", region_name="us-east-1")


def group(stack: Stack) -> str:
    return stack.resources.by_logical_id["SyncScheduleGroup"].ref


def fire(stack: Stack, source_id: str, scheduled_time: str) -> None:
    """What Scheduler does at `scheduled_time`: send the schedule's input to its target."""
    target = scheduler(stack).get_schedule(Name=source_id, GroupName=group(stack))["Target"]
    body = target["Input"].replace("<aws.scheduler.scheduled-time>", scheduled_time)
    queue_url = stack.sqs.get_queue_url(QueueName=target["Arn"].rsplit(":", 1)[1])["QueueUrl"]
    stack.sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def jobs(stack: Stack) -> list[dict[str, Any]]:
    items = stack.ddb.scan(TableName=stack.resources.table_name)["Items"]
    return [
        {k: next(iter(v.values())) for k, v in item.items()}
        for item in items
        if item["kind"]["S"] == "job"
    ]


def schedules(stack: Stack) -> list[dict[str, Any]]:
    return list(stack.call("schedules", query={"scope": "user"}).data["schedules"])


# ------------------------------------------------------------------ schedules


def test_setting_changing_and_removing_a_schedule_drives_its_scheduler_schedule(
    stack: Stack,
) -> None:
    source_id = file_source(stack)
    # Given a source, when a cron schedule with a time zone is set ...
    response = set_schedule(
        stack,
        [source_id],
        "cron(0 3 * * ? *)",
        timezone="Europe/Rome",
        sync_options={"incremental": False, "batch_size": 500},
    )
    assert response.status_code == 200, response.body
    view = response.data["schedules"][0]
    assert view["schedule"] == "cron(0 3 * * ? *)" and view["timezone"] == "Europe/Rome"
    assert view["next_run_at"] and view["consecutive_failures"] == 0
    # ... then one Scheduler schedule in the stack's group sends the tenant and source.
    made = scheduler(stack).get_schedule(Name=source_id, GroupName=group(stack))
    assert made["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert made["ScheduleExpressionTimezone"] == "Europe/Rome"
    assert made["State"] == "ENABLED"
    assert made["Target"]["Arn"] == stack.resources.by_logical_id["TriggerQueue"].attrs["Arn"]
    assert made["Target"]["RoleArn"] == stack.resources.by_logical_id["SchedulerRole"].attrs["Arn"]
    assert json.loads(made["Target"]["Input"]) == {
        "trigger": "schedule",
        "pk": "ORG#acme#WS#ws_demo#SCOPE#user#OWNER#user-1",
        "source_id": source_id,
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }
    # The source's list view carries the schedule.
    listed = stack.call("list", query={"scope": "user"}).data
    assert listed[0]["schedule"]["schedule"] == "cron(0 3 * * ? *)"
    assert listed[0]["schedule"]["sync_options"]["batch_size"] == 500

    # When it changes, the same schedule is updated.
    assert set_schedule(stack, [source_id], "rate(15 minutes)", enabled=False).status_code == 200
    made = scheduler(stack).get_schedule(Name=source_id, GroupName=group(stack))
    assert made["ScheduleExpression"] == "rate(15 minutes)"
    assert made["ScheduleExpressionTimezone"] == "UTC" and made["State"] == "DISABLED"
    assert schedules(stack)[0]["next_run_at"] is None  # disabled

    # When it is removed, the Scheduler schedule goes and the source shows none.
    response = set_schedule(stack, [source_id], None)
    assert response.status_code == 200 and response.data == {"schedules": []}
    assert scheduler(stack).list_schedules(GroupName=group(stack))["Schedules"] == []
    assert stack.call("list", query={"scope": "user"}).data[0]["schedule"] is None
    assert schedules(stack) == []


def test_the_sample_event_sets_a_schedule(stack: Stack) -> None:
    source_id = file_source(stack)
    sample = json.loads((EVENTS / "set_schedule.json").read_text())
    body = json.loads(sample["body"])
    body["source_ids"] = [source_id]
    response = stack.call("schedule", body=body)
    assert response.status_code == 200, response.body
    assert response.data["schedules"][0]["timezone"] == "Europe/Rome"


def test_cleanup_removes_a_sources_schedule(stack: Stack) -> None:
    source_id = file_source(stack)
    assert set_schedule(stack, [source_id], "rate(1 hour)").status_code == 200
    assert (
        stack.call("cleanup", body={"scope": "user", "source_ids": [source_id]}).status_code == 200
    )
    assert scheduler(stack).list_schedules(GroupName=group(stack))["Schedules"] == []


BAD_SCHEDULES = [
    ("rate(0 minutes)", "UTC"),
    ("rate(30 seconds)", "UTC"),
    ("rate(5 minute)", "UTC"),
    ("rate(1 minutes)", "UTC"),
    ("cron(0 3 * * *)", "UTC"),
    ("cron(0 3 * * * *)", "UTC"),
    ("cron(61 3 * * ? *)", "UTC"),
    ("cron(0 3 ? * FUNDAY *)", "UTC"),
    ("every hour", "UTC"),
    ("rate(15 minutes)", "Mars/Olympus_Mons"),
    ("rate(15 minutes)", "../../etc/passwd"),
]


@pytest.mark.parametrize(("expression", "timezone"), BAD_SCHEDULES)
def test_bad_expressions_and_time_zones_are_422_and_change_nothing(
    stack: Stack, expression: str, timezone: str
) -> None:
    source_id = file_source(stack)
    response = set_schedule(stack, [source_id], expression, timezone=timezone)
    assert response.status_code == 422, response.body
    assert response.body["data"]["errors"][0]["loc"] in {"schedule", "timezone"}
    assert scheduler(stack).list_schedules(GroupName=group(stack))["Schedules"] == []
    assert schedules(stack) == []


def test_bad_sync_options_and_too_many_sources_are_422(stack: Stack) -> None:
    source_id = file_source(stack)
    bad_options = set_schedule(stack, [source_id], "rate(1 hour)", sync_options={"batch_size": 0})
    assert bad_options.status_code == 422
    unknown_option = set_schedule(stack, [source_id], "rate(1 hour)", sync_options={"x": 1})
    assert unknown_option.status_code == 422
    too_many = set_schedule(stack, [f"src_{i:020x}" for i in range(26)], "rate(1 hour)")
    assert too_many.status_code == 422
    assert too_many.body["data"]["errors"][0]["loc"] == "source_ids"
    assert schedules(stack) == []


def test_on_upload_is_only_for_file_sources_under_the_organizations_uploads(stack: Stack) -> None:
    own = folder_source(stack)
    # Synced data of a source the caller can see: readable, but not an upload.
    synced = f"org=acme/workspace=ws_demo/source={own}/stream=orders/job=j1/x.csv"
    stack.s3.put_object(Bucket=stack.bucket, Key=synced, Body=CSV)
    body = {
        "scope": "user",
        "sources": [
            {
                "type": "file",
                "name": "synced",
                "connection_config": {"url": f"s3://{stack.bucket}/{synced}"},
            },
            {
                "type": "api",
                "name": "api",
                "connection_config": {"base_url": "https://api.example.com"},
            },
        ],
    }
    created = stack.call("connect", body=body).data["connected_sources"]
    for source in created:
        # A valid source and an invalid one in one request: nothing is set for either.
        response = set_schedule(stack, [own, source["id"]], "on_upload")
        assert response.status_code == 422, response.body
        assert "uploads/acme/" in response.body["message"]
    assert schedules(stack) == []
    assert set_schedule(stack, [own], "on_upload").status_code == 200


def test_roles_and_tenancy_on_schedules(stack: Stack) -> None:
    source_id = file_source(stack)
    viewer = set_schedule(stack, [source_id], "rate(1 hour)", token=mint(role="viewer"))
    assert viewer.status_code == 403
    member_org = stack.call(
        "schedule",
        body={"scope": "organization", "source_ids": [source_id], "schedule": "rate(1 hour)"},
        token=mint(role="member"),
    )
    assert member_org.status_code == 403
    for token in (mint(sub="user-2"), mint(org="other")):
        foreign = set_schedule(stack, [source_id], "rate(1 hour)", token=token)
        unknown = set_schedule(stack, ["src_" + "0" * 20], "rate(1 hour)", token=token)
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.body["data"]["code"] == unknown.body["data"]["code"]
    assert schedules(stack) == []
    # Viewers read schedules.
    assert set_schedule(stack, [source_id], "rate(1 hour)").status_code == 200
    viewed = stack.call("schedules", query={"scope": "user"}, token=mint(role="viewer"))
    assert viewed.status_code == 200 and len(viewed.data["schedules"]) == 1


# ------------------------------------------------------------------ schedule triggers


def test_a_scheduler_event_starts_one_job_with_trigger_schedule_even_when_delivered_twice(
    stack: Stack,
) -> None:
    source_id = file_source(stack)
    assert set_schedule(stack, [source_id], "rate(1 hour)").status_code == 200
    fire(stack, source_id, "2026-12-02T10:00:00Z")
    fire(stack, source_id, "2026-12-02T10:00:00Z")  # at-least-once delivery
    result = stack.deliver_triggers()
    assert result["delivered"] == 2 and result["batchItemFailures"] == []
    started = jobs(stack)
    assert len(started) == 1 and started[0]["trigger"] == "schedule"
    stack.drain()
    status = stack.call("status", path={"job_id": started[0]["job_id"]}, query={"scope": "user"})
    assert status.data["trigger"] == "schedule" and status.data["status"] == "completed"
    assert status.data["records_processed"] == 20
    last = schedules(stack)[0]["last_run"]
    assert last["status"] == "started" and last["job_id"] == started[0]["job_id"]
    assert last["job_status"] == "completed" and last["scheduled_time"] == "2026-12-02T10:00:00Z"


def test_the_trigger_sample_event_runs_through_the_handler(stack: Stack) -> None:
    source_id = file_source(stack)
    assert set_schedule(stack, [source_id], "rate(1 hour)").status_code == 200
    event = json.loads((EVENTS / "sync_trigger.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    body["source_id"] = source_id
    event["Records"][0]["body"] = json.dumps(body)
    from local.context import FakeLambdaContext

    result = stack.handler("sync_trigger")(event, FakeLambdaContext(frozen=True))
    # The S3 record names a bucket that is not this stack's: ignored, not retried.
    assert result == {"batchItemFailures": []}
    assert [j["trigger"] for j in jobs(stack)] == ["schedule"]


def test_a_trigger_while_the_source_is_syncing_is_skipped_and_recorded(stack: Stack) -> None:
    source_id = file_source(stack)
    assert set_schedule(stack, [source_id], "rate(1 hour)").status_code == 200
    # A manual sync that outlives its request holds the source.
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    running = stack.call("sync", body={"scope": "user", "source_ids": [source_id]})
    assert running.status_code == 202, running.body
    fire(stack, source_id, "2026-12-02T11:00:00Z")
    assert stack.deliver_triggers()["batchItemFailures"] == []
    assert len(jobs(stack)) == 1
    last = schedules(stack)[0]["last_run"]
    assert last["status"] == "skipped" and last["reason"] == "already syncing"
    assert last["running_job_id"] == running.data["job_id"]


def test_a_schedule_pauses_after_max_failures_and_resumes_by_setting_or_a_manual_sync(
    stack: Stack,
) -> None:
    source_id = file_source(stack)
    response = set_schedule(stack, [source_id], "rate(1 hour)", max_consecutive_failures=2)
    assert response.status_code == 200
    stack.s3.delete_object(Bucket=stack.bucket, Key="uploads/acme/orders.csv")
    for hour in ("01", "02"):
        fire(stack, source_id, f"2026-12-02T{hour}:00:00Z")
        assert stack.deliver_triggers()["batchItemFailures"] == []
    view = schedules(stack)[0]
    assert view["consecutive_failures"] == 2
    assert view["paused_reason"].startswith("paused after 2 consecutive failed runs")
    assert view["next_run_at"] is None
    # Paused: a third firing starts nothing and says why.
    fire(stack, source_id, "2026-12-02T03:00:00Z")
    stack.deliver_triggers()
    assert schedules(stack)[0]["last_run"]["reason"].startswith("paused")
    assert jobs(stack) == []

    # Setting it again resumes it.
    assert (
        set_schedule(stack, [source_id], "rate(1 hour)", max_consecutive_failures=1).status_code
        == 200
    )
    assert schedules(stack)[0]["paused_reason"] is None
    fire(stack, source_id, "2026-12-02T04:00:00Z")
    stack.deliver_triggers()
    assert schedules(stack)[0]["paused_reason"] is not None  # one failure is the limit now

    # A successful manual sync resumes it too.
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/orders.csv", Body=CSV)
    manual = stack.call("sync", body={"scope": "user", "source_ids": [source_id]})
    assert manual.data["status"] == "completed" and manual.data["trigger"] == "api"
    view = schedules(stack)[0]
    assert view["paused_reason"] is None and view["consecutive_failures"] == 0


def test_failed_triggered_jobs_count_towards_the_pause(stack: Stack) -> None:
    source_id = file_source(stack)
    assert (
        set_schedule(stack, [source_id], "rate(1 hour)", max_consecutive_failures=1).status_code
        == 200
    )
    # The file turns unreadable after the job was planned: the worker fails the job.
    fire(stack, source_id, "2026-12-02T05:00:00Z")
    stack.deliver_triggers()
    stack.s3.put_object(
        Bucket=stack.bucket, Key="uploads/acme/orders.csv", Body=b"\xff\xfe\x00garbage"
    )
    stack.configure(MAX_RECEIVES=1)  # the worker gives up at the first failure
    stack.drain()
    (job,) = jobs(stack)
    assert job["status"] == "failed"
    view = schedules(stack)[0]
    assert view["consecutive_failures"] == 1 and view["paused_reason"]
    assert view["last_run"]["job_status"] == "failed"


# ------------------------------------------------------------------ upload triggers


def test_an_upload_starts_one_job_with_trigger_upload(stack: Stack) -> None:
    source_id = folder_source(stack)
    assert set_schedule(stack, [source_id], "on_upload").status_code == 200
    # S3 → EventBridge → the template's rule → the trigger queue, all in moto.
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/orders/a.csv", Body=CSV)
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/other/b.csv", Body=CSV)  # no match
    stack.s3.put_object(Bucket=stack.bucket, Key="org=acme/not-an-upload.csv", Body=CSV)  # no rule
    result = stack.deliver_triggers()
    assert result["delivered"] == 2 and result["batchItemFailures"] == []
    (job,) = jobs(stack)
    assert job["trigger"] == "upload"
    stack.drain()
    status = stack.call("status", path={"job_id": job["job_id"]}, query={"scope": "user"})
    assert status.data["trigger"] == "upload" and status.data["records_processed"] == 20


def test_the_s3_sample_event_has_the_shape_moto_and_the_handler_use(stack: Stack) -> None:
    source_id = folder_source(stack)
    assert set_schedule(stack, [source_id], "on_upload").status_code == 200
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/orders/a.csv", Body=CSV)
    sample = json.loads((EVENTS / "s3_object_created.json").read_text())
    sample["detail"]["bucket"]["name"] = stack.bucket
    sample["detail"]["object"]["key"] = "uploads/acme/orders/a.csv"
    stack.sqs.send_message(QueueUrl=stack.trigger_queue_url, MessageBody=json.dumps(sample))
    assert stack.deliver_triggers()["batchItemFailures"] == []
    assert [j["trigger"] for j in jobs(stack)] == ["upload"]


def test_a_burst_of_uploads_in_one_batch_starts_one_job_and_duplicates_start_none(
    stack: Stack,
) -> None:
    source_id = folder_source(stack)
    assert set_schedule(stack, [source_id], "on_upload").status_code == 200
    for i in range(8):
        stack.s3.put_object(Bucket=stack.bucket, Key=f"uploads/acme/orders/f{i:02d}.csv", Body=CSV)
    messages = stack.sqs.receive_message(
        QueueUrl=stack.trigger_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    )["Messages"]
    assert len(messages) == 8
    # The same events delivered again, as EventBridge may.
    for message in messages:
        stack.sqs.send_message(QueueUrl=stack.trigger_queue_url, MessageBody=message["Body"])
    while stack.deliver_triggers()["delivered"]:
        stack.drain()
    (job,) = jobs(stack)
    assert job["trigger"] == "upload" and int(job["records_processed"]) == 8 * 20


def test_an_upload_while_its_source_syncs_is_retried_not_lost(stack: Stack) -> None:
    source_id = folder_source(stack)
    assert set_schedule(stack, [source_id], "on_upload").status_code == 200
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/orders/a.csv", Body=CSV)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    assert stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).status_code == 202
    stack.sqs.purge_queue(QueueUrl=stack.trigger_queue_url)
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/orders/b.csv", Body=CSV)
    result = stack.deliver_triggers()
    assert len(result["batchItemFailures"]) == 1  # comes back after the running sync
    assert len(jobs(stack)) == 1


# ------------------------------------------------------------------ completion events


@pytest.fixture
def event_queue(stack: Stack) -> str:
    """An SQS queue behind a rule on the default bus that matches the service's events."""
    import boto3

    events = boto3.client("events", region_name="us-east-1")
    url = stack.sqs.create_queue(QueueName="triggers-test-completion-events")["QueueUrl"]
    arn = stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="triggers-test-sync-jobs",
        EventPattern=json.dumps({"source": ["datasources"]}),
    )
    events.put_targets(Rule="triggers-test-sync-jobs", Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def received_events(stack: Stack, url: str) -> list[dict[str, Any]]:
    out = []
    while True:
        messages = stack.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages")
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            stack.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


DETAIL_KEYS = [
    "job_id",
    "organization",
    "workspace_id",
    "scope",
    "source_ids",
    "status",
    "records_processed",
    "trigger",
    "started_at",
    "ended_at",
    "streams",
    "error",
]


def test_a_completed_job_puts_one_event_of_the_exact_shape(stack: Stack, event_queue: str) -> None:
    source_id = file_source(stack)
    job = stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).data
    (event,) = received_events(stack, event_queue)
    assert event["source"] == "datasources" and event["detail-type"] == "Sync Job Completed"
    detail = event["detail"]
    assert list(detail) == DETAIL_KEYS
    prefix = f"org=acme/workspace=ws_demo/source={source_id}/stream=orders/job={job['job_id']}"
    assert detail == {
        "job_id": job["job_id"],
        "organization": "acme",
        "workspace_id": "ws_demo",
        "scope": "user",
        "source_ids": [source_id],
        "status": "completed",
        "records_processed": 20,
        "trigger": "api",
        "started_at": job["started_at"],
        "ended_at": job["finished_at"],
        "streams": [
            {
                "source_id": source_id,
                "stream": "orders",
                "records": 20,
                "output_prefix": f"s3://{stack.bucket}/{prefix}/",
                "manifest_key": f"{prefix}/_manifest.json",
            }
        ],
        "error": None,
    }
    assert stack.s3.get_object(Bucket=stack.bucket, Key=f"{prefix}/_manifest.json")


def test_a_failed_job_puts_a_sync_job_failed_event(stack: Stack, event_queue: str) -> None:
    source_id = file_source(stack)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job = stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).data
    stack.s3.put_object(Bucket=stack.bucket, Key="uploads/acme/orders.csv", Body=b"\xff\xfe\x00bad")
    stack.configure(MAX_RECEIVES=1)  # the worker gives up at the first failure
    stack.drain()
    (event,) = received_events(stack, event_queue)
    assert event["detail-type"] == "Sync Job Failed"
    detail = event["detail"]
    assert list(detail) == DETAIL_KEYS
    assert detail["job_id"] == job["job_id"] and detail["status"] == "failed"
    assert detail["error"] and detail["streams"][0]["manifest_key"] is None
    assert detail["ended_at"]


def test_a_cancelled_job_puts_a_sync_job_cancelled_event(stack: Stack, event_queue: str) -> None:
    source_id = file_source(stack)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job = stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).data
    cleanup = stack.call("cleanup", body={"scope": "user", "source_ids": [source_id]})
    assert cleanup.data["cancelled_job_ids"] == [job["job_id"]]
    stack.drain()
    (event,) = received_events(stack, event_queue)
    assert event["detail-type"] == "Sync Job Cancelled"
    assert list(event["detail"]) == DETAIL_KEYS
    assert event["detail"]["status"] == "cancelled" and event["detail"]["job_id"] == job["job_id"]


def test_a_job_the_reaper_ends_puts_one_sync_job_failed_event(
    stack: Stack, event_queue: str
) -> None:
    # Given a job whose worker vanished (its message taken, no progress), when the reaper
    # ends it past its lease, then one Failed event says so, and a second pass adds none.
    import time

    from datasources.services.reaper import reap

    source_id = file_source(stack)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job = stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).data
    stack.receive()  # taken by a worker that dies: nothing comes back
    later = time.time() + 900 + 5  # past the lease
    assert reap(now=later) == [job["job_id"]]
    assert reap(now=later + 300) == []
    (event,) = received_events(stack, event_queue)
    assert event["detail-type"] == "Sync Job Failed"
    assert list(event["detail"]) == DETAIL_KEYS
    assert event["detail"]["job_id"] == job["job_id"]
    assert event["detail"]["error"].startswith("stalled")


# ------------------------------------------------------------------ diagnosis


@pytest.fixture
def log_lines() -> Any:
    """The service logger's exact JSON lines from now on (whatever stdout is captured)."""
    import io
    import logging

    from datasources.observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    std = logging.getLogger("datasources")
    std.addHandler(handler)
    yield lambda: [
        json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")
    ]
    std.removeHandler(handler)


def test_a_worker_failure_logs_its_ids_and_a_sanitized_traceback(
    stack: Stack, log_lines: Any
) -> None:
    source_id = file_source(stack)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0, MAX_RECEIVES=1)
    job = stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).data
    # A failure whose raw message quotes a credential: it must not reach the log.
    from datasources.connectors import file as file_connector

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("connect failed for postgresql://u:planted-log-secret@db/x")

    stack._monkeypatch.setattr(file_connector.FileConnector, "read", explode)
    stack.drain()
    lines = log_lines()
    (failure,) = [
        line
        for line in lines
        if line.get("message") == "sync unit attempt failed" and line["level"] == "ERROR"
    ]
    assert failure["job_id"] == job["job_id"]
    assert failure["source_id"] == source_id and failure["stream"] == "orders"
    assert failure["error_type"] == "RuntimeError"
    assert "Traceback" in failure["traceback"] and "in explode" in failure["traceback"]
    assert "planted-log-secret" not in json.dumps(lines)


def test_an_invocation_does_not_carry_the_previous_ones_job_ids(
    stack: Stack, log_lines: Any
) -> None:
    source_id = file_source(stack)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    assert stack.call("sync", body={"scope": "user", "source_ids": [source_id]}).status_code == 202
    stack.drain()  # the worker's lines carry that job's ids
    already = len(log_lines())
    stack.sqs.send_message(QueueUrl=stack.trigger_queue_url, MessageBody="{}")
    stack.deliver_triggers()
    lines = log_lines()[already:]
    (batch,) = [line for line in lines if line.get("message") == "trigger batch"]
    assert not {"job_id", "source_id", "stream"} & set(batch)
