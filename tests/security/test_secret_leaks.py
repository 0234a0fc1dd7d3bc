"""Secrets never leak (OWASP API3/API8): a full connect → test → schema → sync → failure →
cleanup run against real sources, then every place a secret could end up is scanned.

Sources: the PostgreSQL server on loopback (scripts/databases.sh) and the fake JSON API
(tests/support/fake_api.py). Steps fail on purpose: a wrong database password, a driver
error that quotes the DSN and the password, an API that answers 401, an API that answers
500 inline and in the worker. Scanned afterwards: every API response (body and headers),
every log record at every level (root and the service logger at DEBUG, third-party
loggers included), every DynamoDB item, every S3 object (Parquet decoded, manifests),
every SQS message sent (sync queue and dead-letter queue). Only Secrets Manager holds the
secrets, and cleanup schedules each source's secret for deletion with the documented
recovery window (SECRET_RECOVERY_DAYS, 7 days), so it can still be restored.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from datasources import aws
from local.context import FakeLambdaContext
from tests.conftest import Response, Stack
from tests.connectors import db_fixtures as fx
from tests.security.conftest import RecordingHandler, as_text, leaks
from tests.support.fake_api import FakeApi

pytestmark = pytest.mark.postgres

PG_PASSWORD = fx.PASSWORD  # the real one: the good source authenticates with it
WRONG_PG_PASSWORD = "planted-Wr0ng-pg-pw-7f3a"
DSN_PG_PASSWORD = "planted-dsn-quoted-pw-91c4"
API_KEY = "planted-api-key-5e8d2b77"
WRONG_API_KEY = "planted-wrong-api-key-c0ffee"
HEADER_SECRET = "planted-header-token-42ab"
# Credentials outside the declared secret fields, caught by the credential scanner.
URL_PASSWORD = "planted-url-userinfo-pw-3b1d"
QUERY_TOKEN = "planted-query-token-8e2f"
PARAM_TOKEN = "planted-param-access-token-6a90"
AMZ_SIGNATURE = "planted-x-amz-signature-d41d8c"
AMZ_CREDENTIAL = "planted-x-amz-credential-77aa"
SAS_SIG = "planted-sas-sig-0f0f1e"
COOKIE_SECRET = "planted-cookie-session-5150"
HEADER_API_KEY = "planted-x-api-key-header-2b2b"
SECRETS = [PG_PASSWORD, WRONG_PG_PASSWORD, DSN_PG_PASSWORD, API_KEY, WRONG_API_KEY, HEADER_SECRET]
SECRETS += [URL_PASSWORD, QUERY_TOKEN, PARAM_TOKEN, AMZ_SIGNATURE, AMZ_CREDENTIAL, SAS_SIG]
SECRETS += [COOKIE_SECRET, HEADER_API_KEY]
PROBE_SCHEMA = "ds_security_probe"


@pytest.fixture
def probe_table() -> Iterator[None]:
    """A small table of our own, so the sync does not depend on other suites' fixtures."""
    try:
        conn = fx.pg_connect()
    except Exception as exc:
        pytest.fail(f"PostgreSQL is not reachable ({type(exc).__name__}): run scripts/databases.sh")
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {PROBE_SCHEMA} CASCADE")
        cur.execute(f"CREATE SCHEMA {PROBE_SCHEMA}")
        cur.execute(
            f"CREATE TABLE {PROBE_SCHEMA}.accounts (id int PRIMARY KEY, name text, "
            "updated_at timestamptz NOT NULL)"
        )
        cur.execute(
            f"INSERT INTO {PROBE_SCHEMA}.accounts SELECT i, 'account ' || i, "
            "timestamptz '2024-01-01' + i * interval '1 minute' FROM generate_series(1, 300) i"
        )
    conn.close()
    yield
    conn = fx.pg_connect()
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {PROBE_SCHEMA} CASCADE")
    conn.close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(records=250, api_key=API_KEY) as server:
        yield server


@pytest.fixture
def dsn_quoting_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg fails for one password with a message quoting the DSN, as drivers do."""
    real_connect = psycopg.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("password") == DSN_PG_PASSWORD:
            dsn = (
                f"postgresql://{kwargs.get('user')}:{DSN_PG_PASSWORD}@{kwargs.get('hostaddr')}"
                f":{kwargs.get('port')}/{kwargs.get('dbname')}"
            )
            raise psycopg.OperationalError(
                f'connection to server failed: invalid connection string "{dsn}" '
                f"(host={kwargs.get('host')} password={DSN_PG_PASSWORD} "
                f"sslmode={kwargs.get('sslmode')})"
            )
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", connect)


def database(name: str, password: str) -> dict[str, Any]:
    return {
        "type": "database",
        "name": name,
        "connection_config": {
            "host": fx.HOST,
            "port": fx.PG_PORT,
            "engine": "postgresql",
            "database": fx.DATABASE,
            "username": fx.USER,
            "password": password,
            "schema": PROBE_SCHEMA,
        },
    }


def presigned_url(api: FakeApi) -> str:
    base = api.url.replace("http://", f"http://reader:{URL_PASSWORD}@")
    return (
        f"{base}/items/all?api_key={API_KEY}&token={QUERY_TOKEN}"
        f"&X-Amz-Credential={AMZ_CREDENTIAL}&X-Amz-Signature={AMZ_SIGNATURE}&sig={SAS_SIG}"
    )


def api_source(name: str, url: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "api",
        "name": name,
        "connection_config": {"base_url": url, "api_key": key, **extra},
    }


class Recorder:
    """Calls the handlers and keeps every response; records every SQS message it delivers."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.responses: list[tuple[str, str]] = []
        self.messages: list[tuple[str, str]] = []

    def call(self, endpoint: str, **kwargs: Any) -> Response:
        response = self.stack.call(endpoint, **kwargs)
        self.responses.append(
            (f"response {endpoint}", json.dumps(response.body) + json.dumps(response.headers))
        )
        return response

    def drain(self, *, remaining_ms: int) -> None:
        for _ in range(200):
            messages = self.stack.receive(1)
            if not messages:
                return
            self.messages.append(("sqs sync queue", messages[0]["Body"]))
            self.stack.deliver(messages[0], remaining_ms=remaining_ms)
        raise AssertionError("the queue did not drain")


def stored_texts(stack: Stack) -> list[tuple[str, str]]:
    """Every DynamoDB item and every S3 object in the landing bucket, as text."""
    import pyarrow.parquet as pq

    texts: list[tuple[str, str]] = []
    paginator = stack.ddb.get_paginator("scan")
    for page in paginator.paginate(TableName=stack.resources.table_name):
        for item in page["Items"]:
            texts.append((f"dynamodb {item['pk']['S']} {item['sk']['S']}", json.dumps(item)))
    for key in stack.objects(prefix=""):
        body = stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        texts.append((f"s3 {key} (raw)", body.decode("latin-1")))
        if key.endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(body)).to_pylist()
            texts.append((f"s3 {key}", json.dumps(rows, default=str)))
        elif key.endswith(".gz"):
            texts.append((f"s3 {key}", gzip.decompress(body).decode("utf-8", "replace")))
    return texts


def queue_texts(stack: Stack) -> list[tuple[str, str]]:
    """Whatever is still waiting in the sync queue and the dead-letter queue."""
    texts = []
    for name, url in (("sqs sync queue", stack.queue_url), ("sqs dlq", stack.resources.dlq_url)):
        while True:
            got = stack.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
            ).get("Messages", [])
            if not got:
                break
            texts.extend((name, m["Body"]) for m in got)
    return texts


def test_no_secret_leaks_anywhere_through_a_full_run_with_failures(
    stack: Stack,
    api: FakeApi,
    probe_table: None,
    dsn_quoting_driver: None,
    all_logs: RecordingHandler,
) -> None:
    run = Recorder(stack)
    sources = [
        database("pg_ok", PG_PASSWORD),
        database("pg_wrong_password", WRONG_PG_PASSWORD),
        database("pg_dsn_error", DSN_PG_PASSWORD),
        api_source(
            "api_ok",
            f"{api.url}/items/link",
            API_KEY,
            api_key_in="query",
            headers={"X-Session-Token": HEADER_SECRET},
        ),
        api_source("api_unauthorized", f"{api.url}/items/page", WRONG_API_KEY),
        api_source("api_failing", f"{api.url}/items/offset", API_KEY, max_retry_wait_seconds=0),
        # A credential as a request parameter and in headers the scanner recognises.
        api_source(
            "api_params",
            api.url,
            API_KEY,
            headers={"Cookie": f"session={COOKIE_SECRET}", "X-Api-Key": HEADER_API_KEY},
            resources=[
                {"name": "items", "path": "/items/link", "params": {"access_token": PARAM_TOKEN}}
            ],
        ),
        # A presigned-style file URL with userinfo, a token and signatures in its query.
        {
            "type": "file",
            "name": "file_presigned",
            "connection_config": {"url": presigned_url(api), "format": "json"},
        },
    ]
    # ---- connect
    connected = run.call("connect", body={"sources": sources})
    assert connected.status_code == 201, connected.body
    ids = {s["name"]: s["id"] for s in connected.data["connected_sources"]}
    shown = {s["name"]: s["connection_config"] for s in connected.data["connected_sources"]}
    assert shown["file_presigned"]["url"].startswith(f"http://********@127.0.0.1:{api.port}/")
    assert shown["api_params"]["resources"][0]["params"] == {"access_token": "********"}
    # Credentials in an api URL are refused with a 422 saying where they go, at connect
    # and at test-connection alike, without echoing them.
    refused_urls = [
        (api.url.replace("http://", f"http://user:{URL_PASSWORD}@") + "/items/page", "basic_auth"),
        (f"{api.url}/items/page?api_key={QUERY_TOKEN}", "api_key_in 'query'"),
    ]
    for url, where in refused_urls:
        source = api_source("api_refused", url, API_KEY)
        refused = run.call("connect", body={"sources": [source]})
        assert refused.status_code == 422, refused.body
        assert where in refused.body["message"], refused.body
        config = {k: source[k] for k in ("type", "connection_config")}
        assert run.call("test", body={"source_config": config}).status_code == 422

    # ---- test-connection (the request carries the secrets in clear)
    api.inject(500, times=1000, path_prefix="/items/offset")
    expected_test = {
        "pg_ok": 200,
        "pg_wrong_password": 400,
        "pg_dsn_error": 400,
        "api_ok": 200,
        "api_unauthorized": 400,
        "api_failing": 400,
        "api_params": 200,
        "file_presigned": 200,
    }
    for source in sources:
        config = {k: source[k] for k in ("type", "connection_config")}
        tested = run.call("test", body={"source_config": config})
        assert tested.status_code == expected_test[source["name"]], (source["name"], tested.body)
    # The driver's DSN-quoting message did reach the service (and was sanitized there).
    dsn = [m for w, m in run.responses if "invalid connection string" in m]
    assert dsn, "the DSN-quoting driver error was not exercised"

    # ---- schema
    for name, source_id in ids.items():
        schema = run.call("schema", query={"source_id": source_id})
        assert schema.status_code == expected_test[name], (name, schema.body)

    # ---- sync through the queue (no inline budget), in small chunks
    queued = run.call(
        "sync",
        body={
            "source_ids": [ids["pg_ok"], ids["api_ok"], ids["api_params"], ids["file_presigned"]],
            "sync_options": {"batch_size": 40, "incremental": True},
        },
        context=FakeLambdaContext(timeout_seconds=1, frozen=True),
    )
    assert queued.status_code == 202, queued.body
    run.drain(remaining_ms=2500)
    done = run.call("status", path={"job_id": queued.data["job_id"]}, query={"scope": "user"})
    assert done.data["status"] == "completed", done.body
    assert done.data["records_processed"] == 300 + 250 * 3

    # ---- failing syncs, inline
    failing = run.call(
        "sync",
        body={
            "source_ids": [
                ids["pg_wrong_password"],
                ids["pg_dsn_error"],
                ids["api_unauthorized"],
                ids["api_failing"],
            ]
        },
    )
    assert failing.body["status"] == "error" or failing.data["status"] == "failed", failing.body
    # ---- a sync that fails in the worker: planned while the API works, read while it fails
    api.clear()
    worker = run.call(
        "sync",
        body={"source_ids": [ids["api_failing"]]},
        context=FakeLambdaContext(timeout_seconds=1, frozen=True),
    )
    assert worker.status_code == 202, worker.body
    api.inject(500, times=1000, path_prefix="/items/offset")
    message = stack.receive(1)[0]
    run.messages.append(("sqs sync queue", message["Body"]))
    assert stack.deliver(message)["batchItemFailures"], "the worker did not fail"
    for job in (failing.data or {}).get("job_id"), worker.data["job_id"]:
        if job:
            run.call("status", path={"job_id": job}, query={"scope": "user"})
    api.clear()
    run.call("list", query={"scope": "user"})
    before_cleanup = stored_texts(stack)

    # ---- cleanup: every secret is scheduled for deletion, recoverable for 7 days
    deletions: list[dict[str, Any]] = []
    events = aws.client("secretsmanager").meta.events
    events.register(
        "provide-client-params.secrets-manager.DeleteSecret",
        lambda params, **_: deletions.append(dict(params)),
    )
    cleaned = run.call("cleanup", body={"scope": "user"})
    assert cleaned.data["deleted_count"] == len(sources), cleaned.body
    assert len(deletions) == len(sources)  # one secret per source (each has one)
    for params in deletions:
        assert params.get("RecoveryWindowInDays") == 7, params
        assert not params.get("ForceDeleteWithoutRecovery"), params
    listed = stack.secrets.list_secrets(IncludePlannedDeletion=True)["SecretList"]
    source_secrets = [s for s in listed if "/sources/" in s["Name"]]
    assert len(source_secrets) == len(sources)
    assert all("DeletedDate" in s for s in source_secrets)
    # Within the window an operator can still restore one.
    stack.secrets.restore_secret(SecretId=source_secrets[0]["ARN"])

    # ---- scan everything
    texts = [
        *run.responses,
        *run.messages,
        *before_cleanup,
        *stored_texts(stack),
        *queue_texts(stack),
        *(("log", line) for line in all_logs.lines),
    ]
    assert len(all_logs.lines) > 50 and run.messages and before_cleanup
    found = leaks(SECRETS, texts)
    assert not found, "\n".join(found[:20])
    # Sanity: the scan can see a secret where one is meant to be.
    assert leaks(SECRETS, [("secrets manager", as_text(secret_values(stack)))])


def secret_values(stack: Stack) -> list[str]:
    listed = stack.secrets.list_secrets()["SecretList"]
    return [
        stack.secrets.get_secret_value(SecretId=s["ARN"])["SecretString"]
        for s in listed
        if "/sources/" in s["Name"]
    ]
