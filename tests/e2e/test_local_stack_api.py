"""End to end over HTTP against the local stack: HTTP API sources, from connect to Parquet.

Given a JSON API on loopback (tests/support/fake_api.py) that pages in every usual way,
when a client tests the connection, connects the API (the seed-shaped minimal config and
a richer one with one resource per pagination kind), reads its schema and syncs it with
a small batch size, then the Parquet parts hold exactly the served records, none lost
or doubled across pages and parts. After records change, an incremental sync lands only
them. A wrong key fails at stage `auth`, and no response ever carries a key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.e2e.helpers import (
    connect,
    envelope,
    get,
    only_stream,
    parquet_table,
    post,
    sync,
)
from tests.support.fake_api import DEFAULT_API_KEY, RECORD_TYPES, FakeApi

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.e2e

WRONG_KEY = "sk_test_wrong_0000000000aa"


@pytest.fixture
def workspace() -> str:
    return f"ws_e2e_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The body of every HTTP response this test receives from the stack."""
    texts: list[str] = []
    real_send = requests.Session.send

    def send(self: requests.Session, request: Any, **kwargs: Any) -> requests.Response:
        response = real_send(self, request, **kwargs)
        texts.append(response.text + json.dumps(dict(response.headers)))
        return response

    monkeypatch.setattr(requests.Session, "send", send)
    return texts


def fake(records: int) -> Iterator[FakeApi]:
    api = FakeApi(records=records).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def orders_api() -> Iterator[FakeApi]:
    yield from fake(450)


@pytest.fixture
def items_api() -> Iterator[FakeApi]:
    yield from fake(300)


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def assert_served(rows: list[dict[str, Any]], served: list[dict[str, Any]]) -> None:
    """The landed rows are the served records: same ids once each, same values."""
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a record landed twice"
    assert sorted(ids) == sorted(r["id"] for r in served)
    by_id = {r["id"]: r for r in rows}
    for record in served:
        got = by_id[record["id"]]
        where = f"record {record['id']}"
        assert got["name"] == record["name"], where
        assert got["price"] == record["price"], where
        assert got["active"] is record["active"], where
        assert got["note"] == record["note"], where
        assert got["created_at"] == stamp(record["created_at"]), where
        assert got["updated_at"] == stamp(record["updated_at"]), where
        assert got["ship_date"] == date.fromisoformat(record["ship_date"]), where
        assert json.loads(got["tags"]) == record["tags"], where
        assert json.loads(got["meta"]) == record["meta"], where


def rows_of(stack: LocalStack, stream: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    table, parts = parquet_table(stack, stream["output"])
    return table.to_pylist(), parts


def test_minimal_api_config_test_schema_sync_and_incremental(
    local_stack: LocalStack, workspace: str, orders_api: FakeApi, seen: list[str]
) -> None:
    stack = local_stack
    api = orders_api
    config = {"base_url": f"{api.url}/orders", "api_key": DEFAULT_API_KEY}

    tested = envelope(
        post(
            stack,
            workspace,
            "test-connection",
            {"source_config": {"type": "api", "connection_config": config}},
        ),
        200,
    )
    assert tested["reachable"] is True and tested["details"]["status_code"] == 200

    source = connect(stack, workspace, "api", "orders_api", config)
    assert source["connection_config"]["api_key"] == "********"

    schema = envelope(
        get(stack, workspace, "schema", {"source_id": source["id"], "scope": "user"}), 200
    )
    (table,) = schema["tables"]
    assert table["name"] == "orders"
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types == RECORD_TYPES
    assert table["primary_key"] == ["id"]
    assert table["cursor_field"] == "updated_at"

    # 450 records served 100 a page behind Link headers, written 70 a part.
    api.clear()
    job = sync(stack, workspace, source["id"], batch_size=70)
    assert job["status"] == "completed", job
    assert job["records_processed"] == 450
    stream = only_stream(job)
    assert stream["parts"] == 7
    rows, parts = rows_of(stack, stream)
    assert parts == 7
    assert_served(rows, api.records)
    # Link-header paging walked every page (discovery samples page 1 too).
    assert {r.query.get("page", "1") for r in api.requests} == {"1", "2", "3", "4", "5"}

    # Two records change, two are added: the next run lands them (and, because this
    # config has no incremental request parameter, the records at the committed value
    # again: the documented at-least-once boundary).
    boundary = max(r["updated_at"] for r in api.records)
    at_boundary = {r["id"] for r in api.records if r["updated_at"] == boundary}
    api.touch([10, 200], name="changed")
    added = api.add_records(2)
    second = sync(stack, workspace, source["id"], batch_size=70)
    assert second["status"] == "completed", second
    rows, _ = rows_of(stack, only_stream(second))
    ids = sorted(r["id"] for r in rows)
    assert len(ids) == len(set(ids))
    assert set(ids) == {10, 200, *added} | at_boundary
    assert {r["id"]: r["name"] for r in rows}[10] == "changed"

    leaked = [text for text in seen if DEFAULT_API_KEY in text]
    assert not leaked, leaked[:1]


RICH_RESOURCES = [
    {
        "name": "paged",
        "path": "/items/page",
        "records_path": "data",
        "primary_key": "id",
        "pagination": {"kind": "page", "size_param": "per_page", "page_size": 40},
        "incremental": {"cursor_field": "updated_at", "param": "updated_after"},
    },
    {
        "name": "offsets",
        "path": "/items/offset",
        "records_path": "results",
        "primary_key": ["id"],
        "pagination": {"kind": "offset", "page_size": 50},
        "incremental": {"cursor_field": "updated_at", "param": "updated_after"},
    },
    {
        "name": "cursors",
        "path": "/items/cursor",
        "records_path": "items",
        "primary_key": "id",
        "pagination": {
            "kind": "cursor",
            "cursor_path": "meta.next_cursor",
            "size_param": "limit",
            "page_size": 60,
        },
        "incremental": {"cursor_field": "updated_at", "param": "updated_after"},
    },
    {
        "name": "next_urls",
        "path": "/items/next",
        "records_path": "records",
        "primary_key": "id",
        "pagination": {
            "kind": "next_url",
            "next_url_path": "links.next",
            "size_param": "limit",
            "page_size": 45,
        },
        "incremental": {"cursor_field": "updated_at", "param": "updated_after"},
    },
]


def test_rich_api_config_every_pagination_kind_and_incremental(
    local_stack: LocalStack, workspace: str, items_api: FakeApi, seen: list[str]
) -> None:
    stack = local_stack
    api = items_api
    # The key goes in a query parameter: the strictest case for keeping it out of sight.
    config = {
        "base_url": api.url,
        "api_key": DEFAULT_API_KEY,
        "api_key_in": "query",
        "resources": RICH_RESOURCES,
    }
    tested = envelope(
        post(
            stack,
            workspace,
            "test-connection",
            {"source_config": {"type": "api", "connection_config": config}},
        ),
        200,
    )
    assert tested["reachable"] is True
    assert tested["details"]["url"].startswith(f"{api.url}/items/page")

    source = connect(stack, workspace, "api", "items_api", config)
    schema = envelope(
        get(stack, workspace, "schema", {"source_id": source["id"], "scope": "user"}), 200
    )
    tables = {t["name"]: t for t in schema["tables"]}
    assert set(tables) == {"paged", "offsets", "cursors", "next_urls"}
    for table in tables.values():
        assert table["primary_key"] == ["id"]
        assert table["cursor_candidates"] == ["updated_at"]
        assert {c["name"]: c["type"] for c in table["columns"]}["updated_at"] == "timestamp_tz"

    # Every resource, 300 records each, 70 records a part: 5 parts a stream.
    job = sync(stack, workspace, source["id"], batch_size=70)
    assert job["status"] == "completed", job
    assert job["records_processed"] == 4 * 300
    streams = {s["stream"]: s for src in job["sources"] for s in src["streams"]}
    assert set(streams) == set(tables)
    served = api.records
    for name, stream in streams.items():
        assert stream["mode"] == "incremental" and stream["cursor_field"] == "updated_at"
        assert stream["records"] == 300, name
        rows, parts = rows_of(stack, stream)
        assert parts == 5, name
        assert_served(rows, served)

    # Three records change and three are added; the API filters on `updated_after`
    # (exclusive), so each stream lands exactly those six.
    changed = [5, 77, 299]
    api.touch(changed, name="changed", price=9.5)
    added = api.add_records(3)
    api.clear()
    second = sync(stack, workspace, source["id"], batch_size=70)
    assert second["status"] == "completed", second
    assert second["records_processed"] == 4 * 6
    served = [r for r in api.records if r["id"] in {*changed, *added}]
    for stream in (s for src in second["sources"] for s in src["streams"]):
        rows, _ = rows_of(stack, stream)
        assert_served(rows, served)
        assert {r["id"]: r["price"] for r in rows}[77] == 9.5
    # The committed cursor went out as the API's own filter parameter.
    previous_max = max(r["updated_at"] for r in api.records if r["id"] not in {*changed, *added})
    # (The requests without it are discovery's samples of each resource's first page.)
    filtered = [r for r in api.requests if "updated_after" in r.query]
    assert {r.query["updated_after"] for r in filtered} == {previous_max}
    assert {r.path for r in filtered} == {res["path"] for res in RICH_RESOURCES}
    assert all(r.query.get("api_key") == DEFAULT_API_KEY for r in api.requests)

    leaked = [text for text in seen if DEFAULT_API_KEY in text]
    assert not leaked, leaked[:1]


def test_a_wrong_api_key_fails_at_stage_auth_and_no_key_is_echoed(
    local_stack: LocalStack, workspace: str, orders_api: FakeApi, seen: list[str]
) -> None:
    stack = local_stack
    for placement in ("bearer", "header", "query"):
        response = post(
            stack,
            workspace,
            "test-connection",
            {
                "source_config": {
                    "type": "api",
                    "connection_config": {
                        "base_url": f"{orders_api.url}/orders",
                        "api_key": WRONG_KEY,
                        "api_key_in": placement,
                    },
                }
            },
        )
        data = envelope(response, 400)
        assert data["stage"] == "auth", (placement, data)
        assert data.get("status_code") == 401
        assert "auth" in response.json()["message"].lower()
    assert len(seen) == 3
    assert not [text for text in seen if WRONG_KEY in text or DEFAULT_API_KEY in text]
    # The request really carried the wrong key (so the 401 was the API's answer).
    assert len(orders_api.requests) == 3
