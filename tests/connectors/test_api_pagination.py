"""Pagination auto-detection against the fake API (issue 13, item 3): every style lands
every record, or the sync fails naming the signal; none lands one page as complete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from datasources.config import Settings
from datasources.connectors.api import ApiConnector
from datasources.connectors.base import Batch, ConnectorContext, StreamState
from datasources.errors import SourceReadError
from datasources.models.connection import ApiConfig
from tests.support.fake_api import FakeApi

LOCAL = ConnectorContext(settings=Settings(local_mode=True))
N = 1234
ALL_IDS = list(range(1, N + 1))

# style -> (path of the minimal config, requests a complete read takes)
STYLES: dict[str, tuple[str, int]] = {
    "json-server _page/_limit + X-Total-Count": ("/styles/json-server?_page=1&_limit=100", 13),
    "json-server _start/_limit + X-Total-Count": ("/styles/json-server?_start=0&_limit=250", 5),
    "page + per_page, total_pages in the body": ("/styles/pages", 50),
    "offset/limit, meta.pagination.total": ("/styles/offset-meta", 13),
    "offset/limit in the URL + Content-Range": ("/styles/content-range?offset=0&limit=300", 5),
}


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(records=N) as server:
        yield server


def minimal(api: FakeApi, path: str) -> ApiConnector:
    """The minimal published config: base_url and api_key, nothing about paging."""
    config = ApiConfig(base_url=api.url + path, api_key=api.api_key)
    return ApiConnector(config, LOCAL, sleep=lambda _s: None)


def ids_of(batch: Batch) -> list[int]:
    assert not isinstance(batch.records, list)
    return [int(v) for v in batch.records.column("id").to_pylist()]


def read(
    conn: ApiConnector, stream: str, token: dict[str, Any] | None = None, batch_size: int = 400
) -> list[Batch]:
    return list(conn.read(stream, StreamState(resume_token=token), batch_size))


def stream_of(path: str) -> str:
    return path.split("?")[0].rsplit("/", 1)[-1]


@pytest.mark.parametrize("style", list(STYLES))
def test_each_style_lands_every_record_exactly_once_without_an_extra_request(
    api: FakeApi, style: str
) -> None:
    path, requests = STYLES[style]
    batches = read(minimal(api, path), stream_of(path))
    assert [i for b in batches for i in ids_of(b)] == ALL_IDS
    # The total stops the read: no request past the last page.
    assert len(api.requests) == requests, [r.raw_target for r in api.requests]


@pytest.mark.parametrize("style", list(STYLES))
def test_each_style_resumes_from_every_token_with_exactly_the_remaining_records(
    api: FakeApi, style: str
) -> None:
    path, _ = STYLES[style]
    batches = read(minimal(api, path), stream_of(path), batch_size=333)
    assert len(batches) == -(-N // 333)  # every record, so there are tokens to resume from
    consumed = 0
    for batch in batches[:-1]:
        consumed += batch.num_rows
        token = json.loads(json.dumps(batch.resume_token))  # as the engine stores it
        rest = read(minimal(api, path), stream_of(path), token, batch_size=333)
        assert [i for b in rest for i in ids_of(b)] == ALL_IDS[consumed:]


@pytest.mark.parametrize(
    ("path", "signal"),
    [
        ("/styles/total-only", "X-Total-Count header"),
        ("/styles/body-total", "'total' in the body"),
    ],
)
def test_a_total_without_a_way_to_page_fails_naming_the_signal_and_the_config(
    api: FakeApi, path: str, signal: str
) -> None:
    landed: list[Batch] = []
    with pytest.raises(SourceReadError) as failed:
        for batch in minimal(api, path).read(stream_of(path), StreamState(), 1000):
            landed.append(batch)
    message = failed.value.message
    assert signal in message and f"{N} records" in message and "100" in message
    assert "pagination" in message and '"kind": "page"' in message
    assert failed.value.details is not None and failed.value.details["stage"] == "read"
    assert landed == []  # not one page landed as if it were the whole resource


def test_discover_of_such_a_resource_does_not_claim_the_page_is_everything(
    api: FakeApi,
) -> None:
    (table,) = minimal(api, "/styles/total-only").discover()
    assert table.row_count_estimate is None


def test_a_single_page_resource_is_stated_in_the_notes(api: FakeApi) -> None:
    batches = read(minimal(api, "/items/all"), "all", batch_size=5000)
    assert [i for b in batches for i in ids_of(b)] == ALL_IDS
    assert any("single page" in note for note in batches[0].notes), batches[0].notes
    (table,) = minimal(api, "/items/all").discover()
    assert table.row_count_estimate == N


def test_a_total_the_first_page_already_holds_is_a_single_page(api: FakeApi) -> None:
    batches = read(minimal(api, "/styles/json-server?_page=1&_limit=5000"), "json-server")
    assert [i for b in batches for i in ids_of(b)] == ALL_IDS
    assert len(api.requests) == 1


def test_explicit_configs_still_page_a_style_auto_cannot_see(api: FakeApi) -> None:
    config = ApiConfig.model_validate(
        {
            "base_url": api.url,
            "api_key": api.api_key,
            "resources": [
                {
                    "name": "items",
                    "path": "/styles/json-server",
                    "pagination": {
                        "kind": "page",
                        "page_param": "_page",
                        "size_param": "_limit",
                        "page_size": 500,
                    },
                }
            ],
        }
    )
    batches = read(ApiConnector(config, LOCAL), "items")
    assert [i for b in batches for i in ids_of(b)] == ALL_IDS


def test_a_read_that_starts_mid_resource_in_the_url_pages_on_from_there(api: FakeApi) -> None:
    path = "/styles/content-range?offset=200&limit=300"
    batches = read(minimal(api, path), "content-range")
    assert [i for b in batches for i in ids_of(b)] == ALL_IDS[200:]
