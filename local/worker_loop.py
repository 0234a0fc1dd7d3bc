"""A local stand-in for Lambda's SQS event source mapping.

For each function that template.yaml triggers from an SQS queue, a thread long-polls
the queue, builds the SQS event Lambda would send (batch size from the template),
runs the handler in-process, deletes the messages that succeeded and leaves the
failed ones (`batchItemFailures`, or all of them when the handler raises) for
redelivery; moto applies the queue's RedrivePolicy, so a message received more than
`maxReceiveCount` times lands in the dead-letter queue, as in AWS.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from local import FAKE_CREDENTIALS, LOCAL_REGION
from local.functions import Handler, SqsTrigger, lambda_context, load_handler
from local.provision import LocalResources

# By default a failed message is retried when the deployed one would be: after the
# backoff the worker sets itself (RETRY_DELAY_SECONDS, doubled per attempt), so an
# outage the deployed stack survives is survived here too. LOCAL_RETRY_DELAY_SECONDS
# forces one delay instead (the template's 5400 s visibility would otherwise apply to
# a handler that raises before setting its backoff).
LOCAL_RETRY_DELAY_SECONDS: int | None = (
    int(os.environ["LOCAL_RETRY_DELAY_SECONDS"])
    if os.environ.get("LOCAL_RETRY_DELAY_SECONDS")
    else None
)


@dataclass
class Schedule:
    """A function the template runs on an EventBridge schedule (`rate(...)`)."""

    logical_id: str
    code_uri: str
    handler: str
    every_seconds: float


def schedules(template: Mapping[str, Any]) -> list[Schedule]:
    """The template's scheduled functions (for the local stand-in of EventBridge)."""
    units = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
    found: list[Schedule] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        props = resource.get("Properties") or {}
        for event in (props.get("Events") or {}).values():
            if event.get("Type") != "Schedule":
                continue
            rate = str(event["Properties"]["Schedule"])
            amount, unit = rate.removeprefix("rate(").removesuffix(")").split()
            found.append(
                Schedule(
                    logical_id,
                    str(props.get("CodeUri", "")).rstrip("/"),
                    str(props.get("Handler") or "app.handler"),
                    float(amount) * units[unit],
                )
            )
    return found


class WorkerLoop:
    """Feeds each SQS-triggered function its queue, like an event source mapping."""

    def __init__(
        self,
        triggers: list[SqsTrigger],
        resources: LocalResources,
        *,
        sqs_client: Any = None,
        loader: Callable[[str, str], Handler] = load_handler,
        wait_seconds: int = 1,
        retry_delay_seconds: int | None = LOCAL_RETRY_DELAY_SECONDS,
        log: Callable[[str], None] | None = None,
        scheduled: list[Schedule] | None = None,
    ) -> None:
        self.triggers = triggers
        self.resources = resources
        self.sqs: Any = sqs_client or boto3.client(
            "sqs",
            region_name=LOCAL_REGION,
            endpoint_url=resources.endpoint_url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.loader = loader
        self.wait_seconds = wait_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self.scheduled = scheduled or []
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.succeeded = 0
        self.failed = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for trigger in self.triggers:
            thread = threading.Thread(
                target=self._run, args=(trigger,), name=f"sqs-{trigger.logical_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        for schedule in self.scheduled:
            thread = threading.Thread(
                target=self._tick,
                args=(schedule,),
                name=f"schedule-{schedule.logical_id}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _tick(self, schedule: Schedule) -> None:
        """Invoke a scheduled function every `every_seconds`, like an EventBridge rule."""
        while not self._stop.wait(schedule.every_seconds):
            try:
                handler = self.loader(schedule.code_uri, schedule.handler)
                event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
                handler(
                    event, lambda_context(self.resources.stack_name, schedule.logical_id, 300, 512)
                )
            except Exception:  # noqa: BLE001 - the next tick tries again
                self.log(f"[worker] {schedule.logical_id} raised:\n{traceback.format_exc()}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            # A poll returns within wait_seconds; a running handler is waited for
            # a little, then left to the daemon thread.
            thread.join(timeout=self.wait_seconds + 10)

    def _run(self, trigger: SqsTrigger) -> None:
        while not self._stop.is_set():
            try:
                self.poll(trigger, self.wait_seconds)
            except Exception:  # noqa: BLE001 - the poller must outlive one failed poll
                # The queue endpoint can vanish during shutdown; otherwise keep polling.
                if self._stop.is_set():
                    return
                self.log(f"[worker] {trigger.logical_id}: poll failed\n{traceback.format_exc()}")
                self._stop.wait(1)

    # ------------------------------------------------------------------ polling

    def drain_once(self, wait_seconds: int = 0) -> int:
        """Receive and process at most one batch per trigger; return messages handled.

        For tests that run the worker without the thread: call until it returns 0.
        """
        return sum(self.poll(trigger, wait_seconds) for trigger in self.triggers)

    def queue_url(self, trigger: SqsTrigger) -> str:
        return self.resources.by_logical_id[trigger.queue_logical_id].ref

    def queue_arn(self, trigger: SqsTrigger) -> str:
        return self.resources.by_logical_id[trigger.queue_logical_id].attrs["Arn"]

    def poll(self, trigger: SqsTrigger, wait_seconds: int) -> int:
        """One receive (long poll) and, when it got messages, one invocation."""
        queue_url = self.queue_url(trigger)
        received = self.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(trigger.batch_size, 10),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = list(received.get("Messages") or [])
        if not messages:
            return 0
        # Like Lambda's batching window: keep gathering until the batch is full or the
        # window has passed since the first message (how a burst of uploads coalesces).
        window_ends = time.monotonic() + trigger.batching_window
        while len(messages) < trigger.batch_size and time.monotonic() < window_ends:
            more = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(trigger.batch_size - len(messages), 10),
                WaitTimeSeconds=max(0, min(1, int(window_ends - time.monotonic()))),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages.extend(more.get("Messages") or [])
        failed_ids = self.invoke(trigger, messages)
        for message in messages:
            if message["MessageId"] in failed_ids:
                self.failed += 1
                if self.retry_delay_seconds is not None:
                    self.sqs.change_message_visibility(
                        QueueUrl=queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.retry_delay_seconds,
                    )
            else:
                self.succeeded += 1
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def invoke(self, trigger: SqsTrigger, messages: list[dict[str, Any]]) -> set[str]:
        """Run the handler on the batch; return the ids of the messages that failed."""
        all_ids = {message["MessageId"] for message in messages}
        event = build_sqs_event(messages, self.queue_arn(trigger))
        context = lambda_context(
            self.resources.stack_name, trigger.logical_id, trigger.timeout, trigger.memory_size
        )
        started = time.monotonic()
        try:
            handler = self.loader(trigger.code_uri, trigger.handler)
            result = handler(event, context)
        except Exception:  # noqa: BLE001 - a raising handler fails its batch, as in Lambda
            self.log(f"[worker] {trigger.logical_id} raised:\n{traceback.format_exc()}")
            return all_ids
        elapsed = time.monotonic() - started
        if elapsed > trigger.timeout:
            # Lambda would have stopped it: report it, the result still counts here.
            self.log(
                f"[worker] {trigger.logical_id} ran {elapsed:.0f} s > Timeout {trigger.timeout} s"
            )
        if not trigger.report_batch_item_failures:
            return set()
        failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
        if not failures:
            return set()
        failed = {str(item.get("itemIdentifier") or "") for item in failures}
        if not failed <= all_ids:
            # Lambda treats an unknown or empty identifier as a failure of the whole batch.
            self.log(f"[worker] {trigger.logical_id}: invalid batchItemFailures {failures!r}")
            return all_ids
        self.log(f"[worker] {trigger.logical_id}: {len(failed)} message(s) failed, will retry")
        return failed


def build_sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS event source sends for a batch of received messages."""
    records = []
    for message in messages:
        attributes = dict(message.get("Attributes") or {})
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
                    "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                    "ApproximateFirstReceiveTimestamp": attributes.get(
                        "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                    ),
                    **{
                        key: value
                        for key, value in attributes.items()
                        if key
                        in {
                            "AWSTraceHeader",
                            "MessageGroupId",
                            "MessageDeduplicationId",
                            "SequenceNumber",
                        }
                    },
                },
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "binaryValue": value.get("BinaryValue"),
                        "stringListValues": value.get("StringListValues", []),
                        "binaryListValues": value.get("BinaryListValues", []),
                        "dataType": value["DataType"],
                    }
                    for name, value in (message.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": LOCAL_REGION,
            }
        )
    return {"Records": records}
