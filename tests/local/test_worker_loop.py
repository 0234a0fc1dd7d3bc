"""The local worker loop feeds the sync queue to its function as Lambda's SQS event
source mapping would: real SQS events, successes deleted, reported failures and
raising handlers redelivered until the queue dead-letters them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import pytest

from local.functions import sqs_functions
from local.provision import LocalResources
from local.worker_loop import WorkerLoop
from tests.support.recorder import Recorder


@pytest.fixture
def worker_setup(
    template: dict[str, Any], emulated_aws: LocalResources
) -> tuple[WorkerLoop, Recorder, Any]:
    recorder = Recorder()
    sqs = boto3.client("sqs", region_name="us-east-1")
    loop = WorkerLoop(
        [t for t in sqs_functions(template) if t.logical_id == "SyncWorkerFunction"],
        emulated_aws,
        sqs_client=sqs,
        loader=recorder.loader,
        retry_delay_seconds=0,
        log=lambda line: None,
    )
    return loop, recorder, sqs


def test_worker_loop_sends_a_real_sqs_event_and_deletes_a_success(
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: LocalResources
) -> None:
    loop, recorder, sqs = worker_setup
    recorder.answer = {"batchItemFailures": []}
    sqs.send_message(QueueUrl=emulated_aws.queue_url, MessageBody='{"job_id": "job_1"}')
    assert loop.drain_once() == 1
    ((code_uri, event, context),) = recorder.events
    assert code_uri == "functions/sync_worker"
    (record,) = event["Records"]
    assert record["body"] == '{"job_id": "job_1"}'
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":datasources-local-SyncQueue")
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert 890_000 < context.get_remaining_time_in_millis() <= 900_000
    assert loop.drain_once() == 0, "a handled message is deleted"


def test_worker_loop_retries_reported_failures_then_the_queue_dead_letters_them(
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: LocalResources
) -> None:
    loop, recorder, sqs = worker_setup
    sqs.send_message(QueueUrl=emulated_aws.queue_url, MessageBody="{}")

    def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
        recorder.events.append(("", event, context))
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    def loader(code_uri: str, handler: str = "app.handler") -> Any:
        return fail

    loop.loader = loader
    moved: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not moved:
        loop.drain_once()
        moved = sqs.receive_message(QueueUrl=emulated_aws.dlq_url).get("Messages", [])
    counts = [
        event["Records"][0]["attributes"]["ApproximateReceiveCount"]
        for _, event, _ in recorder.events
    ]
    # maxReceiveCount is 3: three deliveries, then SQS moves the message to the DLQ.
    assert counts == ["1", "2", "3"]
    assert len(moved) == 1


def test_worker_loop_treats_a_raising_handler_as_a_failed_batch(
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: LocalResources
) -> None:
    loop, recorder, sqs = worker_setup
    recorder.answer = RuntimeError("worker crashed")
    sqs.send_message(QueueUrl=emulated_aws.queue_url, MessageBody="{}")
    assert loop.drain_once() == 1
    assert loop.failed == 1 and loop.succeeded == 0
    recorder.answer = {"batchItemFailures": []}
    assert loop.drain_once() == 1, "the failed message is delivered again"
    assert loop.succeeded == 1


def test_worker_loop_thread_starts_and_stops(
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: LocalResources
) -> None:
    loop, recorder, sqs = worker_setup
    done = threading.Event()
    inner = recorder.loader("functions/sync_worker")

    def handle(event: dict[str, Any], context: Any) -> Any:
        result = inner(event, context)
        done.set()
        return result

    def loader(code_uri: str, handler: str = "app.handler") -> Any:
        return handle

    loop.loader = loader
    loop.start()
    try:
        sqs.send_message(QueueUrl=emulated_aws.queue_url, MessageBody="{}")
        assert done.wait(15)
    finally:
        loop.stop()
    assert all(not thread.is_alive() for thread in loop._threads)
