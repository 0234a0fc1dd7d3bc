"""Local stand-ins for EventBridge Scheduler's clock and for watching the event bus.

`SchedulerLoop` reads the schedules from the emulated Scheduler API (the ones the
schedule function created in the stack's group), and when one is due sends its
target's input, with `<aws.scheduler.scheduled-time>` filled in, to the target it
names (the trigger queue), as Scheduler would. Times are computed by the same module
that validates expressions, so a `rate(1 minute)` schedule fires every minute and a
`cron(...)` one at its wall-clock times in its time zone.

`EventLog` adds a rule on the emulated default bus that matches the service's
completion events (`source: datasources`) with an SQS target, and prints every event
that arrives there: the stack's log shows each job's end as downstream consumers
would receive it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import boto3

from local import FAKE_CREDENTIALS, LOCAL_REGION
from local.provision import LocalResources


def _client(service: str, resources: LocalResources) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=LOCAL_REGION,
        endpoint_url=resources.endpoint_url,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class SchedulerLoop:
    """Fires the schedules of the stack's schedule group at their real times."""

    def __init__(
        self,
        resources: LocalResources,
        *,
        group: str,
        tick_seconds: float = 1.0,
        log: Callable[[str], None] = _log,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.resources = resources
        self.group = group
        self.tick_seconds = tick_seconds
        self.log = log
        self.now = now
        self.scheduler = _client("scheduler", resources)
        self.sqs = _client("sqs", resources)
        self.fired = 0
        # Name → (expression, zone, last modification) it was planned for, and its next time.
        self._next: dict[str, tuple[tuple[str, str, str], dt.datetime | None]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.tick_seconds + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the clock must outlive one failed tick
                if self._stop.is_set():
                    return
                self.log(f"[scheduler] tick failed\n{traceback.format_exc()}")

    def tick(self) -> int:
        """Fire every schedule that is due now; return how many fired."""
        from datasources.models.schedule_expression import next_run, parse_expression

        now = self.now()
        fired = 0
        seen: set[str] = set()
        listed = self.scheduler.list_schedules(GroupName=self.group)["Schedules"]
        for summary in listed:
            name = summary["Name"]
            seen.add(name)
            schedule = self.scheduler.get_schedule(Name=name, GroupName=self.group)
            if schedule.get("State") != "ENABLED":
                self._next.pop(name, None)
                continue
            expression = parse_expression(schedule["ScheduleExpression"])
            zone = schedule.get("ScheduleExpressionTimezone") or "UTC"
            modified = schedule.get("LastModificationDate") or schedule.get("CreationDate") or now
            if not isinstance(modified, dt.datetime):
                modified = now
            version = (schedule["ScheduleExpression"], zone, modified.isoformat())
            planned = self._next.get(name)
            if planned is None or planned[0] != version:
                # A rate runs from when the schedule was made; a cron from now.
                first = next_run(expression, zone, now, anchor=modified.astimezone(dt.UTC))
                planned = (version, first)
                self._next[name] = planned
            due = planned[1]
            if due is None or due > now:
                continue
            self._send(schedule["Target"], due)
            fired += 1
            self._next[name] = (version, next_run(expression, zone, due, anchor=due))
        for gone in set(self._next) - seen:
            del self._next[gone]
        self.fired += fired
        return fired

    def _send(self, target: dict[str, Any], due: dt.datetime) -> None:
        scheduled = due.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = str(target.get("Input") or "{}").replace("<aws.scheduler.scheduled-time>", scheduled)
        arn = str(target["Arn"])
        if not arn.startswith("arn:aws:sqs:"):
            self.log(
                f"[scheduler] target {arn} is not a queue; the template names the trigger queue"
            )
            return
        url = self.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
        self.sqs.send_message(QueueUrl=url, MessageBody=body)
        self.log(f"[scheduler] fired {json.loads(body).get('source_id', '?')} for {scheduled}")


EVENT_RULE = "datasources-local-completion-events"


class EventLog:
    """Prints the service's completion events as they reach a rule's SQS target."""

    def __init__(self, resources: LocalResources, *, log: Callable[[str], None] = _log) -> None:
        self.resources = resources
        self.log = log
        self.events = _client("events", resources)
        self.sqs = _client("sqs", resources)
        self.queue_url = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.queue_url = self.sqs.create_queue(QueueName=f"{self.resources.stack_name}-events-log")[
            "QueueUrl"
        ]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.events.put_rule(
            Name=EVENT_RULE, EventPattern=json.dumps({"source": ["datasources"]}), State="ENABLED"
        )
        self.events.put_targets(Rule=EVENT_RULE, Targets=[{"Id": "stack-log", "Arn": arn}])
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                received = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
            except Exception:  # noqa: BLE001 - the endpoint goes away at shutdown
                if self._stop.wait(1):
                    return
                continue
            for message in received.get("Messages") or []:
                self.log(f"[event] {summary(json.loads(message['Body']))}")
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def summary(event: dict[str, Any]) -> str:
    """One line per event: type, job, trigger, records, and the event itself."""
    detail = event.get("detail") or {}
    return (
        f"{event.get('detail-type')}: {detail.get('job_id')} trigger={detail.get('trigger')} "
        f"records={detail.get('records_processed')} {json.dumps(detail, default=str)}"
    )
