"""Generate openapi.yaml from the pydantic models (run `make openapi`).

`tests/unit/test_openapi.py` fails when the committed file differs from what this
prints, so the document cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))

import yaml  # noqa: E402
from pydantic import BaseModel, TypeAdapter  # noqa: E402
from pydantic.json_schema import models_json_schema  # noqa: E402

from datasources.models import requests, responses, schedules, source_requests  # noqa: E402

PREFIX = "/api/v1/data/{workspace_id}"
ERRORS = {
    "400": "Malformed request, or the source could not be reached (see data.stage)",
    "401": "Missing, expired or invalid token",
    "403": "Authenticated, but the role may not do this",
    "404": "Unknown, or not visible to this caller",
    "409": "Conflict: duplicate name, or a sync of this source is already running",
    "413": "Request body too large",
    "422": "Validation failed (data.errors lists each problem)",
    "429": "Throttled",
    "502": "The source failed while it was being read",
    "500": "Internal error (quote the request id)",
}


def build() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        source_requests.ConnectRequest,
        requests.SyncRequest,
        requests.CleanupRequest,
        source_requests.TestConnectionRequest,
        responses.ConnectData,
        responses.SourceView,
        responses.SyncJobView,
        responses.CleanupData,
        responses.TestConnectionData,
        responses.SchemaData,
        responses.PreviewData,
        responses.ErrorEnvelope,
        schedules.ScheduleRequest,
        responses.SchedulesData,
    ]
    _, schema = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    components: dict[str, Any] = dict(schema.get("$defs", {}))

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def model_ref(model: type[BaseModel]) -> dict[str, str]:
        # The response models the routes declare (api_route(response=...)), by class, so
        # a renamed model cannot leave the document pointing at its old name.
        return ref(model.__name__)

    def envelope(data: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "status": {"type": "string", "enum": ["success"]},
            "message": {"type": "string"},
            "data": data,
            **(extra or {}),
        }
        return {
            "type": "object",
            "required": ["status", "message", "data"],
            "properties": properties,
        }

    def json_content(schema: dict[str, Any]) -> dict[str, Any]:
        return {"application/json": {"schema": schema}}

    def errors(*codes: str) -> dict[str, Any]:
        return {
            code: {"description": ERRORS[code], "content": json_content(ref("ErrorEnvelope"))}
            for code in codes
        }

    def query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
        params = []
        # Shared types (e.g. Scope) are referenced in components, as in the request bodies.
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.get("$defs", {}))
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
        return params

    workspace = {
        "name": "workspace_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
    }
    common = ("401", "403", "404", "413", "422", "429", "500")
    paths: dict[str, Any] = {
        f"{PREFIX}/connect": {
            "post": {
                "operationId": "connectSources",
                "summary": "Connect data sources (all or none)",
                "parameters": [workspace],
                "requestBody": {"required": True, "content": json_content(ref("ConnectRequest"))},
                "responses": {
                    "201": {
                        "description": "Connected",
                        "content": json_content(envelope(model_ref(responses.ConnectData))),
                    },
                    **errors("400", "409", *common),
                },
            }
        },
        f"{PREFIX}/list": {
            "get": {
                "operationId": "listSources",
                "summary": "List the caller's data sources in a scope",
                "parameters": [workspace, *query_params(requests.ListQuery)],
                "responses": {
                    "200": {
                        "description": "One page of sources",
                        "content": json_content(
                            envelope(
                                {"type": "array", "items": model_ref(responses.SourceView)},
                                {"next_token": {"type": ["string", "null"]}},
                            )
                        ),
                    },
                    **errors("400", *common),
                },
            }
        },
        f"{PREFIX}/sync": {
            "post": {
                "operationId": "syncSources",
                "summary": "Start a sync; small ones complete within the request",
                "parameters": [workspace],
                "requestBody": {"required": False, "content": json_content(ref("SyncRequest"))},
                "responses": {
                    "200": {
                        "description": "Completed (or failed) within the request",
                        "content": json_content(envelope(model_ref(responses.SyncJobView))),
                    },
                    "202": {
                        "description": "Running: poll status_url",
                        "content": json_content(envelope(model_ref(responses.SyncJobView))),
                    },
                    **errors("400", "409", *common),
                },
            }
        },
        f"{PREFIX}/sync/{{job_id}}": {
            "get": {
                "operationId": "getSyncJob",
                "summary": "A sync job's progress",
                "parameters": [
                    workspace,
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    *query_params(requests.JobQuery),
                ],
                "responses": {
                    "200": {
                        "description": "Job progress",
                        "content": json_content(envelope(model_ref(responses.SyncJobView))),
                    },
                    **errors(*common),
                },
            }
        },
        f"{PREFIX}/cleanup": {
            "post": {
                "operationId": "cleanupSources",
                "summary": "Delete data sources (none named = all in the scope)",
                "parameters": [workspace],
                "requestBody": {"required": False, "content": json_content(ref("CleanupRequest"))},
                "responses": {
                    "200": {
                        "description": "Deleted",
                        "content": json_content(envelope(model_ref(responses.CleanupData))),
                    },
                    **errors("400", *common),
                },
            }
        },
        f"{PREFIX}/test-connection": {
            "post": {
                "operationId": "testConnection",
                "summary": "Test a source configuration before saving it",
                "parameters": [workspace],
                "requestBody": {
                    "required": True,
                    "content": json_content(ref("TestConnectionRequest")),
                },
                "responses": {
                    "200": {
                        "description": "Reachable",
                        "content": json_content(envelope(model_ref(responses.TestConnectionData))),
                    },
                    **errors("400", *common),
                },
            }
        },
        f"{PREFIX}/schema": {
            "get": {
                "operationId": "getSchema",
                "summary": "Discover a saved source's tables and columns",
                "parameters": [workspace, *query_params(requests.SchemaQuery)],
                "responses": {
                    "200": {
                        "description": "The source's streams",
                        "content": json_content(envelope(model_ref(responses.SchemaData))),
                    },
                    **errors("400", *common),
                },
            }
        },
        f"{PREFIX}/preview": {
            "get": {
                "operationId": "previewStream",
                "summary": f"Read up to {requests.MAX_PREVIEW_ROWS} rows of one stream straight from the source",
                "parameters": [workspace, *query_params(requests.PreviewQuery)],
                "responses": {
                    "200": {
                        "description": "The first rows of the stream, typed as in the schema",
                        "content": json_content(envelope(model_ref(responses.PreviewData))),
                    },
                    **errors("400", "502", *common),
                },
            }
        },
        f"{PREFIX}/schedule": {
            "post": {
                "operationId": "setSchedule",
                "summary": "Set (or with schedule null remove) the schedule of sources, all or none",
                "parameters": [workspace],
                "requestBody": {"required": True, "content": json_content(ref("ScheduleRequest"))},
                "responses": {
                    "200": {
                        "description": "The schedules as set",
                        "content": json_content(envelope(model_ref(responses.SchedulesData))),
                    },
                    **errors("400", *common),
                },
            }
        },
        f"{PREFIX}/schedules": {
            "get": {
                "operationId": "listSchedules",
                "summary": "The schedules of the caller's sources in a scope",
                "parameters": [workspace, *query_params(schedules.SchedulesQuery)],
                "responses": {
                    "200": {
                        "description": "Every schedule of the scope",
                        "content": json_content(envelope(model_ref(responses.SchedulesData))),
                    },
                    **errors("400", *common),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Data Sources API",
            "version": "1.0.0",
            "description": "Connect, test, discover, sync and clean up a workspace's external data sources.",
        },
        "servers": [{"url": "http://127.0.0.1:3000", "description": "make dev"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def render() -> str:
    return yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    target = ROOT / "openapi.yaml"
    target.write_text(render())
    print(f"wrote {target.relative_to(ROOT)}")
