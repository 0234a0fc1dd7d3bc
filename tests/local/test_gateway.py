"""The local gateway serves template.yaml's routes as API Gateway would: REST proxy
events to the routed function, API Gateway's own answers (404, 413, 502) in the API's
envelope, responses passed through, Swagger UI offline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.functions import Route, routes
from local.gateway import LocalGateway, build_proxy_event
from tests.support.recorder import Recorder


@pytest.fixture
def gateway(template: dict[str, Any]) -> Iterator[tuple[LocalGateway, Recorder]]:
    recorder = Recorder()
    server = LocalGateway(routes(template), port=0, loader=recorder.loader, log=lambda line: None)
    server.start()
    try:
        yield server, recorder
    finally:
        server.stop()


def test_gateway_sends_a_rest_proxy_event_to_the_routed_function(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    response = requests.get(
        f"{server.url}/api/v1/data/ws_1/sync/job_0123456789abcdef0123?scope=user&x=1&x=2",
        headers={"Authorization": "Bearer t"},
        timeout=10,
    )
    assert response.status_code == 200
    ((code_uri, event, context),) = recorder.events
    assert code_uri == "functions/sync_status"
    assert event["resource"] == "/api/v1/data/{workspace_id}/sync/{job_id}"
    assert event["path"] == "/api/v1/data/ws_1/sync/job_0123456789abcdef0123"
    assert event["pathParameters"] == {"workspace_id": "ws_1", "job_id": "job_0123456789abcdef0123"}
    assert event["queryStringParameters"] == {"scope": "user", "x": "2"}
    assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert event["headers"]["Authorization"] == "Bearer t"
    assert event["requestContext"]["stage"] == "v1"
    assert event["requestContext"]["path"] == "/v1" + event["path"]
    assert event["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"
    assert event["body"] is None and event["isBase64Encoded"] is False
    # The context counts down from the function's Timeout (29 s in the template).
    assert 0 < context.get_remaining_time_in_millis() <= 29_000


def test_gateway_answers_unknown_routes_and_methods_with_a_404_envelope(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    for method, path in [("GET", "/api/v1/data/ws_1/nope"), ("DELETE", "/api/v1/data/ws_1/list")]:
        response = requests.request(method, server.url + path, timeout=10)
        assert response.status_code == 404
        assert response.json() == {"status": "error", "message": "Not found", "data": None}
    assert recorder.events == []


def test_gateway_refuses_bodies_over_api_gateways_10_mb_limit(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    response = requests.post(
        server.url + "/api/v1/data/ws_1/connect", data=b"x" * (10 * 1024 * 1024 + 1), timeout=30
    )
    assert response.status_code == 413
    assert response.json()["status"] == "error"
    assert recorder.events == []


def test_gateway_turns_a_crashing_handler_into_a_502_with_the_request_id(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    recorder.answer = RuntimeError("boom")
    response = requests.post(server.url + "/api/v1/data/ws_1/sync", json={}, timeout=10)
    assert response.status_code == 502
    body = response.json()
    assert body["message"] == "Internal server error"
    assert body["data"]["request_id"] == response.headers["x-amzn-RequestId"]
    assert "boom" not in response.text


def test_gateway_passes_status_headers_and_body_through(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, recorder = gateway
    recorder.answer = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Test": "yes"},
        "body": '{"status":"success","message":"created","data":{"n":1}}',
    }
    response = requests.post(
        server.url + "/api/v1/data/ws_1/connect", json={"sources": []}, timeout=10
    )
    assert response.status_code == 201
    assert response.headers["X-Test"] == "yes"
    assert response.json()["data"] == {"n": 1}
    (_, event, _) = recorder.events[0]
    assert json.loads(event["body"]) == {"sources": []}


def test_gateway_serves_swagger_ui_assets_offline(
    gateway: tuple[LocalGateway, Recorder],
) -> None:
    server, _ = gateway
    page = requests.get(server.url + "/docs", timeout=10)
    assert page.status_code == 200 and "/openapi.yaml" in page.text
    bundle = requests.get(server.url + "/docs/swagger-ui-bundle.js", timeout=10)
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    assert requests.get(server.url + "/docs/../template.yaml", timeout=10).status_code == 404


def test_proxy_event_marks_binary_bodies_as_base64() -> None:
    route = Route("POST", "/x/{id}", "F", "functions/f", "app.handler")
    event = build_proxy_event(
        route=route,
        method="POST",
        raw_path="/x/a%20b",
        headers=[("Content-Type", "application/octet-stream")],
        body=b"\xff\xfe",
        path_parameters={"id": "a b"},
        stage="v1",
    )
    assert event["isBase64Encoded"] is True and event["body"] == "//4="
    assert event["path"] == "/x/a b"
