"""Every S3, DynamoDB and SQS call the engine makes is allowed by its function's policy.

The calls are recorded by the fault hook while the sync function, the worker and the
reaper run the paths that matter here (inline work, chaining, a retried failure with
backoff, a cancelled run taking its parts back, a give-up to the DLQ, the reaper's
sweep); each is then checked against the policy template.yaml gives that function.
"""

from __future__ import annotations

import json
import time
from typing import Any

from local.cfn import load_template
from local.context import FakeLambdaContext
from tests.conftest import ROOT, Stack
from tests.faults.hook import Faults
from tests.integration.test_sync_engine import connect_file, csv_rows, sync

# The SQS event source mapping grants these on its own queue (SAM adds the policy).
_EVENT_SOURCE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}


def _resource_label(resource: Any) -> str:
    """'DataTable', 'LandingBucket/*', 'SyncQueue', ... for the template's forms."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = str(resource["Fn::Sub"])
        if text.startswith("${") and ".Arn}" in text:
            return text[2:].replace(".Arn}", "", 1)
        return text
    return str(resource)


def allowed(template: dict[str, Any], function: str) -> set[tuple[str, str]]:
    """(action, resource label) pairs the function's policies and events grant."""
    props = template["Resources"][function]["Properties"]
    grants: set[tuple[str, str]] = set()
    for policy in props.get("Policies", []):
        if "Statement" in policy:
            for statement in policy["Statement"]:
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement["Action"]
                resources = statement["Resource"]
                for action in [actions] if isinstance(actions, str) else actions:
                    for resource in resources if isinstance(resources, list) else [resources]:
                        grants.add((action, _resource_label(resource)))
        elif "SQSSendMessagePolicy" in policy:
            queue = policy["SQSSendMessagePolicy"]["QueueName"]["Fn::GetAtt"][0]
            grants.add(("sqs:SendMessage", queue))
    for event in (props.get("Events") or {}).values():
        if event.get("Type") == "SQS":
            queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
            grants |= {(action, queue) for action in _EVENT_SOURCE_ACTIONS}
    return grants


def needed(
    stack: Stack, service: str, operation: str, params: dict[str, Any]
) -> set[tuple[str, str]]:
    """The IAM (action, resource label) pairs one API call needs."""
    queues = {
        stack.resources.queue_url: "SyncQueue",
        stack.resources.dlq_url: "SyncDeadLetterQueue",
    }
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
            kinds["ConditionCheck"] = "ConditionCheckItem"
            return {
                (f"dynamodb:{kinds[kind]}", "DataTable")
                for item in params["TransactItems"]
                for kind in item
            }
        return {(f"dynamodb:{operation}", "DataTable")}
    if service == "s3":
        if operation == "ListObjectsV2":
            return {("s3:ListBucket", "LandingBucket")}
        # DeleteObjects is authorized as s3:DeleteObject on each key.
        action = {"HeadObject": "GetObject", "DeleteObjects": "DeleteObject"}.get(operation)
        return {(f"s3:{action or operation}", "LandingBucket/*")}
    if service == "sqs":
        # SendMessageBatch is authorized as sqs:SendMessage.
        action = "SendMessage" if operation == "SendMessageBatch" else operation
        return {(f"sqs:{action}", queues[params["QueueUrl"]])}
    return set()


def test_every_call_of_the_engine_is_allowed_by_its_functions_policy(
    stack: Stack, faulty: Faults
) -> None:
    template = load_template(str(ROOT / "template.yaml"))
    # Inline: one source fails for good (its unit's parts are swept), one chains.
    faulty.phase = "SyncSourcesFunction"
    broken = connect_file(stack, "uploads/acme/iam/bad/a.csv", csv_rows(1, 2001))
    stack.s3.put_object(
        Bucket=stack.bucket, Key="uploads/acme/iam/bad/b.csv", Body=b'id,name\n1,x\n"open\n'
    )
    stack.call("sync", body={"source_ids": [broken]})
    source_id = connect_file(stack, "uploads/acme/iam/ok/orders.csv", csv_rows(1, 3001))
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0, RETRY_DELAY_SECONDS=30)
    job_id = sync(stack, source_id, batch_size=300).data["job_id"]
    # The worker: a chunk, then a failure without progress (backoff), then a give-up.
    faulty.phase = "SyncWorkerFunction"
    stack.deliver(stack.receive(1)[0], remaining_ms=1000)
    stack.s3.delete_object(Bucket=stack.bucket, Key="uploads/acme/iam/ok/orders.csv")
    message = stack.receive(1)[0]
    for attempt in (1, 3):
        message["Attributes"]["ApproximateReceiveCount"] = str(attempt)
        stack.deliver(message)
    # A cancelled run takes back its parts.
    other = connect_file(stack, "uploads/acme/iam/cancel/orders.csv", csv_rows(1, 3001))
    faulty.phase = ""
    cancelled = sync(stack, other, batch_size=300).data["job_id"]
    stack.call("cleanup", body={"source_ids": [other]})
    faulty.phase = "SyncWorkerFunction"
    stack.drain(remaining_ms=60_000)
    # The reaper: a dead letter, then a scheduled run that ends a stalled job.
    faulty.phase = "SyncReaperFunction"
    reaper = stack.handler("sync_reaper")
    dead = stack.sqs.receive_message(QueueUrl=stack.resources.dlq_url).get("Messages", [])
    assert dead and json.loads(dead[0]["Body"])["job_id"] == job_id
    reaper(stack.sqs_event(dead[0]), FakeLambdaContext(frozen=True))
    from datasources.services.reaper import reap

    reap(now=time.time() + 10_000)
    assert cancelled

    calls: dict[str, set[tuple[str, str]]] = {}
    for phase, service, operation, params in faulty.calls:
        if phase and service in {"dynamodb", "s3", "sqs"}:
            calls.setdefault(phase, set()).update(needed(stack, service, operation, params))
    assert set(calls) == {"SyncSourcesFunction", "SyncWorkerFunction", "SyncReaperFunction"}
    assert ("s3:DeleteObject", "LandingBucket/*") in calls["SyncWorkerFunction"]
    assert ("sqs:ChangeMessageVisibility", "SyncQueue") in calls["SyncWorkerFunction"]
    for function, used in calls.items():
        missing = used - allowed(template, function)
        assert not missing, f"{function} calls what its policy does not allow: {sorted(missing)}"
