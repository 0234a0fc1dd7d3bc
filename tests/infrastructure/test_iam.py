"""template.yaml gives each function the least it needs: the connector layer only where
sources are touched, read-only policies for the functions that only read, source
secrets confined to the stack's prefix, queue and batch rights only where used.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.template import (
    CODE_URIS,
    EXPECTED_ROUTES,
    actions_and_templates,
    policy_entries,
    props,
    resource,
)

LIGHT_FUNCTIONS = [
    "ConnectSourcesFunction",
    "ListSourcesFunction",
    "CleanupSourcesFunction",
    "SyncStatusFunction",
    "SetScheduleFunction",
    "ListSchedulesFunction",
]

HEAVY_FUNCTIONS = [
    "SyncSourcesFunction",
    "SyncWorkerFunction",
    "SyncTriggerFunction",
    "TestConnectionFunction",
    "GetSchemaFunction",
    "PreviewSourceFunction",
]

# Actions that only read. Anything else in a read-only function's policy is a write.
READ_ONLY_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:DescribeTable",
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "s3:GetObject",
    "s3:ListBucket",
}

READ_ONLY_POLICY_TEMPLATES = {
    "DynamoDBReadPolicy",
    "S3ReadPolicy",
    "AWSSecretsManagerGetSecretValuePolicy",
}


def test_only_functions_that_touch_sources_carry_the_connector_layer(
    template: dict[str, Any],
) -> None:
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "SharedLayer"}]
    for lid in LIGHT_FUNCTIONS:
        assert {"Ref": "ConnectorDepsLayer"} not in (props(template, lid).get("Layers") or [])
    for lid in HEAVY_FUNCTIONS:
        assert {"Ref": "ConnectorDepsLayer"} in props(template, lid)["Layers"], lid
    for layer in ("SharedLayer", "ConnectorDepsLayer"):
        meta = resource(template, layer)["Metadata"]
        assert meta == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


@pytest.mark.parametrize(
    "logical_id",
    [
        "ListSourcesFunction",
        "SyncStatusFunction",
        "GetSchemaFunction",
        "PreviewSourceFunction",
        "ListSchedulesFunction",
    ],
)
def test_read_only_functions_cannot_write(template: dict[str, Any], logical_id: str) -> None:
    actions, templates = actions_and_templates(template, logical_id)
    assert actions, "the function must be able to read the table"
    assert actions <= READ_ONLY_ACTIONS, f"write actions: {sorted(actions - READ_ONLY_ACTIONS)}"
    assert templates <= READ_ONLY_POLICY_TEMPLATES, sorted(templates - READ_ONLY_POLICY_TEMPLATES)


def test_test_connection_reaches_no_registry_and_no_stored_secrets(
    template: dict[str, Any],
) -> None:
    actions, templates = actions_and_templates(template, "TestConnectionFunction")
    assert not {a for a in actions if a.startswith(("dynamodb:", "secretsmanager:"))}
    assert actions <= READ_ONLY_ACTIONS
    # Its only secret is the JWT key, through the conditional policy template.
    assert templates == {"AWSSecretsManagerGetSecretValuePolicy"}


def test_every_api_function_may_read_the_jwt_key_and_the_worker_may_not(
    template: dict[str, Any],
) -> None:
    jwt_policy = {
        "AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "JwtSigningSecret"}}
    }
    for lid in EXPECTED_ROUTES.values():
        assert jwt_policy in policy_entries(template, lid), lid
    assert jwt_policy not in policy_entries(template, "SyncWorkerFunction")


def test_source_secrets_are_confined_to_the_stack_prefix(template: dict[str, Any]) -> None:
    prefix_arn = (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"
        "secret:${AWS::StackName}/sources/*"
    )
    for lid in CODE_URIS:
        for entry in policy_entries(template, lid):
            for statement in entry.get("Statement", []) if isinstance(entry, dict) else []:
                action = statement["Action"]
                names = [action] if isinstance(action, str) else action
                if any(name.startswith("secretsmanager:") for name in names):
                    assert statement["Resource"] == {"Fn::Sub": prefix_arn}, lid
    connect, _ = actions_and_templates(template, "ConnectSourcesFunction")
    assert {"secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"} <= connect
    cleanup, _ = actions_and_templates(template, "CleanupSourcesFunction")
    assert "secretsmanager:DeleteSecret" in cleanup
    assert "secretsmanager:CreateSecret" not in cleanup


def test_sync_worker_and_cleanup_may_enqueue_continuations(template: dict[str, Any]) -> None:
    send = {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["SyncQueue", "QueueName"]}}}
    senders = ("SyncSourcesFunction", "SyncWorkerFunction", "CleanupSourcesFunction")
    for lid in senders:
        assert send in policy_entries(template, lid), lid
    for lid in [
        *LIGHT_FUNCTIONS,
        "TestConnectionFunction",
        "GetSchemaFunction",
        "PreviewSourceFunction",
    ]:
        if lid not in senders:
            assert send not in policy_entries(template, lid), lid


@pytest.mark.parametrize(
    "logical_id", ["SyncSourcesFunction", "SyncWorkerFunction", "CleanupSourcesFunction"]
)
def test_functions_that_read_sources_by_id_may_batch_get(
    template: dict[str, Any], logical_id: str
) -> None:
    # dal.sources.get_sources reads up to 100 sources in one BatchGetItem.
    actions, _ = actions_and_templates(template, logical_id)
    assert "dynamodb:BatchGetItem" in actions


@pytest.mark.parametrize("logical_id", ["SyncWorkerFunction", "CleanupSourcesFunction"])
def test_cleanup_and_the_worker_continuing_it_may_schedule_secret_deletion(
    template: dict[str, Any], logical_id: str
) -> None:
    actions, _ = actions_and_templates(template, logical_id)
    assert {"secretsmanager:DeleteSecret", "secretsmanager:DescribeSecret"} <= actions
    assert {"dynamodb:BatchWriteItem", "dynamodb:Query"} <= actions
    assert "secretsmanager:CreateSecret" not in actions
