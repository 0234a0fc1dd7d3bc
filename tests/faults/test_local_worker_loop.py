"""The local stack's worker loop follows the deployed timing and runs the reaper."""

from __future__ import annotations

import threading
from typing import Any

from local.cfn import load_template
from local.functions import SqsTrigger, sqs_functions
from local.worker_loop import WorkerLoop, schedules
from tests.conftest import ROOT, Stack

TEMPLATE = load_template(str(ROOT / "template.yaml"))


def worker_only() -> list[SqsTrigger]:
    return [t for t in sqs_functions(TEMPLATE) if t.logical_id == "SyncWorkerFunction"]


def test_a_failed_message_waits_for_the_workers_own_backoff_not_a_local_2_s(
    stack: Stack,
) -> None:
    # The handler fails without setting a backoff: as on AWS, the message stays hidden
    # (the queue's visibility timeout), where the loop used to retry it after 2 s.
    def loader(code_uri: str, handler: str = "app.handler") -> Any:
        def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
            return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

        return fail

    loop = WorkerLoop(worker_only(), stack.resources, sqs_client=stack.sqs, loader=loader)
    assert loop.retry_delay_seconds is None
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    assert loop.drain_once() == 1 and loop.failed == 1
    visible = stack.sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=0)
    assert not visible.get("Messages")


def test_the_reaper_schedule_is_read_from_the_template_and_ticks_in_the_loop(
    stack: Stack,
) -> None:
    (reaper,) = schedules(TEMPLATE)
    assert (reaper.logical_id, reaper.code_uri, reaper.every_seconds) == (
        "SyncReaperFunction",
        "functions/sync_reaper",
        300.0,
    )
    ticked = threading.Event()
    events: list[dict[str, Any]] = []

    def loader(code_uri: str, handler: str = "app.handler") -> Any:
        def run(event: dict[str, Any], context: Any) -> None:
            events.append(event)
            ticked.set()

        return run

    reaper.every_seconds = 0.05
    loop = WorkerLoop([], stack.resources, sqs_client=stack.sqs, loader=loader, scheduled=[reaper])
    loop.start()
    try:
        assert ticked.wait(5)
    finally:
        loop.stop()
    assert events[0]["detail-type"] == "Scheduled Event"
