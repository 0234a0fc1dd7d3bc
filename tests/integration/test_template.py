"""template.yaml says what the product brief and DESIGN.md require, and the local stack
built from it (provisioning, gateway, SQS worker loop) behaves as AWS would.

Read from the template itself, so a change that drops a route, a policy boundary or
a safety setting fails here before any deploy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from local import provision
from local.gateway import LocalGateway, build_proxy_event, compile_route
from local.worker_loop import WorkerLoop

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

EXPECTED_ROUTES = {
    ("POST", "/api/v1/data/{workspace_id}/connect"): "ConnectSourcesFunction",
    ("GET", "/api/v1/data/{workspace_id}/list"): "ListSourcesFunction",
    ("POST", "/api/v1/data/{workspace_id}/sync"): "SyncSourcesFunction",
    ("GET", "/api/v1/data/{workspace_id}/sync/{job_id}"): "SyncStatusFunction",
    ("POST", "/api/v1/data/{workspace_id}/cleanup"): "CleanupSourcesFunction",
    ("POST", "/api/v1/data/{workspace_id}/test-connection"): "TestConnectionFunction",
    ("GET", "/api/v1/data/{workspace_id}/schema"): "GetSchemaFunction",
    ("GET", "/api/v1/data/{workspace_id}/preview"): "PreviewSourceFunction",
    ("POST", "/api/v1/data/{workspace_id}/schedule"): "SetScheduleFunction",
    ("GET", "/api/v1/data/{workspace_id}/schedules"): "ListSchedulesFunction",
}
CODE_URIS = {
    "ConnectSourcesFunction": "functions/connect_sources",
    "ListSourcesFunction": "functions/list_sources",
    "SyncSourcesFunction": "functions/sync_sources",
    "SyncStatusFunction": "functions/sync_status",
    "CleanupSourcesFunction": "functions/cleanup_sources",
    "TestConnectionFunction": "functions/test_connection",
    "GetSchemaFunction": "functions/get_schema",
    "PreviewSourceFunction": "functions/preview_source",
    "SyncWorkerFunction": "functions/sync_worker",
    "SyncReaperFunction": "functions/sync_reaper",
    "SetScheduleFunction": "functions/set_schedule",
    "ListSchedulesFunction": "functions/list_schedules",
    "SyncTriggerFunction": "functions/sync_trigger",
}
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


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return provision.load_template(TEMPLATE_PATH)


def resource(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id])


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties") or {})


def policy_entries(template: dict[str, Any], logical_id: str) -> list[Any]:
    """A function's Policies, with both branches of any Fn::If (either may be deployed)."""
    entries: list[Any] = []
    for entry in props(template, logical_id).get("Policies") or []:
        if isinstance(entry, dict) and "Fn::If" in entry:
            entries.extend(
                branch for branch in entry["Fn::If"][1:] if branch != {"Ref": "AWS::NoValue"}
            )
        else:
            entries.append(entry)
    return entries


def actions_and_templates(template: dict[str, Any], logical_id: str) -> tuple[set[str], set[str]]:
    actions: set[str] = set()
    templates: set[str] = set()
    for entry in policy_entries(template, logical_id):
        if isinstance(entry, str):
            templates.add(entry)  # a managed policy name or ARN
        elif "Statement" in entry:
            for statement in entry["Statement"]:
                assert statement["Effect"] == "Allow"
                action = statement["Action"]
                actions.update([action] if isinstance(action, str) else action)
        else:
            templates.update(entry)
    return actions, templates


# --------------------------------------------------------------------------- routes


def test_every_published_route_is_declared_with_its_method_and_function(
    template: dict[str, Any],
) -> None:
    declared = {(r.method, r.path): r.logical_id for r in provision.routes(template)}
    assert declared == EXPECTED_ROUTES


def test_each_function_has_its_code_dir_and_the_app_handler(template: dict[str, Any]) -> None:
    specs = provision.functions(template)
    assert {lid: spec.code_uri for lid, spec in specs.items()} == CODE_URIS
    assert {spec.handler for spec in specs.values()} == {"app.handler"}


def test_api_functions_finish_before_api_gateway_cuts_the_request(
    template: dict[str, Any],
) -> None:
    specs = provision.functions(template)
    for route in provision.routes(template):
        assert specs[route.logical_id].timeout <= 29, route.logical_id
    assert specs["SyncWorkerFunction"].timeout == 900


def test_runtime_is_python_313_on_arm64_with_tracing(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Tracing"] == "Active"
    for lid in CODE_URIS:
        assert "Runtime" not in props(template, lid), f"{lid} overrides the runtime"
        assert "Architectures" not in props(template, lid), f"{lid} overrides the architecture"


def test_globals_environment_names_every_setting_the_code_reads(
    template: dict[str, Any],
) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "LOG_LEVEL",
        "TABLE_NAME",
        "BUCKET_NAME",
        "QUEUE_URL",
        "SECRET_PREFIX",
        "JWT_SECRET_ARN",
        "JWKS_URL",
        "JWT_ALGORITHMS",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "ALLOWED_CIDRS",
        "SYNC_TIME_BUDGET_SECONDS",
    } <= set(env)
    assert env["TABLE_NAME"] == {"Ref": "DataTable"}
    assert env["SECRET_PREFIX"] == {"Fn::Sub": "${AWS::StackName}/sources"}
    params = template["Parameters"]
    assert params["JwtAlgorithms"]["Default"] == "HS256"
    assert params["AllowedCidrs"]["Default"] == ""
    assert int(params["SyncTimeBudgetSeconds"]["Default"]) < 29


def test_api_stage_is_throttled_and_traced(template: dict[str, Any]) -> None:
    api = props(template, "Api")
    assert resource(template, "Api")["Type"] == "AWS::Serverless::Api"
    assert api["TracingEnabled"] is True
    (setting,) = api["MethodSettings"]
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    # API Gateway's own answers keep the JSON envelope, and an unknown route is a 404.
    responses = api["GatewayResponses"]
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == 404
    for response in responses.values():
        body = next(iter(response["ResponseTemplates"].values()))
        assert body.startswith('{"status":"error"')


def test_outputs_include_the_api_url_and_resource_names(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert {"ApiUrl", "TableName", "QueueUrl", "BucketName", "DeadLetterQueueUrl"} <= set(outputs)
    assert "/api/v1/data" in outputs["ApiUrl"]["Value"]["Fn::Sub"]


# --------------------------------------------------------------------------- worker and queue


def test_worker_takes_one_message_at_a_time_and_reports_partial_failures(
    template: dict[str, Any],
) -> None:
    triggers = {t.logical_id: t for t in provision.sqs_functions(template)}
    # The reaper consumes the dead-letter queue (it fails the units given up on).
    assert triggers["SyncReaperFunction"].queue_logical_id == "SyncDeadLetterQueue"
    trigger = triggers["SyncWorkerFunction"]
    assert trigger.queue_logical_id == "SyncQueue"
    assert trigger.batch_size == 1
    assert trigger.report_batch_item_failures
    worker = props(template, "SyncWorkerFunction")
    assert worker["ReservedConcurrentExecutions"] == {"Ref": "WorkerReservedConcurrency"}
    assert template["Parameters"]["WorkerReservedConcurrency"]["Default"] == 10


def test_queue_visibility_covers_six_worker_timeouts_and_redrives_to_the_dlq(
    template: dict[str, Any],
) -> None:
    queue = props(template, "SyncQueue")
    worker_timeout = provision.functions(template)["SyncWorkerFunction"].timeout
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["SyncDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    for queue_id in ("SyncQueue", "SyncDeadLetterQueue"):
        assert props(template, queue_id)["SqsManagedSseEnabled"] is True


# --------------------------------------------------------------------------- storage


def test_table_is_on_demand_with_pitr_encryption_and_ttl(template: dict[str, Any]) -> None:
    table = props(template, "DataTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_bucket_blocks_public_access_encrypts_and_refuses_plain_http(
    template: dict[str, Any],
) -> None:
    bucket = props(template, "LandingBucket")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    policy = props(template, "LandingBucketPolicy")
    assert policy["Bucket"] == {"Ref": "LandingBucket"}
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_jwt_secret_exists_only_without_a_jwks_url(template: dict[str, Any]) -> None:
    secret = resource(template, "JwtSigningSecret")
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Condition"] == "CreateJwtSecret"
    assert template["Conditions"]["CreateJwtSecret"] == {"Fn::Equals": [{"Ref": "JwksUrl"}, ""]}
    assert "GenerateSecretString" in secret["Properties"]


# --------------------------------------------------------------------------- layers and IAM


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


# --------------------------------------------------------------------------- events/


@pytest.mark.parametrize("route_key", sorted(EXPECTED_ROUTES))
def test_sample_event_matches_its_route(
    template: dict[str, Any], route_key: tuple[str, str]
) -> None:
    method, path = route_key
    (route,) = [r for r in provision.routes(template) if (r.method, r.path) == route_key]
    event = json.loads((ROOT / "events" / f"{Path(route.code_uri).name}.json").read_text())
    assert event["httpMethod"] == method
    assert event["resource"] == path
    assert event["requestContext"]["resourcePath"] == path
    match = compile_route(route).pattern.match(event["path"])
    assert match is not None and match.groupdict() == event["pathParameters"]
    assert event["pathParameters"]["workspace_id"] == "ws_demo"
    assert event["headers"]["Authorization"] == "Bearer REPLACE_WITH_TOKEN"
    if method == "POST":
        json.loads(event["body"])  # a JSON body, as the published examples send


def test_worker_sample_event_is_an_sqs_batch_of_one() -> None:
    event = json.loads((ROOT / "events" / "sync_worker.json").read_text())
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:sqs"
    body = json.loads(record["body"])
    assert body["job_id"].startswith("job_")
    assert body["pk"].startswith("ORG#acme#WS#ws_demo#")


# --------------------------------------------------------------------------- provisioning


@pytest.fixture
def emulated_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[provision.LocalResources]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield provision.provision(
            template_path=TEMPLATE_PATH, secret_values={"JwtSigningSecret": "s3cr3t"}
        )


def test_provisioning_creates_the_table_as_the_template_declares(
    emulated_aws: provision.LocalResources,
) -> None:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = ddb.describe_table(TableName=emulated_aws.table_name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSEDescription"]["Status"] == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=emulated_aws.table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    backups = ddb.describe_continuous_backups(TableName=emulated_aws.table_name)
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"


def test_provisioning_creates_the_bucket_private_and_encrypted(
    emulated_aws: provision.LocalResources,
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    assert emulated_aws.bucket_name == "datasources-local-landingbucket"
    block = s3.get_public_access_block(Bucket=emulated_aws.bucket_name)
    assert set(block["PublicAccessBlockConfiguration"].values()) == {True}
    rules = s3.get_bucket_encryption(Bucket=emulated_aws.bucket_name)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=emulated_aws.bucket_name)["Status"] == "Enabled"
    # moto cannot tell TLS from plain HTTP: the template's TLS-only Deny must not be
    # applied locally, or it would refuse every request.
    s3.put_object(Bucket=emulated_aws.bucket_name, Key="probe.txt", Body=b"ok")
    body = s3.get_object(Bucket=emulated_aws.bucket_name, Key="probe.txt")["Body"].read()
    assert body == b"ok"


def test_provisioning_wires_the_queue_to_its_dead_letter_queue(
    emulated_aws: provision.LocalResources,
) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    attrs = sqs.get_queue_attributes(QueueUrl=emulated_aws.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=emulated_aws.dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert attrs["VisibilityTimeout"] == "5400"
    assert json.loads(attrs["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 3,
    }


def test_provisioning_is_repeatable_and_stores_the_pinned_jwt_key(
    emulated_aws: provision.LocalResources,
) -> None:
    again = provision.provision(template_path=TEMPLATE_PATH)
    assert again.queue_url == emulated_aws.queue_url
    assert again.jwt_secret_arn == emulated_aws.jwt_secret_arn
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    assert emulated_aws.jwt_secret_arn is not None
    value = secrets.get_secret_value(SecretId=emulated_aws.jwt_secret_arn)["SecretString"]
    assert value == "s3cr3t"


def test_function_environment_points_at_the_local_resources(
    template: dict[str, Any], emulated_aws: provision.LocalResources
) -> None:
    env = provision.function_environment(template, emulated_aws, "ConnectSourcesFunction")
    assert env["TABLE_NAME"] == emulated_aws.table_name
    assert env["BUCKET_NAME"] == emulated_aws.bucket_name
    assert env["QUEUE_URL"] == emulated_aws.queue_url
    assert env["SECRET_PREFIX"] == "datasources-local/sources"
    assert env["JWT_SECRET_ARN"] == emulated_aws.jwt_secret_arn
    assert env["LOCAL_MODE"] == "true"
    assert env["JWT_SECRET"] == provision.DEV_JWT_SECRET
    assert "AWS_ENDPOINT_URL" not in env  # in-process moto: no endpoint to point at


# --------------------------------------------------------------------------- local gateway


class Recorder:
    """Stands in for handler modules: records events, answers as told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], Any]] = []
        self.answer: Any = None

    def loader(self, code_uri: str, handler: str = "app.handler") -> Any:
        def handle(event: dict[str, Any], context: Any) -> Any:
            self.events.append((code_uri, event, context))
            if isinstance(self.answer, BaseException):
                raise self.answer
            if self.answer is not None:
                return self.answer
            return {
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"status": "success", "message": "ok", "data": None}),
            }

        return handle


@pytest.fixture
def gateway(template: dict[str, Any]) -> Iterator[tuple[LocalGateway, Recorder]]:
    recorder = Recorder()
    server = LocalGateway(
        provision.routes(template), port=0, loader=recorder.loader, log=lambda line: None
    )
    server.start()
    try:
        yield server, recorder
    finally:
        server.stop()


def test_gateway_sends_a_rest_proxy_event_to_the_routed_function(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    response = requests.get(
        f"{server.url}/api/v1/data/ws_1/sync/job_0123456789abcdef0123?scope=user&x=1&x=2",
        headers={"Authorization": "Bearer t"},
        timeout=10,
    )
    assert response.status_code == 200
    ((code_uri, event, context),) = recorder.events
    assert code_uri == "functions/sync_status"
    assert event["resource"] == "/api/v1/data/{workspace_id}/sync/{job_id}"
    assert event["path"] == "/api/v1/data/ws_1/sync/job_0123456789abcdef0123"
    assert event["pathParameters"] == {"workspace_id": "ws_1", "job_id": "job_0123456789abcdef0123"}
    assert event["queryStringParameters"] == {"scope": "user", "x": "2"}
    assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert event["headers"]["Authorization"] == "Bearer t"
    assert event["requestContext"]["stage"] == "v1"
    assert event["requestContext"]["path"] == "/v1" + event["path"]
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["body"] is None and event["isBase64Encoded"] is False
    # The context counts down from the function's Timeout (29 s in the template).
    assert 0 < context.get_remaining_time_in_millis() <= 29_000


def test_gateway_answers_unknown_routes_and_methods_with_a_404_envelope(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    for method, path in [("GET", "/api/v1/data/ws_1/nope"), ("DELETE", "/api/v1/data/ws_1/list")]:
        response = requests.request(method, server.url + path, timeout=10)
        assert response.status_code == 404
        assert response.json() == {"status": "error", "message": "Not found", "data": None}
    assert recorder.events == []


def test_gateway_refuses_bodies_over_api_gateways_10_mb_limit(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    response = requests.post(
        server.url + "/api/v1/data/ws_1/connect", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30
    )
    assert response.status_code == 413
    assert response.json()["status"] == "error"
    assert recorder.events == []


def test_gateway_turns_a_crashing_handler_into_a_502_with_the_request_id(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    recorder.answer = RuntimeError("boom")
    response = requests.post(server.url + "/api/v1/data/ws_1/sync", json={}, timeout=10)
    assert response.status_code == 502
    body = response.json()
    assert body["message"] == "Internal server error"
    assert body["data"]["request_id"] == response.headers["x-amzn-RequestId"]
    assert "boom" not in response.text


def test_gateway_passes_status_headers_and_body_through(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    recorder.answer = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Test": "yes"},
        "body": '{"status":"success","message":"created","data":{"n":1}}',
    }
    response = requests.post(
        server.url + "/api/v1/data/ws_1/connect", json={"sources": []}, timeout=10
    )
    assert response.status_code == 201
    assert response.headers["X-Test"] == "yes"
    assert response.json()["data"] == {"n": 1}
    (_, event, _) = recorder.events[0]
    assert json.loads(event["body"]) == {"sources": []}


def test_gateway_serves_swagger_ui_assets_offline(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, _ = gateway
    page = requests.get(server.url + "/docs", timeout=10)
    assert page.status_code == 200 and "/openapi.yaml" in page.text
    bundle = requests.get(server.url + "/docs/swagger-ui-bundle.js", timeout=10)
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    assert requests.get(server.url + "/docs/../template.yaml", timeout=10).status_code == 404


def test_proxy_event_marks_binary_bodies_as_base64() -> None:
    route = provision.Route("POST", "/x/{id}", "F", "functions/f", "app.handler")
    event = build_proxy_event(
        route=route,
        method="POST",
        raw_path="/x/a%20b",
        headers=[("Content-Type", "application/octet-stream")],
        body=b"\xff\xfe",
        path_parameters={"id": "a b"},
        stage="v1",
    )
    assert event["isBase64Encoded"] is True and event["body"] == "//4="
    assert event["path"] == "/x/a b"


# --------------------------------------------------------------------------- local SQS worker


@pytest.fixture
def worker_setup(
    template: dict[str, Any], emulated_aws: provision.LocalResources
) -> tuple[WorkerLoop, Recorder, Any]:
    recorder = Recorder()
    sqs = boto3.client("sqs", region_name="us-east-1")
    loop = WorkerLoop(
        [t for t in provision.sqs_functions(template) if t.logical_id == "SyncWorkerFunction"],
        emulated_aws,
        sqs_client=sqs,
        loader=recorder.loader,
        retry_delay_seconds=0,
        log=lambda line: None,
    )
    return loop, recorder, sqs


def test_worker_loop_sends_a_real_sqs_event_and_deletes_a_success(
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: provision.LocalResources
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
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: provision.LocalResources
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
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: provision.LocalResources
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
    worker_setup: tuple[WorkerLoop, Recorder, Any], emulated_aws: provision.LocalResources
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
