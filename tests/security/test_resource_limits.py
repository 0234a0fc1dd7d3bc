"""Unrestricted resource consumption (OWASP API4): each documented limit, at and past its
value, through the real handlers; the infrastructure limits in template.yaml.

Limits (the README's Security section lists them with their values):
request body 262,144 bytes (413) · 25 sources per connect · source name 1-128 characters
of [A-Za-z0-9 _.-] · metadata 8 KiB as JSON · batch_size 1..100,000 · list limit 1..200 ·
100 source_ids per request · token 8,192 bytes · API pagination max_pages 1..100,000
(default 10,000) · API timeout_seconds ≤ 60 · database connect_timeout 1..20 s and
statement_timeout_seconds 1..900 · worker reserved concurrency · stage throttling.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.cfn import load_template
from tests.conftest import Stack
from tests.connectors import db_fixtures as fx
from tests.support.fake_api import FakeApi

ROOT = Path(__file__).resolve().parents[2]


def file_source(name: str = "orders", **extra: Any) -> dict[str, Any]:
    return {
        "type": "file",
        "name": name,
        "connection_config": {"url": "s3://some-bucket/orders.csv"},
        **extra,
    }


def connect(stack: Stack, *sources: dict[str, Any]) -> Any:
    return stack.call("connect", body={"sources": list(sources)})


def test_a_request_body_over_262144_bytes_is_413_on_every_post_endpoint(stack: Stack) -> None:
    for endpoint in ("connect", "sync", "cleanup", "test"):
        padded = json.dumps({"pad": "x" * 262_144})
        response = stack.call(endpoint, raw_body=padded)
        assert response.status_code == 413, (endpoint, response.body)
        assert "262144" in response.body["message"]
    # Just under the limit the body is read (and refused for what it says, not its size).
    under = json.dumps({"pad": "x" * (262_144 - 20)})
    assert len(under) <= 262_144
    assert stack.call("connect", raw_body=under).status_code == 422


def test_at_most_25_sources_per_connect(stack: Stack) -> None:
    too_many = connect(stack, *(file_source(f"s{i}") for i in range(26)))
    assert too_many.status_code == 422 and "25" in too_many.body["message"]
    assert stack.call("list", query={"scope": "user"}).data == []
    assert connect(stack, *(file_source(f"s{i}") for i in range(25))).status_code == 201


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("a" * 128, 201),
        ("Orders 2024_v1.final-copy", 201),
        ("a" * 129, 422),
        ("", 422),
        (" leading-space", 422),
        ("../etc/passwd", 422),
        ("a/b", 422),
        ("a#b", 422),
        ("line\nbreak", 422),
        ("名前", 422),
    ],
)
def test_source_names_are_bounded_and_safe_in_keys(stack: Stack, name: str, status: int) -> None:
    assert connect(stack, file_source(name)).status_code == status


def test_metadata_is_at_most_8_kib(stack: Stack) -> None:
    fits = {"note": "x" * (8192 - 20)}
    assert len(json.dumps(fits)) <= 8192
    assert connect(stack, file_source("fits", metadata=fits)).status_code == 201
    too_big = connect(stack, file_source("too_big", metadata={"note": "x" * 8192}))
    assert too_big.status_code == 422 and "8192" in too_big.body["message"]


def test_batch_size_is_between_1_and_100000(stack: Stack) -> None:
    for size, status in ((0, 422), (-1, 422), (100_001, 422), (1, 200), (100_000, 200)):
        response = stack.call("sync", body={"sync_options": {"batch_size": size}})
        assert response.status_code == status, (size, response.body)


def test_list_page_size_and_source_id_lists_are_bounded(stack: Stack) -> None:
    assert stack.call("list", query={"limit": "201"}).status_code == 422
    assert stack.call("list", query={"limit": "0"}).status_code == 422
    assert stack.call("list", query={"limit": "200"}).status_code == 200
    ids = [f"src_{i:020x}" for i in range(101)]
    for endpoint in ("sync", "cleanup"):
        assert stack.call(endpoint, body={"source_ids": ids}).status_code == 422
        assert stack.call(endpoint, body={"source_ids": ids[:100]}).status_code in (200, 404)


@pytest.mark.parametrize(
    ("connection_config", "field"),
    [
        ({"connect_timeout": 21}, "connect_timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"statement_timeout_seconds": 901}, "statement_timeout_seconds"),
    ],
)
def test_database_timeouts_are_bounded(
    stack: Stack, connection_config: dict[str, Any], field: str
) -> None:
    config = {
        "host": "db.example.com",
        "port": 5432,
        "database": "d",
        "username": "u",
        "password": "p",
        **connection_config,
    }
    response = stack.call(
        "test", body={"source_config": {"type": "database", "connection_config": config}}
    )
    assert response.status_code == 422
    assert any(e["loc"].endswith(field) for e in response.data["errors"]), response.body


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"timeout_seconds": 61}, "timeout_seconds"),
        ({"resources": [{"name": "r", "pagination": {"max_pages": 100_001}}]}, "max_pages"),
        ({"resources": [{"name": "r", "pagination": {"max_pages": 0}}]}, "max_pages"),
    ],
)
def test_api_timeouts_and_page_caps_are_bounded(
    stack: Stack, extra: dict[str, Any], field: str
) -> None:
    config = {"base_url": "https://api.example.com/v1", **extra}
    response = stack.call(
        "test", body={"source_config": {"type": "api", "connection_config": config}}
    )
    assert response.status_code == 422
    assert any(e["loc"].endswith(field) for e in response.data["errors"]), response.body


def test_an_api_that_always_has_another_page_stops_at_max_pages(stack: Stack) -> None:
    with FakeApi(require_auth=False) as api:
        source = {
            "type": "api",
            "name": "endless",
            "connection_config": {
                "base_url": api.url,
                "resources": [
                    {"name": "items", "path": "/loop/next", "pagination": {"max_pages": 5}}
                ],
            },
        }
        source_id = connect(stack, source).data["connected_sources"][0]["id"]
        response = stack.call("sync", body={"source_ids": [source_id]})
        pages = len([r for r in api.requests if r.path == "/loop/next"])
    job = response.data
    assert job["status"] == "failed", response.body
    error = job["sources"][0]["streams"][0]["error"]
    assert "max_pages" in error
    assert pages <= 5 + 1  # discover's sample page, then at most max_pages


def test_a_slow_api_hits_its_read_timeout(stack: Stack) -> None:
    with FakeApi(require_auth=False) as api:
        config = {"base_url": f"{api.url}/slow?seconds=10", "timeout_seconds": 0.5}
        started = time.monotonic()
        response = stack.call(
            "test", body={"source_config": {"type": "api", "connection_config": config}}
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 400 and response.data["stage"] == "timeout", response.body
    assert elapsed < 5


@pytest.mark.postgres
def test_database_connections_carry_the_connect_and_statement_timeouts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real_connect = psycopg.connect

    def spy(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        seen["connect_timeout"] = kwargs.get("connect_timeout")
        real_close = conn.close

        def close() -> None:
            # The session setting the connector made, read before it is closed.
            with conn.cursor() as cur:
                cur.execute("SHOW statement_timeout")
                row = cur.fetchone()
                seen["statement_timeout"] = row[0] if row else None
            real_close()

        conn.close = close  # type: ignore[method-assign]
        return conn

    monkeypatch.setattr(psycopg, "connect", spy)
    config = {
        "host": fx.HOST,
        "port": fx.PG_PORT,
        "engine": "postgresql",
        "database": fx.DATABASE,
        "username": fx.USER,
        "password": fx.PASSWORD,
        "connect_timeout": 3,
    }
    response = stack.call(
        "test", body={"source_config": {"type": "database", "connection_config": config}}
    )
    assert response.status_code == 200, response.body
    # test-connection bounds even its statements by connect_timeout.
    assert seen == {"connect_timeout": 3, "statement_timeout": "3s"}


def test_template_reserves_worker_concurrency_and_throttles_the_api() -> None:
    template = load_template(ROOT / "template.yaml")
    parameters = template["Parameters"]
    resources = template["Resources"]
    worker = resources["SyncWorkerFunction"]["Properties"]
    assert worker["ReservedConcurrentExecutions"] == {"Ref": "WorkerReservedConcurrency"}
    assert parameters["WorkerReservedConcurrency"]["Default"] == 10
    settings = resources["Api"]["Properties"]["MethodSettings"]
    stage_wide = [s for s in settings if s["ResourcePath"] == "/*" and s["HttpMethod"] == "*"]
    assert stage_wide and stage_wide[0]["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert stage_wide[0]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert parameters["ApiThrottlingRateLimit"]["Default"] == 50
    assert parameters["ApiThrottlingBurstLimit"]["Default"] == 100
    # API Gateway answers 429 itself in the API's envelope.
    throttled = resources["Api"]["Properties"]["GatewayResponses"]["THROTTLED"]
    assert throttled["StatusCode"] == 429
    # API functions stop at API Gateway's 29 s; none runs on after the caller gave up.
    assert template["Globals"]["Function"]["Timeout"] == 29


def test_every_checkov_skip_in_the_template_is_justified() -> None:
    template = load_template(ROOT / "template.yaml")
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert skip.get("id", "").startswith("CKV"), (name, skip)
        assert len(str(skip.get("comment") or "").split()) >= 5, f"{name}: {skip} has no reason"
