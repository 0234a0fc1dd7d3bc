"""`Client` against the local stack: every method, paging, the error types; and its
retry rules against a local server that throttles or fails on purpose."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import LocalStack, api_source, free_ports

from datasources_client import (
    BadRequest,
    Client,
    ConfigurationError,
    Conflict,
    Forbidden,
    NotFound,
    Preview,
    Schema,
    ServerError,
    Source,
    SyncJob,
    Throttled,
    TransportError,
    Unauthorized,
    ValidationFailed,
)
from datasources_client.client import _parse_retry_after


class CountingTransport(httpx.HTTPTransport):
    """Counts the requests that reach the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


@pytest.fixture
def client(local_stack: LocalStack) -> Iterator[Client]:
    with Client(local_stack.base_url, local_stack.token()) as c:
        yield c


# ---------------------------------------------------------------------- every method


def test_every_method_from_test_connection_to_cleanup(
    client: Client, workspace: str, orders_api: Any
) -> None:
    source = api_source(orders_api)

    tested = client.test_connection(
        workspace, {k: source[k] for k in ("type", "connection_config")}
    )
    assert tested.reachable is True and tested.latency_ms >= 0

    (connected,) = client.connect(workspace, [source])
    assert isinstance(connected, Source)
    assert connected.name == "orders_api" and connected.id.startswith("src_")
    assert connected.connection_config["api_key"] == "********"

    listed = list(client.list_sources(workspace))
    assert [s.id for s in listed] == [connected.id]

    schema = client.schema(workspace, connected.id)
    assert isinstance(schema, Schema)
    (table,) = schema.tables
    assert table.name == "orders" and table.cursor_field == "updated_at"

    preview = client.preview(workspace, connected.id, "orders", limit=5)
    assert isinstance(preview, Preview)
    assert [c.name for c in preview.columns] == [c.name for c in table.columns]
    served = orders_api.records[:5]
    assert [r["id"] for r in preview.rows] == [r["id"] for r in served]
    assert [r["name"] for r in preview.rows] == [r["name"] for r in served]

    job = client.sync(workspace, [connected.id], sync_options={"batch_size": 100})
    assert isinstance(job, SyncJob) and job.job_id
    seen: list[SyncJob] = []
    final = client.wait_for_sync(workspace, job.job_id, interval=0.2, on_update=seen.append)
    assert final.status == "completed" and final.records_processed == 450
    assert seen and seen[-1].status == "completed"
    status = client.sync_status(workspace, job.job_id)
    assert status.records_processed == 450
    (stream,) = status.streams
    assert stream.stream == "orders" and stream.records == 450 and stream.parts == 5
    assert stream.output.startswith("s3://")

    cleaned = client.cleanup(workspace, [connected.id, "src_" + "0" * 20])
    assert cleaned.deleted_source_ids == [connected.id]
    assert cleaned.not_found == ["src_" + "0" * 20]
    assert list(client.list_sources(workspace)) == []


def test_list_sources_walks_every_page(
    local_stack: LocalStack, workspace: str, orders_api: Any
) -> None:
    transport = CountingTransport()
    with Client(local_stack.base_url, local_stack.token(), transport=transport) as client:
        sources = [api_source(orders_api, name=f"api_{i}") for i in range(5)]
        created = {s.id for s in client.connect(workspace, sources)}
        transport.requests.clear()

        listed = list(client.list_sources(workspace, page_size=2))

    assert {s.id for s in listed} == created and len(listed) == 5
    pages = [r for r in transport.requests if r.url.path.endswith("/list")]
    assert len(pages) == 3
    assert "next_token" not in pages[0].url.params
    assert all("next_token" in p.url.params for p in pages[1:])


# ---------------------------------------------------------------------- error types


def test_errors_carry_status_code_message_and_request_id(
    local_stack: LocalStack, client: Client, workspace: str, orders_api: Any
) -> None:
    with (
        Client(local_stack.base_url, "not-a-jwt") as bad,
        pytest.raises(Unauthorized) as unauthorized,
    ):
        list(bad.list_sources(workspace))
    assert unauthorized.value.status == 401 and unauthorized.value.request_id

    with pytest.raises(NotFound) as unknown:
        client.schema(workspace, "src_" + "1" * 20)
    assert unknown.value.code == "source_not_found" and unknown.value.status == 404

    with pytest.raises(ValidationFailed) as invalid:
        client.connect(workspace, [{"type": "database", "name": "x", "connection_config": {}}])
    assert invalid.value.status == 422
    assert {e["loc"].split(".")[-1] for e in invalid.value.errors} >= {"host", "database"}

    (source,) = client.connect(workspace, [api_source(orders_api)])
    with pytest.raises(Conflict) as duplicate:
        client.connect(workspace, [api_source(orders_api)])
    assert duplicate.value.code == "name_conflict"

    with pytest.raises(NotFound) as no_stream:
        client.preview(workspace, source.id, "no_such_stream")
    assert no_stream.value.code == "stream_not_found"
    assert "no_such_stream" in no_stream.value.message

    with pytest.raises(ValidationFailed):
        client.preview(workspace, source.id, "orders", limit=101)

    (closed_port,) = free_ports(1)
    with pytest.raises(BadRequest) as unreachable:
        client.test_connection(
            workspace,
            {"type": "api", "connection_config": {"base_url": f"http://127.0.0.1:{closed_port}"}},
        )
    assert unreachable.value.stage == "tcp"


def test_a_job_of_another_tenant_is_the_404_of_an_unknown_job(
    local_stack: LocalStack, client: Client, workspace: str, orders_api: Any
) -> None:
    (source,) = client.connect(workspace, [api_source(orders_api)])
    job = client.sync(workspace, [source.id])
    assert job.job_id
    unknown_id = "job_" + "0" * 20
    with pytest.raises(NotFound) as unknown:
        client.sync_status(workspace, unknown_id)
    for token in (local_stack.token(sub="user-2"), local_stack.token(org="other")):
        with Client(local_stack.base_url, token) as other, pytest.raises(NotFound) as theirs:
            other.sync_status(workspace, job.job_id)
        assert theirs.value.code == unknown.value.code
        assert theirs.value.message.replace(job.job_id, "ID") == unknown.value.message.replace(
            unknown_id, "ID"
        )


def test_missing_url_or_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATASOURCES_URL", raising=False)
    monkeypatch.delenv("DATASOURCES_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="DATASOURCES_URL"):
        Client(token="t")
    with pytest.raises(ConfigurationError, match="DATASOURCES_TOKEN"):
        Client("http://127.0.0.1:1/api/v1")
    monkeypatch.setenv("DATASOURCES_URL", "http://127.0.0.1:1/api/v1")
    monkeypatch.setenv("DATASOURCES_TOKEN", "secret-token-value")
    client = Client()
    assert client.base_url == "http://127.0.0.1:1/api/v1"
    assert "secret-token-value" not in repr(client)


def test_an_api_that_is_not_there_is_a_transport_error_after_the_retries() -> None:
    (port,) = free_ports(1)
    waits: list[float] = []
    url = f"http://127.0.0.1:{port}/api/v1"
    with (
        Client(url, "t", retries=2, sleep=waits.append) as client,
        pytest.raises(TransportError, match="cannot reach"),
    ):
        client.schema("ws", "src_" + "0" * 20)
    assert len(waits) == 2


# ---------------------------------------------------------------------- retries


class Script:
    """A local API that answers from a script: [(status, headers), ...] then 200."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()


@pytest.fixture
def scripted() -> Iterator[tuple[Script, str]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with script.lock:
                script.seen.append((self.command, self.path, time.monotonic()))
                status, headers = script.answers.pop(0) if script.answers else (200, {})
            if status == 200:
                body = {"status": "success", "message": "ok", "data": _data_for(self.path)}
            else:
                body = {
                    "status": "error",
                    "message": f"scripted {status}",
                    "data": {"code": "scripted"},
                    "request_id": "req-scripted",
                }
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = _answer
        do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _data_for(path: str) -> Any:
    if "/schema" in path:
        return {"source_id": "src_" + "0" * 20, "tables": []}
    if "/sync" in path:
        return {"job_id": "job_" + "0" * 20, "status": "completed", "records_processed": 0}
    if "/connect" in path:
        return {"connected_sources": []}
    return {}


def test_a_429_is_retried_after_the_time_retry_after_says(scripted: tuple[Script, str]) -> None:
    script, url = scripted
    script.answers = [(429, {"Retry-After": "1"})]
    with Client(url, "t", retries=3) as client:
        started = time.monotonic()
        schema = client.schema("ws", "src_" + "0" * 20)
    assert schema.tables == []
    assert len(script.seen) == 2
    gap = script.seen[1][2] - script.seen[0][2]
    assert 1.0 <= gap < 3.0 and time.monotonic() - started >= 1.0


def test_a_429_is_retried_even_for_connect_and_sync(scripted: tuple[Script, str]) -> None:
    # Throttling refuses the request before any function runs: nothing happened yet.
    script, url = scripted
    script.answers = [(429, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    with Client(url, "t", retries=3) as client:
        assert client.connect("ws", []) == []
        assert client.sync("ws", ["src_" + "0" * 20]).status == "completed"
    assert [m for m, _, _ in script.seen] == ["POST", "POST", "POST", "POST"]


def test_a_5xx_is_retried_for_reads_but_never_for_a_sync_that_may_have_started(
    scripted: tuple[Script, str],
) -> None:
    script, url = scripted
    waits: list[float] = []
    script.answers = [(503, {}), (502, {})]
    with Client(url, "t", retries=3, sleep=waits.append) as client:
        assert client.schema("ws", "src_" + "0" * 20).source_id
        assert len(script.seen) == 3 and len(waits) == 2
        script.seen.clear()
        script.answers = [(502, {})]
        with pytest.raises(ServerError) as failed:
            client.sync("ws", ["src_" + "0" * 20])
    assert len(script.seen) == 1
    assert failed.value.status == 502 and failed.value.request_id == "req-scripted"


def test_throttling_that_outlasts_the_retries_raises_throttled(
    scripted: tuple[Script, str],
) -> None:
    script, url = scripted
    script.answers = [(429, {"Retry-After": "0"})] * 3
    with Client(url, "t", retries=2) as client, pytest.raises(Throttled) as throttled:
        client.schema("ws", "src_" + "0" * 20)
    assert throttled.value.status == 429 and len(script.seen) == 3


def test_retry_after_may_be_an_http_date() -> None:
    in_two_seconds = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    parsed = _parse_retry_after(in_two_seconds)
    assert parsed is not None and 0.5 <= parsed <= 2.5
    assert _parse_retry_after("7") == 7.0
    assert _parse_retry_after("soon") is None


# ---------------------------------------------------------------------- schedules
# POST /schedule and GET /schedules as documented for issue 11, faked until they merge.

SCHEDULE = {
    "source_id": "src_" + "a" * 20,
    "schedule": "rate(15 minutes)",
    "timezone": "Europe/Rome",
    "sync_options": {"batch_size": 500},
    "enabled": True,
    "next_run_at": "2026-01-01T10:15:00Z",
    "last_run": None,
    "consecutive_failures": 0,
    "paused_reason": None,
}


def schedule_transport(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/schedule"):
            body = json.loads(request.content)
            item = {**SCHEDULE, "schedule": body["schedule"], "timezone": body["timezone"]}
            data = {"schedules": [{**item, "source_id": s} for s in body["source_ids"]]}
        else:
            data = {"schedules": [SCHEDULE]}
        return httpx.Response(200, json={"status": "success", "message": "ok", "data": data})

    return httpx.MockTransport(handle)


def test_set_list_and_remove_schedules() -> None:
    seen: list[httpx.Request] = []
    with Client("http://api.test/api/v1", "t", transport=schedule_transport(seen)) as client:
        (scheduled,) = client.set_schedule(
            "ws",
            [SCHEDULE["source_id"]],
            "rate(15 minutes)",
            timezone="Europe/Rome",
            sync_options={"batch_size": 500},
        )
        (removed,) = client.set_schedule("ws", [SCHEDULE["source_id"]], None)
        (listed,) = client.list_schedules("ws", scope="organization")
    assert scheduled.schedule == "rate(15 minutes)" and scheduled.timezone == "Europe/Rome"
    assert removed.schedule is None
    assert listed.next_run_at == "2026-01-01T10:15:00Z" and listed.raw == SCHEDULE
    first = json.loads(seen[0].content)
    assert seen[0].url.path == "/api/v1/data/ws/schedule" and seen[0].method == "POST"
    assert first == {
        "scope": "user",
        "source_ids": [SCHEDULE["source_id"]],
        "schedule": "rate(15 minutes)",
        "timezone": "Europe/Rome",
        "enabled": True,
        "sync_options": {"batch_size": 500},
    }
    assert json.loads(seen[1].content)["schedule"] is None
    assert seen[2].url.path == "/api/v1/data/ws/schedules"
    assert seen[2].url.params["scope"] == "organization"


def test_schedules_against_the_local_stack(
    client: Client, local_stack: LocalStack, workspace: str, orders_api: Any
) -> None:
    # Given a connected source, when its schedule is set, listed and removed through the
    # client, then the server's answers come back typed, and a viewer may only read.
    (source,) = client.connect(workspace, [api_source(orders_api)])
    (scheduled,) = client.set_schedule(
        workspace, [source.id], "cron(0 3 * * ? *)", timezone="Europe/Rome"
    )
    assert scheduled.source_id == source.id and scheduled.schedule == "cron(0 3 * * ? *)"
    assert scheduled.timezone == "Europe/Rome" and scheduled.enabled is True
    assert scheduled.next_run_at and scheduled.consecutive_failures == 0
    assert [s.source_id for s in client.list_schedules(workspace)] == [source.id]

    viewer = Client(local_stack.base_url, local_stack.token(role="viewer"))
    with viewer:
        assert [s.source_id for s in viewer.list_schedules(workspace)] == [source.id]
        with pytest.raises(Forbidden):
            viewer.set_schedule(workspace, [source.id], "rate(1 hour)")
    with pytest.raises(ValidationFailed):
        client.set_schedule(workspace, [source.id], "rate(30 seconds)")

    # Removal answers with the schedules that remain of those sources: none.
    assert client.set_schedule(workspace, [source.id], None) == []
    assert client.list_schedules(workspace) == []
