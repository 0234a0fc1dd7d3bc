"""template.yaml declares what the product needs: its routes and functions, their
runtime and time limits, the settings the code reads, the API stage, the queue and
storage settings, and sample events that match their routes.

Read from the template itself, so a change that drops a route or a safety setting
fails here before any deploy (docs/architecture.md describes the shape they check).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.functions import functions, routes, sqs_functions
from local.gateway import compile_route
from tests.support.template import CODE_URIS, EXPECTED_ROUTES, props, resource

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- routes


def test_every_published_route_is_declared_with_its_method_and_function(
    template: dict[str, Any],
) -> None:
    declared = {(r.method, r.path): r.logical_id for r in routes(template)}
    assert declared == EXPECTED_ROUTES


def test_each_function_has_its_code_dir_and_the_app_handler(template: dict[str, Any]) -> None:
    specs = functions(template)
    assert {lid: spec.code_uri for lid, spec in specs.items()} == CODE_URIS
    assert {spec.handler for spec in specs.values()} == {"app.handler"}


def test_api_functions_finish_before_api_gateway_cuts_the_request(
    template: dict[str, Any],
) -> None:
    specs = functions(template)
    for route in routes(template):
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
    triggers = {t.logical_id: t for t in sqs_functions(template)}
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
    worker_timeout = functions(template)["SyncWorkerFunction"].timeout
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


# --------------------------------------------------------------------------- events/


@pytest.mark.parametrize("route_key", sorted(EXPECTED_ROUTES))
def test_sample_event_matches_its_route(
    template: dict[str, Any], route_key: tuple[str, str]
) -> None:
    method, path = route_key
    (route,) = [r for r in routes(template) if (r.method, r.path) == route_key]
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
