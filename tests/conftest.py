"""Fixtures shared by the integration and end-to-end suites.

`stack` is emulated AWS (moto, in-process) provisioned from template.yaml's own
resource definitions, with the functions' environment taken from the template too,
so the tests and the infrastructure cannot drift apart.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The functions get their service name and metrics namespace from the template's
# globals; the shared Logger and Metrics are made at the first import, whichever test
# comes first. Without them the logger is not `datasources` (tests that read its lines
# attach there), and the 100th unflushed metric (tests that call the engine directly
# never flush) raises for want of a namespace.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "datasources")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DataSources")

from local.context import FakeLambdaContext
from local.tokens import mint_token

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
TEST_JWT_SECRET = "integration-test-secret-0123456789abcdef"


@dataclass
class Response:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def data(self) -> Any:
        return self.body.get("data")


def mint(sub: str = "user-1", org: str = "acme", role: str = "admin", **claims: Any) -> str:
    """A token the `stack` fixture accepts: local/tokens.py's, signed with the tests' secret.

    Extra keyword arguments are claims, and replace the minted ones (`exp=...`).
    """
    return mint_token(sub, org, role, secret=TEST_JWT_SECRET, ttl_seconds=600, extra_claims=claims)


class Stack:
    """Handlers invoked in-process with the `events/` samples against emulated AWS."""

    ENDPOINTS = {
        "connect": ("connect_sources", "ConnectSourcesFunction"),
        "list": ("list_sources", "ListSourcesFunction"),
        "sync": ("sync_sources", "SyncSourcesFunction"),
        "status": ("sync_status", "SyncStatusFunction"),
        "cleanup": ("cleanup_sources", "CleanupSourcesFunction"),
        "test": ("test_connection", "TestConnectionFunction"),
        "schema": ("get_schema", "GetSchemaFunction"),
        "preview": ("preview_source", "PreviewSourceFunction"),
        "schedule": ("set_schedule", "SetScheduleFunction"),
        "schedules": ("list_schedules", "ListSchedulesFunction"),
    }

    def __init__(self, resources: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        import boto3

        self.resources = resources
        self._monkeypatch = monkeypatch
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.ddb = boto3.client("dynamodb", region_name="us-east-1")
        self.secrets = boto3.client("secretsmanager", region_name="us-east-1")
        self.bucket = resources.bucket_name
        self.queue_url = resources.queue_url
        self.trigger_queue_url = resources.by_logical_id["TriggerQueue"].ref
        self.default_token = mint()

    def configure(self, **env: Any) -> None:
        """Change settings mid-test (e.g. a tiny sync time budget)."""
        from datasources.config import get_settings

        for name, value in env.items():
            self._monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    def handler(self, name: str) -> Any:
        from local.functions import load_handler

        return load_handler(f"functions/{name}")

    def call(
        self,
        endpoint: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        path: dict[str, str] | None = None,
        token: str | None = None,
        workspace_id: str = "ws_demo",
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
        context: FakeLambdaContext | None = None,
    ) -> Response:
        """Invoke one endpoint's real handler with its sample event, adjusted."""
        function_dir, _ = self.ENDPOINTS[endpoint]
        event = copy.deepcopy(json.loads((EVENTS / f"{function_dir}.json").read_text()))
        event["headers"] = dict(event.get("headers") or {})
        event["headers"]["Authorization"] = f"Bearer {token or self.default_token}"
        if headers is not None:
            event["headers"] = headers
        event["pathParameters"] = {
            **(event.get("pathParameters") or {}),
            "workspace_id": workspace_id,
        }
        if path:
            event["pathParameters"].update(path)
        if query is not None:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        if raw_body is not None:
            event["body"] = raw_body
        elif body is not None:
            event["body"] = json.dumps(body)
        event["isBase64Encoded"] = False
        event.setdefault("requestContext", {})["requestId"] = str(uuid.uuid4())
        context = context or FakeLambdaContext(frozen=True)
        result = self.handler(function_dir)(event, context)
        return Response(result["statusCode"], json.loads(result["body"]), result.get("headers", {}))

    # ---- the worker side

    def receive(self, max_messages: int = 10) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
            VisibilityTimeout=0,
        )
        return list(response.get("Messages", []))

    def sqs_event(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
                        "SentTimestamp": attributes.get("SentTimestamp", "0"),
                        "SenderId": "test",
                        "ApproximateFirstReceiveTimestamp": "0",
                    },
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:sync-queue",
                    "awsRegion": "us-east-1",
                }
            ]
        }

    def deliver(self, message: dict[str, Any], *, remaining_ms: int = 60_000) -> dict[str, Any]:
        """Run the worker on one message; delete it unless it failed (like Lambda's poller)."""
        result = self.handler("sync_worker")(
            self.sqs_event(message),
            FakeLambdaContext(timeout_seconds=remaining_ms / 1000, frozen=True),
        )
        if not result.get("batchItemFailures"):
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return dict(result)

    def drain(self, *, remaining_ms: int = 60_000, max_rounds: int = 500) -> int:
        """Deliver queued messages until the queue is empty; returns how many ran."""
        for delivered in range(max_rounds):
            messages = self.receive(1)
            if not messages:
                return delivered
            self.deliver(messages[0], remaining_ms=remaining_ms)
        raise AssertionError("the queue did not drain")

    # ---- the trigger side

    def deliver_triggers(self, max_messages: int = 10) -> dict[str, Any]:
        """Run the trigger function on one batch of the trigger queue, as its poller would."""
        response = self.sqs.receive_message(
            QueueUrl=self.trigger_queue_url,
            MaxNumberOfMessages=max_messages,
            AttributeNames=["All"],
        )
        messages = list(response.get("Messages", []))
        if not messages:
            return {"batchItemFailures": [], "delivered": 0}
        from local.worker_loop import build_sqs_event

        arn = self.resources.by_logical_id["TriggerQueue"].attrs["Arn"]
        context = FakeLambdaContext(frozen=True)
        result = dict(self.handler("sync_trigger")(build_sqs_event(messages, arn), context))
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(
                    QueueUrl=self.trigger_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return {**result, "delivered": len(messages)}

    # ---- the landing zone

    def objects(self, prefix: str = "org=") -> list[str]:
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def read_parts(self, prefix: str) -> list[dict[str, Any]]:
        """Every record in the Parquet/JSONL parts under `prefix`, in key order."""
        import gzip
        import io

        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = []
        for key in sorted(self.objects(prefix)):
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            if key.endswith(".parquet"):
                rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
            elif key.endswith(".jsonl.gz"):
                text = gzip.decompress(body).decode()
                rows.extend(json.loads(line) for line in text.splitlines() if line)
        return rows


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """template.yaml as plain data (short tags in their long form)."""
    from local.cfn import load_template

    return load_template(ROOT / "template.yaml")


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, aws_credentials: None) -> Iterator[Stack]:
    """Emulated AWS built from template.yaml, with the functions' environment applied."""
    from moto import mock_aws

    from datasources import aws
    from datasources.config import get_settings
    from local.cfn import load_template
    from local.functions import function_environment
    from local.moto_guard import serialise_dynamodb_writes
    from local.provision import provision

    template_path = str(ROOT / "template.yaml")
    # Concurrent writers (threads, racing syncs) meet in moto: see local/moto_guard.py.
    serialise_dynamodb_writes(monkeypatch.setattr)
    with mock_aws():
        template = load_template(template_path)
        resources = provision(template_path=template_path)
        env = function_environment(
            template,
            resources,
            "SyncWorkerFunction",
            overrides={"JWT_SECRET": TEST_JWT_SECRET, "LOCAL_MODE": "true"},
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The endpoint is in-process here; the local stack's server URL must not leak in.
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
        monkeypatch.setenv("WORKER_RESERVE_SECONDS", "1")
        get_settings.cache_clear()
        aws.reset()
        try:
            yield Stack(resources, monkeypatch)
        finally:
            get_settings.cache_clear()
            aws.reset()
