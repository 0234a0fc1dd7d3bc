"""The `api` connector against a real HTTP server on loopback (tests/support/fake_api.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pyarrow as pa
import pytest

from datasources import netguard
from datasources.config import Settings
from datasources.connectors.api import ApiConnector
from datasources.connectors.base import Batch, ConnectorContext, StreamState
from datasources.connectors.registry import get_connector
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.models.common import MASK
from datasources.models.connection import (
    ApiConfig,
    merge_secrets,
    split_secrets,
)
from tests.support.fake_api import RECORD_TYPES, FakeApi

LOCAL = ConnectorContext(settings=Settings(local_mode=True))
N = 3000
ALL_IDS = list(range(1, N + 1))

# name -> (path, pagination); page sizes differ so batches straddle and split pages.
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "page": ("/items/page", {"kind": "page", "size_param": "per_page", "page_size": 250}),
    "offset": ("/items/offset", {"kind": "offset", "page_size": 200}),
    "cursor": (
        "/items/cursor",
        {
            "kind": "cursor",
            "cursor_path": "meta.next_cursor",
            "size_param": "limit",
            "page_size": 150,
        },
    ),
    "link_header": ("/items/link", {"kind": "link_header"}),
    "next_url": ("/items/next", {"kind": "next_url", "next_url_path": "links.next"}),
    "auto_link": ("/items/link", {}),
    "auto_next_url": ("/items/next", {}),
    "cursor_auto_path": ("/items/cursor", {"kind": "cursor"}),
}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(records=N) as server:
        yield server


@pytest.fixture
def resolver() -> Iterator[None]:
    yield
    netguard.set_resolver(None)


class Sleeps(list[float]):
    """Records the backoff waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def config(
    api: FakeApi, path: str = "", pagination: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {"name": "items", "path": path}
    if pagination is not None:
        resource["pagination"] = pagination
    for key in ("records_path", "primary_key", "incremental", "params"):
        if key in extra:
            resource[key] = extra.pop(key)
    return {"base_url": api.url, "api_key": api.api_key, "resources": [resource], **extra}


def connector(
    cfg: dict[str, Any], context: ConnectorContext = LOCAL, sleeps: Sleeps | None = None
) -> ApiConnector:
    return ApiConnector(
        ApiConfig.model_validate(cfg), context, sleep=sleeps if sleeps is not None else Sleeps()
    )


def ids_of(batch: Batch) -> list[int]:
    if isinstance(batch.records, list):
        return [r["id"] for r in batch.records]
    return [int(v) for v in batch.records.column("id").to_pylist()]


def read_all(
    conn: ApiConnector,
    stream: str = "items",
    state: StreamState | None = None,
    batch_size: int = 450,
) -> tuple[list[int], list[Batch]]:
    batches = list(conn.read(stream, state or StreamState(), batch_size))
    return [i for b in batches for i in ids_of(b)], batches


def roundtrip(token: dict[str, Any] | None) -> dict[str, Any] | None:
    # The engine stores tokens as JSON text.
    return json.loads(json.dumps(token)) if token is not None else None


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_pagination_kind_syncs_every_record_exactly_once(api: FakeApi, kind: str) -> None:
    path, pagination = KINDS[kind]
    ids, batches = read_all(connector(config(api, path, pagination)), batch_size=450)

    assert ids == ALL_IDS
    assert [b.num_rows for b in batches] == [450] * 6 + [300]
    table = batches[0].records
    assert isinstance(table, pa.Table)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("ship_date").type == pa.date32()
    assert json.loads(table.column("tags")[0].as_py()) == ["t1", "g1"]
    assert batches[-1].resume_token is not None and batches[-1].resume_token["done"] is True
    assert all(b.cursor_state is None for b in batches)  # no incremental config: full refresh


@pytest.mark.parametrize(
    "kind", ["page", "offset", "cursor", "link_header", "next_url", "auto_link"]
)
def test_resuming_from_every_intermediate_token_yields_exactly_the_remaining_records(
    api: FakeApi, kind: str
) -> None:
    path, pagination = KINDS[kind]
    cfg = config(api, path, pagination)
    _, batches = read_all(connector(cfg), batch_size=650)
    consumed = 0
    assert any(b.resume_token and b.resume_token["skip"] > 0 for b in batches)  # mid-page tokens
    for batch in batches[:-1]:
        consumed += batch.num_rows
        state = StreamState(resume_token=roundtrip(batch.resume_token))
        rest, _ = read_all(connector(cfg), state=state, batch_size=650)
        assert rest == ALL_IDS[consumed:], f"resume after {consumed} records"
    done = StreamState(resume_token=roundtrip(batches[-1].resume_token))
    assert read_all(connector(cfg), state=done)[0] == []


def test_a_page_larger_than_the_batch_is_split_and_resumes_mid_page(api: FakeApi) -> None:
    cfg = config(api, "/items/page", {"kind": "page", "size_param": "per_page", "page_size": 1000})
    ids, batches = read_all(connector(cfg), batch_size=128)
    assert ids == ALL_IDS
    assert max(b.num_rows for b in batches) == 128
    token = batches[3].resume_token  # 512 records in: page 1, 512 of its records consumed
    assert token is not None and token["pos"] == {"page": 1} and token["skip"] == 512
    rest, _ = read_all(
        connector(cfg), state=StreamState(resume_token=roundtrip(token)), batch_size=999
    )
    assert rest == ALL_IDS[512:]


def test_minimal_config_syncs_a_link_header_api_completely(api: FakeApi) -> None:
    conn = connector({"base_url": f"{api.url}/orders", "api_key": api.api_key})
    check = conn.check()
    assert check.reachable and check.details["status_code"] == 200 and check.latency_ms > 0
    tables = conn.discover()
    assert [t.name for t in tables] == ["orders"]
    assert tables[0].primary_key == ["id"]
    ids, batches = read_all(conn, "orders", batch_size=1000)
    assert ids == ALL_IDS
    assert batches[0].resume_token is not None and batches[0].resume_token["mode"] == "link_header"


def test_connections_are_pooled_across_pages(api: FakeApi) -> None:
    read_all(connector(config(api, "/items/link")), batch_size=5000)
    assert len(api.requests) == 30
    assert api.connections <= 2


def test_changing_field_types_widen_columns_and_new_keys_add_columns(api: FakeApi) -> None:
    _, batches = read_all(connector(config(api, "/drift")), batch_size=1)
    types = [b.records.schema.field("v").type for b in batches]  # type: ignore[union-attr]
    assert types == [pa.int64(), pa.float64(), pa.string()]
    assert batches[2].records.column("v").to_pylist() == ["text"]  # type: ignore[union-attr]
    assert batches[2].records.column("when").to_pylist() == ["not a time"]  # type: ignore[union-attr]
    assert any("new column 'extra'" in n for n in batches[1].notes)
    assert any("widened" in n for n in batches[2].notes)


# ---------------------------------------------------------------- loop guards


@pytest.mark.parametrize(
    ("path", "pagination", "expected"),
    [
        ("/loop/cursor", {"kind": "cursor"}, "already returned"),
        ("/loop/link", {}, "already returned"),
        ("/loop/page", {"kind": "page"}, "same records"),
    ],
)
def test_loop_guard_stops_a_repeated_token_url_or_page(
    api: FakeApi, path: str, pagination: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SourceReadError) as caught:
        read_all(connector(config(api, path, pagination)))
    assert expected in caught.value.message
    assert len(api.requests) <= 3


def test_page_cap_stops_an_api_that_always_has_another_page(api: FakeApi) -> None:
    conn = connector(config(api, "/loop/next", {"max_pages": 7}))
    seen: list[int] = []
    with pytest.raises(SourceReadError) as caught:
        for batch in conn.read("items", StreamState(), 2):
            seen.extend(ids_of(batch))
    assert "max_pages" in caught.value.message
    assert len(api.requests) == 7
    assert seen == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]  # 7 pages of one record; the last partial batch is not yielded


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "auth",
    [
        {"api_key": "KEY"},
        {"api_key": "KEY", "api_key_in": "header"},
        {"api_key": "KEY", "api_key_in": "header", "api_key_name": "x-api-key"},
        {"api_key": "KEY", "api_key_in": "query"},
        {"bearer_token": "KEY"},
        {"headers": {"X-API-Key": "KEY"}},
        {"basic_auth": {"username": "api-user", "password": "b4sic-p4ssw0rd"}},
    ],
)
def test_each_auth_placement_is_accepted(api: FakeApi, auth: dict[str, Any]) -> None:
    auth = json.loads(json.dumps(auth).replace("KEY", api.api_key))
    cfg = {"base_url": f"{api.url}/items/link", **auth}
    assert connector(cfg).check().reachable
    assert read_all(connector(cfg), "link", batch_size=5000)[0] == ALL_IDS


def test_wrong_key_fails_check_at_stage_auth_and_read_with_the_status(api: FakeApi) -> None:
    cfg = {"base_url": f"{api.url}/items/page", "api_key": "wrong-key-123"}
    with pytest.raises(ConnectionFailed) as caught:
        connector(cfg).check()
    assert caught.value.stage == "auth"
    assert caught.value.message == "authentication rejected by the API (HTTP 401)"
    with pytest.raises(SourceReadError) as read_error:
        read_all(connector(cfg), "page")
    assert "HTTP 401" in read_error.value.message
    assert len(api.requests) == 2  # a 401 is not retried


def test_missing_credentials_fail_at_stage_auth(api: FakeApi) -> None:
    api.inject(403, path_prefix="/health")
    with pytest.raises(ConnectionFailed) as caught:
        connector({"base_url": api.url, "health_path": "/health"}).check()
    assert caught.value.stage == "auth" and "HTTP 403" in caught.value.message


def test_check_uses_health_path_when_configured(api: FakeApi) -> None:
    result = connector(config(api, "/items/page", health_path="/health")).check()
    assert result.details["status_code"] == 200
    assert api.paths() == ["/health"]


# ---------------------------------------------------------------- retries


def test_429_with_retry_after_seconds_is_retried_after_the_given_wait(api: FakeApi) -> None:
    api.inject(429, times=2, headers={"Retry-After": "3"}, path_prefix="/items")
    sleeps = Sleeps()
    ids, _ = read_all(connector(config(api, "/items/link"), sleeps=sleeps))
    assert ids == ALL_IDS
    assert sleeps == [3.0, 3.0]


def test_429_with_retry_after_http_date_is_honoured(api: FakeApi) -> None:
    api.inject(429, headers={"Retry-After": formatdate(time.time() + 5, usegmt=True)})
    sleeps = Sleeps()
    assert read_all(connector(config(api, "/items/link"), sleeps=sleeps))[0] == ALL_IDS
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 5.5


def test_500_then_success_is_retried_with_jittered_backoff(api: FakeApi) -> None:
    api.inject(500, times=1)
    api.inject(503, times=1)
    sleeps = Sleeps()
    assert (
        read_all(connector(config(api, "/items/offset", {"kind": "offset"}), sleeps=sleeps))[0]
        == ALL_IDS
    )
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # exponential, jittered


def test_persistent_5xx_gives_up_within_the_retry_budget(api: FakeApi) -> None:
    api.inject(502, times=1000)
    sleeps = Sleeps()
    cfg = config(api, "/items/page", max_retry_wait_seconds=5)
    with pytest.raises(SourceReadError) as caught:
        read_all(connector(cfg, sleeps=sleeps))
    assert "HTTP 502" in caught.value.message and "gave up" in caught.value.message
    assert 0 < sum(sleeps) <= 5


def test_retry_after_beyond_the_budget_fails_at_once(api: FakeApi) -> None:
    api.inject(429, headers={"Retry-After": "120"})
    sleeps = Sleeps()
    with pytest.raises(SourceReadError) as caught:
        read_all(connector(config(api, "/items/page", max_retry_wait_seconds=30), sleeps=sleeps))
    assert "HTTP 429" in caught.value.message and "retry budget" in caught.value.message
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_fail_at_once_with_the_upstream_status(api: FakeApi, status: int) -> None:
    api.inject(status, body={"message": "bad filter"})
    sleeps = Sleeps()
    with pytest.raises(SourceReadError) as caught:
        read_all(connector(config(api, "/items/page"), sleeps=sleeps))
    assert f"HTTP {status}" in caught.value.message and "bad filter" in caught.value.message
    assert caught.value.details and caught.value.details["status_code"] == status
    assert sleeps == [] and len(api.requests) == 1


def test_a_slow_endpoint_hits_the_timeout_instead_of_hanging(api: FakeApi) -> None:
    cfg = {"base_url": f"{api.url}/slow?seconds=10", "api_key": api.api_key, "timeout_seconds": 0.4}
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        connector(cfg).check()
    assert caught.value.stage == "timeout"
    with pytest.raises(SourceReadError) as read_error:
        read_all(connector(cfg), "slow")
    assert "did not answer within 0.4 s" in read_error.value.message
    assert time.monotonic() - started < 5  # check once, read with two retries


# ---------------------------------------------------------------- incremental


def test_incremental_run_picks_up_only_changed_records(api: FakeApi) -> None:
    incremental = {"cursor_field": "updated_at", "param": "updated_after"}
    cfg = config(api, "/items/page", {"kind": "page"}, incremental=incremental)
    ids, batches = read_all(connector(cfg))
    assert ids == ALL_IDS
    first_state = batches[-1].cursor_state
    assert first_state == {"value": "2024-01-03T02:00:00Z"}  # record 3000: epoch + 3000 min

    api.touch([5, 17, 2999], name="changed")
    new = api.add_records(2)
    api.clear()
    ids, batches = read_all(
        connector(cfg), state=StreamState(cursor_field="updated_at", cursor_state=first_state)
    )
    assert sorted(ids) == [5, 17, 2999, *new]
    assert api.requests[0].query["updated_after"] == "2024-01-03T02:00:00Z"
    second_state = batches[-1].cursor_state
    assert second_state is not None and second_state["value"] > first_state["value"]

    # Nothing changed since: nothing to read, and the committed state stays valid.
    assert read_all(connector(cfg), state=StreamState(cursor_state=second_state))[0] == []


def test_incremental_bound_is_fixed_for_the_run_across_continuations(api: FakeApi) -> None:
    incremental = {"cursor_field": "updated_at", "param": "updated_since"}
    cfg = config(api, "/items/link", incremental=incremental)
    committed = {"value": "2024-01-02T00:00:00Z"}  # inclusive: records 1440..3000
    ids, batches = read_all(
        connector(cfg), state=StreamState(cursor_state=committed), batch_size=500
    )
    assert ids == list(range(1440, N + 1))
    token = roundtrip(batches[0].resume_token)
    assert token is not None and token["since"] == committed["value"]
    # A continuation with the (uncommitted) state from another invocation keeps the bound.
    rest, more = read_all(
        connector(cfg),
        state=StreamState(cursor_state=committed, resume_token=token),
        batch_size=500,
    )
    assert rest == list(range(1940, N + 1))
    assert more[-1].cursor_state == {"value": "2024-01-03T02:00:00Z"}


def test_engine_chosen_cursor_without_a_request_parameter_filters_client_side(
    api: FakeApi,
) -> None:
    # Discover offers updated_at; the engine picks it although the resource has no param.
    cfg = config(api, "/items/cursor", {"kind": "cursor"})
    (table,) = connector(cfg).discover()
    assert table.cursor_candidates == ["updated_at"]
    first = StreamState(cursor_field="updated_at")
    ids, batches = read_all(connector(cfg), state=first)
    assert ids == ALL_IDS
    committed = batches[-1].cursor_state
    assert committed == {"value": "2024-01-03T02:00:00Z"}

    api.touch([7, 70])
    api.clear()
    state = StreamState(cursor_field="updated_at", cursor_state=committed)
    ids, batches = read_all(connector(cfg), state=state, batch_size=2)
    # Every page is read, only records at or after the committed value are kept: the
    # changed ones plus the boundary record (at least once, never lost).
    assert sorted(ids) == [7, 70, 3000]
    assert len(api.requests) == 30  # the whole resource is scanned: 30 pages of 100
    assert batches[-1].cursor_state is not None
    assert batches[-1].cursor_state["value"] > committed["value"]
    # A continuation resumes inside the filtered list without loss or repeats.
    token = roundtrip(batches[0].resume_token)
    rest, _ = read_all(
        connector(cfg),
        state=StreamState(cursor_field="updated_at", cursor_state=committed, resume_token=token),
        batch_size=2,
    )
    assert rest == ids[2:]


# ---------------------------------------------------------------- discover


def test_discover_infers_types_keys_and_cursor_candidates(api: FakeApi) -> None:
    (table,) = connector(config(api, "/items/page", {"kind": "page"})).discover()
    types = {c.name: c.type for c in table.columns}
    assert types == RECORD_TYPES
    assert table.primary_key == ["id"]
    assert table.cursor_candidates == ["updated_at"]
    assert table.row_count_estimate is None  # paginated: the sample is not the whole


def test_discover_uses_configured_key_and_incremental_cursor(api: FakeApi) -> None:
    cfg = config(
        api,
        "/nested",
        records_path="response.body.rows",
        primary_key="name",
        incremental={"cursor_field": "created_at", "param": "updated_since"},
    )
    (table,) = connector(cfg).discover()
    assert table.primary_key == ["name"]
    assert table.cursor_candidates == ["created_at"]
    assert table.row_count_estimate == 5


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("path", "extra", "expected"),
    [
        ("/html", {}, "HTML page, not JSON"),
        ("/notjson", {}, "not valid JSON"),
        ("/items/page", {"records_path": "nope.rows"}, "records_path 'nope.rows' was not found"),
        ("/items/page", {"records_path": "total"}, "not a list of records"),
        ("/object", {}, "set records_path"),
        ("/scalar", {}, "not a list of records"),
    ],
)
def test_bad_bodies_end_in_a_clear_error(
    api: FakeApi, path: str, extra: dict[str, Any], expected: str
) -> None:
    cfg = config(api, path, {"kind": "none"}, **extra)
    with pytest.raises(SourceReadError) as caught:
        read_all(connector(cfg))
    assert expected in caught.value.message
    with pytest.raises(ConnectionFailed) as discover_error:
        connector(cfg).discover()
    assert expected in discover_error.value.message and discover_error.value.stage == "read"


def test_records_path_reaches_into_nested_objects(api: FakeApi) -> None:
    ids, _ = read_all(connector(config(api, "/nested", records_path="response.body.rows")))
    assert ids == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- network security


def test_redirect_to_another_host_is_refused_without_contacting_it(api: FakeApi) -> None:
    target = f"http://localhost:{api.port}/items/all"
    cfg = {"base_url": f"{api.url}/redirect?to={target}", "api_key": api.api_key}
    with pytest.raises(ConnectionFailed) as caught:
        connector(cfg).check()
    assert "redirected to another host (localhost" in caught.value.message
    with pytest.raises(SourceReadError):
        read_all(connector(cfg), "redirect")
    assert api.paths() == ["/redirect", "/redirect"]


def test_redirect_on_the_same_host_is_followed(api: FakeApi) -> None:
    cfg = {"base_url": f"{api.url}/redirect?to=/items/all", "api_key": api.api_key}
    assert read_all(connector(cfg), "redirect")[0] == ALL_IDS


def test_deployed_stack_refuses_loopback_before_any_socket_opens(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []
    real = socket.create_connection

    def spy(*args: Any, **kwargs: Any) -> socket.socket:
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    deployed = ConnectorContext(settings=Settings(local_mode=False))
    cfg = {"base_url": f"https://127.0.0.1:{api.port}/items/page", "api_key": api.api_key}
    with pytest.raises(ConnectionFailed) as caught:
        connector(cfg, deployed).check()
    assert caught.value.stage == "policy"
    with pytest.raises(SourceReadError):
        read_all(connector(cfg, deployed), "page")
    assert opened == [] and api.connections == 0


def test_deployed_stack_refuses_a_name_that_resolves_to_a_private_address(
    monkeypatch: pytest.MonkeyPatch, resolver: None
) -> None:
    opened: list[Any] = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: opened.append(a))
    netguard.set_resolver(lambda host, port: ["10.0.0.8"])
    deployed = ConnectorContext(settings=Settings(local_mode=False))
    with pytest.raises(ConnectionFailed) as caught:
        connector(
            {"base_url": "https://api.internal.example/v1/users", "api_key": "k-1234"}, deployed
        ).check()
    assert caught.value.stage == "policy" and "private" in caught.value.message
    assert opened == []


def test_plain_http_is_refused_outside_local_mode() -> None:
    deployed = ConnectorContext(settings=Settings(local_mode=False))
    with pytest.raises(ValidationFailed):
        connector({"base_url": "http://api.example.com/v1", "api_key": "k-1234"}, deployed)


def test_connection_goes_to_the_address_the_guard_resolved(api: FakeApi, resolver: None) -> None:
    # The system resolver knows nothing of api.example.test: only the guard's answer works.
    netguard.set_resolver(lambda host, port: ["127.0.0.1"] if host == "api.example.test" else [])
    cfg = {"base_url": f"http://api.example.test:{api.port}/items/link", "api_key": api.api_key}
    assert read_all(connector(cfg), "link", batch_size=5000)[0] == ALL_IDS
    assert {r.headers["host"] for r in api.requests} == {f"api.example.test:{api.port}"}


def test_dns_failure_is_reported_at_stage_dns(resolver: None) -> None:
    def fail(host: str, port: int) -> list[str]:
        raise socket.gaierror("Name or service not known")

    netguard.set_resolver(fail)
    with pytest.raises(ConnectionFailed) as caught:
        connector({"base_url": "https://nowhere.example.test/v1", "api_key": "k-1234"}).check()
    assert caught.value.stage == "dns"


def test_refused_connection_is_reported_at_stage_tcp() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionFailed) as caught:
        connector({"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "k-1234"}).check()
    assert caught.value.stage == "tcp"


def test_tls_failure_is_reported_at_stage_tls_with_an_allowlisted_network(api: FakeApi) -> None:
    # https against the plain-http server: the handshake fails. The allowlist lets a
    # deployed stack reach 127.0.0.1, so this also proves ALLOWED_CIDRS is honoured.
    allowed = ConnectorContext(settings=Settings(local_mode=False, allowed_cidrs=["127.0.0.0/8"]))
    with pytest.raises(ConnectionFailed) as caught:
        connector(
            {"base_url": f"https://127.0.0.1:{api.port}/health", "api_key": "k-1234"}, allowed
        ).check()
    assert caught.value.stage == "tls"
    assert api.connections == 1


# ---------------------------------------------------------------- secrets


def test_a_query_api_key_never_appears_in_tokens_errors_or_logs(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="datasources")
    key = api.api_key
    cfg = {"base_url": f"{api.url}/items/link", "api_key": key, "api_key_in": "query"}
    ids, batches = read_all(connector(cfg), "link", batch_size=400)
    assert ids == ALL_IDS
    assert all(r.query.get("api_key") == key for r in api.requests)  # the server echoes it in Link
    texts = [json.dumps(b.resume_token) for b in batches]
    # The parameter is stripped from stored URLs (not merely masked), and re-added per request.
    urls = [b.resume_token["pos"]["url"] for b in batches[:-1] if b.resume_token]
    assert urls and all("api_key" not in url for url in urls)
    texts.append(json.dumps(connector(cfg).check().model_dump()))

    failing: list[tuple[dict[str, Any], str]] = [
        (
            {
                **cfg,
                "base_url": f"{api.url}/redirect?to=http://localhost:{api.port}/x%3Fapi_key%3D{key}",
            },
            "redirect",
        ),
        (
            {
                **cfg,
                "base_url": f"{api.url}/items/page",
                "resources": [{"name": "p", "records_path": "nope"}],
            },
            "p",
        ),
        ({**cfg, "base_url": f"{api.url}/slow?seconds=5", "timeout_seconds": 0.2}, "slow"),
        ({**cfg, "base_url": f"{api.url}/notjson"}, "notjson"),
        ({**cfg, "base_url": f"{api.url}/items/offset", "max_retry_wait_seconds": 1}, "offset"),
    ]
    api.inject(500, times=100, path_prefix="/items/offset")
    for bad, stream in failing:
        conn = connector(bad)
        with pytest.raises(ConnectionFailed) as check_error:
            conn.check()
        with pytest.raises(SourceReadError) as read_error:
            read_all(conn, stream)
        for error in (check_error.value, read_error.value):
            texts.append(str(error) + json.dumps(error.details))
    texts.append(caplog.text)
    assert len(texts) > 10
    for text in texts:
        assert key not in text


def test_secret_headers_and_passwords_are_masked_in_errors(api: FakeApi) -> None:
    secret = "hdr-secret-value-42"
    api.inject(500, times=10, body={"message": f"upstream echoed {secret} and b4sic-p4ssw0rd"})
    cfg = {
        "base_url": f"{api.url}/items/page",
        "headers": {"X-Session-Token": secret},
        "basic_auth": {"username": "api-user", "password": "b4sic-p4ssw0rd"},
        "max_retry_wait_seconds": 0,
    }
    with pytest.raises(SourceReadError) as caught:
        read_all(connector(cfg), "page")
    assert "HTTP 500" in caught.value.message and MASK in caught.value.message
    assert secret not in caught.value.message and "b4sic-p4ssw0rd" not in caught.value.message


# ---------------------------------------------------------------- config model


def test_minimal_config_and_secret_round_trip() -> None:
    minimal = ApiConfig.model_validate(
        {"base_url": "https://api.example.com/v1/users", "api_key": "k"}
    )
    assert minimal.effective_api_key_name == "Authorization"
    full = ApiConfig.model_validate(
        {
            "base_url": "https://api.example.com",
            "api_key": "key-1",
            "api_key_in": "query",
            "bearer_token": "tok-2",
            "basic_auth": {"username": "u", "password": "pw-3"},
            "headers": {"X-Api-Token": "hdr-4", "X-Tenant": "acme"},
            "resources": [
                {
                    "name": "users",
                    "path": "/users",
                    "primary_key": "id",
                    "pagination": {"kind": "cursor", "cursor_path": "meta.next"},
                    "incremental": {"cursor_field": "updated_at", "param": "since"},
                }
            ],
        }
    )
    assert full.effective_api_key_name == "api_key"
    assert full.resources[0].primary_key == ["id"]
    masked, secrets = split_secrets(full)
    assert sorted(value for _, value in secrets) == ["hdr-4", "key-1", "pw-3", "tok-2"]
    assert "key-1" not in json.dumps(masked) and masked["headers"]["X-Tenant"] == "acme"
    assert merge_secrets("api", masked, secrets) == full


def test_duplicate_resource_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        ApiConfig.model_validate(
            {"base_url": "https://a.example", "resources": [{"name": "x"}, {"name": "x"}]}
        )


def test_registry_builds_the_api_connector(api: FakeApi) -> None:
    conn = get_connector("api", ApiConfig.model_validate(config(api, "/health")), LOCAL)
    assert isinstance(conn, ApiConnector)
    conn.close()
