"""Each route answers the model the OpenAPI document names for it, and nothing more.

The handlers declare their response type (`api_route(response=...)`); the document is
generated from the models by `scripts/gen_openapi.py`. These tests tie the two
together route by route, and check what the serialisation keeps and refuses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from datasources.http import ResponseType
from tests.conftest import EVENTS, Stack

ROOT = Path(__file__).resolve().parents[2]


def _success_data_models(operation: dict[str, Any]) -> dict[str, str]:
    """Per 2xx status, the component the envelope's `data` refers to ("[X]" for a list)."""
    found = {}
    for status, response in operation["responses"].items():
        if not status.startswith("2"):
            continue
        data = response["content"]["application/json"]["schema"]["properties"]["data"]
        if data.get("type") == "array":
            found[status] = f"[{data['items']['$ref'].rsplit('/', 1)[1]}]"
        else:
            found[status] = data["$ref"].rsplit("/", 1)[1]
    return found


def _declared(response_type: ResponseType) -> str:
    name = response_type.model.__name__
    return f"[{name}]" if response_type.many else name


@pytest.mark.parametrize("endpoint", sorted(Stack.ENDPOINTS))
def test_the_route_answers_the_model_the_document_names_for_its_success(
    stack: Stack, endpoint: str
) -> None:
    function_dir, _ = Stack.ENDPOINTS[endpoint]
    event = json.loads((EVENTS / f"{function_dir}.json").read_text())
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    operation = document["paths"][event["resource"]][event["httpMethod"].lower()]

    handler = stack.handler(function_dir)
    route = sys.modules[handler.__module__].route

    documented = _success_data_models(operation)
    assert documented, f"{endpoint}: no success response documented"
    assert set(documented.values()) == {_declared(route.response_type)}, documented


def test_every_documented_response_model_refuses_undeclared_fields() -> None:
    from datasources.models import responses
    from datasources.models.common import ResponseModel

    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    schemas = document["components"]["schemas"]
    models = [
        m
        for m in vars(responses).values()
        if isinstance(m, type) and issubclass(m, ResponseModel) and m is not ResponseModel
    ]
    assert len(models) >= 12
    for model in models:
        # The model refuses it, and the document says so (additionalProperties: false).
        with pytest.raises(ValidationError) as caught:
            model.model_validate({"undeclared": 1})
        assert ("undeclared",) in [e["loc"] for e in caught.value.errors()], model
        assert any(e["type"] == "extra_forbidden" for e in caught.value.errors()), model
        assert schemas[model.__name__]["additionalProperties"] is False, model.__name__


def test_a_route_answering_anything_but_its_declared_model_fails() -> None:
    from datasources.models.responses import CleanupData, SourceView

    fields = {
        "deleted_count": 0,
        "deleted_source_ids": [],
        "not_found": [],
        "cancelled_job_ids": [],
        "continuing": False,
        "pending_source_ids": [],
    }
    cleanup = ResponseType(CleanupData)
    assert cleanup.dump(CleanupData(**fields)) == fields
    # A plain dict (even of the right shape, or with one field more) is refused.
    for data in (fields, {**fields, "secret_arn": "arn:..."}):
        with pytest.raises(TypeError, match="declared response type"):
            cleanup.dump(data)
    for data in ([CleanupData(**fields)], CleanupData(**fields)):
        with pytest.raises(TypeError, match="declared response type"):
            ResponseType(list[SourceView]).dump(data)
    with pytest.raises(TypeError, match="a model or a list of one"):
        ResponseType(dict[str, Any])


def test_null_fields_are_kept_and_only_unset_ones_left_out() -> None:
    from datasources.models.responses import SyncJobView

    adapter = ResponseType(SyncJobView)
    # A sync with no sources: the four fields it has always answered.
    empty = SyncJobView(job_id=None, status="completed", records_processed=0, sources=[])
    assert adapter.dump(empty) == {
        "job_id": None,
        "status": "completed",
        "records_processed": 0,
        "sources": [],
    }
    # A job: every field, null ones included.
    job = SyncJobView(
        job_id="job_0123456789abcdef0123",
        status="running",
        records_processed=3,
        trigger="api",
        sources=[],
        options={},
        created_at="2026-12-02T10:00:00.000Z",
        started_at=None,
        finished_at=None,
        error=None,
        status_url="/api/v1/data/ws/sync/job_0123456789abcdef0123?scope=user",
    )
    assert list(adapter.dump(job)) == list(SyncJobView.model_fields)
    assert adapter.dump(job)["error"] is None


def test_a_sync_with_no_sources_answers_the_four_fields(stack: Stack) -> None:
    response = stack.call("sync", body={"scope": "user"})
    assert response.status_code == 200, response.body
    assert response.body["message"] == "No data sources to sync"
    assert response.data == {
        "job_id": None,
        "status": "completed",
        "records_processed": 0,
        "sources": [],
    }


def test_a_source_answers_every_field_null_ones_included(stack: Stack) -> None:
    from datasources.models.responses import SourceView

    source = {
        "type": "file",
        "name": "orders",
        "connection_config": {"url": f"s3://{stack.bucket}/uploads/acme/orders.csv"},
    }
    connected = stack.call("connect", body={"scope": "user", "sources": [source]})
    assert connected.status_code == 201, connected.body
    (view,) = connected.data["connected_sources"]
    # Every field of the model, in its order, the null ones too.
    assert list(view) == list(SourceView.model_fields)
    assert view["last_sync"] is None and view["schedule"] is None
    assert stack.call("list", query={"scope": "user"}).data == [view]
