"""template.yaml's triggers and events: least privilege, the upload rule, coalescing, alarms."""

from __future__ import annotations

from typing import Any

from local.functions import functions, sqs_functions
from tests.support.template import actions_and_templates, policy_entries, props

GROUP_SCHEDULES = {
    "Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:"
    "schedule/${SyncScheduleGroup}/*"
}


def statements(template: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in policy_entries(template, logical_id):
        if isinstance(entry, dict) and "Statement" in entry:
            out.extend(entry["Statement"])
    return out


def test_only_the_schedule_function_passes_a_role_and_only_the_scheduler_role_to_scheduler(
    template: dict[str, Any],
) -> None:
    passing = []
    for lid, spec in functions(template).items():
        for statement in statements(template, spec.logical_id):
            action = statement["Action"]
            if "iam:PassRole" in ([action] if isinstance(action, str) else action):
                passing.append((lid, statement))
    assert len(passing) == 1
    lid, statement = passing[0]
    assert lid == "SetScheduleFunction"
    assert statement["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert statement["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }


def test_schedule_actions_are_confined_to_the_stacks_group(template: dict[str, Any]) -> None:
    for lid in functions(template):
        for statement in statements(template, lid):
            action = statement["Action"]
            actions = [action] if isinstance(action, str) else action
            if any(a.startswith("scheduler:") for a in actions):
                assert statement["Resource"] == GROUP_SCHEDULES, lid
    actions, _ = actions_and_templates(template, "CleanupSourcesFunction")
    assert {a for a in actions if a.startswith("scheduler:")} == {"scheduler:DeleteSchedule"}


def test_the_scheduler_role_may_only_send_to_the_trigger_queue(template: dict[str, Any]) -> None:
    role = props(template, "SchedulerRole")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    (policy,) = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["TriggerQueue", "Arn"]},
        }
    ]


def test_uploads_reach_the_trigger_queue_through_one_rule(template: dict[str, Any]) -> None:
    bucket = props(template, "LandingBucket")
    assert bucket["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    rule = props(template, "UploadTriggerRule")
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": "LandingBucket"}]},
            "object": {"key": [{"prefix": "uploads/"}]},
        },
    }
    assert rule["Targets"] == [
        {"Id": "trigger-queue", "Arn": {"Fn::GetAtt": ["TriggerQueue", "Arn"]}}
    ]
    (statement,) = props(template, "TriggerQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["UploadTriggerRule", "Arn"]}}
    }


def test_the_trigger_function_coalesces_batches_and_retries_through_its_dlq(
    template: dict[str, Any],
) -> None:
    (trigger,) = [t for t in sqs_functions(template) if t.queue_logical_id == "TriggerQueue"]
    assert trigger.logical_id == "SyncTriggerFunction"
    assert trigger.batch_size == 100 and trigger.batching_window == 10
    assert trigger.report_batch_item_failures
    queue = props(template, "TriggerQueue")
    assert queue["VisibilityTimeout"] >= 6 * trigger.timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]
    }


def test_every_function_that_ends_jobs_may_put_events_on_the_default_bus_only(
    template: dict[str, Any],
) -> None:
    bus = {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"
    }
    for lid in (
        "SyncSourcesFunction",
        "SyncWorkerFunction",
        "SyncTriggerFunction",
        "CleanupSourcesFunction",
    ):
        puts = [s for s in statements(template, lid) if s["Action"] == "events:PutEvents"]
        assert [s["Resource"] for s in puts] == [bus], lid


def test_alarms_watch_the_dead_letter_queues_worker_errors_and_throttles(
    template: dict[str, Any],
) -> None:
    alarms = {
        lid: spec["Properties"]
        for lid, spec in template["Resources"].items()
        if spec["Type"] == "AWS::CloudWatch::Alarm"
    }
    watched = {
        (
            a["MetricName"],
            a["Dimensions"][0]["Value"].get("Ref") or a["Dimensions"][0]["Value"]["Fn::GetAtt"][0],
        )
        for a in alarms.values()
    }
    assert watched >= {
        ("ApproximateNumberOfMessagesVisible", "SyncDeadLetterQueue"),
        ("ApproximateNumberOfMessagesVisible", "TriggerDeadLetterQueue"),
        ("Errors", "SyncWorkerFunction"),
        ("Throttles", "SyncWorkerFunction"),
        ("Errors", "SyncTriggerFunction"),
    }
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == ""
