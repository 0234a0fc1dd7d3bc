"""Through the real sync endpoint and engine (moto stack): an API resource that signals
more records than its page holds, with no way to page it, ends `failed` naming the
signal, never `completed` with one page; a detectable style lands every record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack
from tests.integration.test_sync_engine import assert_exact, rows_of_job, sync
from tests.support.fake_api import FakeApi

N = 730


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(records=N) as server:
        yield server


def connect_api(stack: Stack, name: str, base_url: str, key: str) -> str:
    source = {
        "type": "api",
        "name": name,
        "connection_config": {"base_url": base_url, "api_key": key},
    }
    response = stack.call("connect", body={"sources": [source]})
    assert response.status_code == 201, response.body
    return str(response.data["connected_sources"][0]["id"])


def only_stream(job: dict[str, Any]) -> dict[str, Any]:
    (stream,) = job["sources"][0]["streams"]
    return dict(stream)


def test_a_total_without_paging_fails_the_job_naming_the_signal(stack: Stack, api: FakeApi) -> None:
    source_id = connect_api(stack, "total_only", f"{api.url}/styles/total-only", api.api_key)
    job = sync(stack, source_id, batch_size=50).data
    assert job["status"] == "failed", job
    stream = only_stream(job)
    assert stream["status"] == "failed"
    assert "X-Total-Count header" in stream["error"] and f"{N} records" in stream["error"]
    assert not rows_of_job(stack, source_id, job["job_id"])  # not one page landed


def test_a_json_server_style_resource_lands_every_record_and_completes(
    stack: Stack, api: FakeApi
) -> None:
    url = f"{api.url}/styles/json-server?_page=1&_limit=100"
    source_id = connect_api(stack, "json_server", url, api.api_key)
    job = sync(stack, source_id, batch_size=250).data
    assert job["status"] == "completed", job
    assert_exact(rows_of_job(stack, source_id, job["job_id"]), range(1, N + 1))


def test_a_single_page_resource_is_said_in_the_jobs_notes(stack: Stack, api: FakeApi) -> None:
    # What the connector says about its read reaches the job: a completed job over a
    # resource read as one page says so, once, however many batches it wrote.
    source_id = connect_api(stack, "single_page", f"{api.url}/items/all", api.api_key)
    job = sync(stack, source_id, batch_size=100).data
    assert job["status"] == "completed", job
    stream = only_stream(job)
    assert stream["records"] == N
    single = [note for note in stream["notes"] if "single page" in note]
    assert len(single) == 1, stream["notes"]
    status = stack.call("status", path={"job_id": job["job_id"]}, query={"scope": "user"})
    assert single[0] in only_stream(status.data)["notes"]
