"""template.yaml as the infrastructure and local-stack tests read it: its path, the
routes and functions the product publishes, and helpers over a function's policies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"

EXPECTED_ROUTES = {
    ("POST", "/api/v1/data/{workspace_id}/connect"): "ConnectSourcesFunction",
    ("GET", "/api/v1/data/{workspace_id}/list"): "ListSourcesFunction",
    ("POST", "/api/v1/data/{workspace_id}/sync"): "SyncSourcesFunction",
    ("GET", "/api/v1/data/{workspace_id}/sync/{job_id}"): "SyncStatusFunction",
    ("POST", "/api/v1/data/{workspace_id}/cleanup"): "CleanupSourcesFunction",
    ("POST", "/api/v1/data/{workspace_id}/test-connection"): "TestConnectionFunction",
    ("GET", "/api/v1/data/{workspace_id}/schema"): "GetSchemaFunction",
    ("GET", "/api/v1/data/{workspace_id}/preview"): "PreviewSourceFunction",
    ("POST", "/api/v1/data/{workspace_id}/schedule"): "SetScheduleFunction",
    ("GET", "/api/v1/data/{workspace_id}/schedules"): "ListSchedulesFunction",
}
CODE_URIS = {
    "ConnectSourcesFunction": "functions/connect_sources",
    "ListSourcesFunction": "functions/list_sources",
    "SyncSourcesFunction": "functions/sync_sources",
    "SyncStatusFunction": "functions/sync_status",
    "CleanupSourcesFunction": "functions/cleanup_sources",
    "TestConnectionFunction": "functions/test_connection",
    "GetSchemaFunction": "functions/get_schema",
    "PreviewSourceFunction": "functions/preview_source",
    "SyncWorkerFunction": "functions/sync_worker",
    "SyncReaperFunction": "functions/sync_reaper",
    "SetScheduleFunction": "functions/set_schedule",
    "ListSchedulesFunction": "functions/list_schedules",
    "SyncTriggerFunction": "functions/sync_trigger",
}


def resource(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id])


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id].get("Properties") or {})


def policy_entries(template: dict[str, Any], logical_id: str) -> list[Any]:
    """A function's Policies, with both branches of any Fn::If (either may be deployed)."""
    entries: list[Any] = []
    for entry in props(template, logical_id).get("Policies") or []:
        if isinstance(entry, dict) and "Fn::If" in entry:
            entries.extend(
                branch for branch in entry["Fn::If"][1:] if branch != {"Ref": "AWS::NoValue"}
            )
        else:
            entries.append(entry)
    return entries


def actions_and_templates(template: dict[str, Any], logical_id: str) -> tuple[set[str], set[str]]:
    actions: set[str] = set()
    templates: set[str] = set()
    for entry in policy_entries(template, logical_id):
        if isinstance(entry, str):
            templates.add(entry)  # a managed policy name or ARN
        elif "Statement" in entry:
            for statement in entry["Statement"]:
                assert statement["Effect"] == "Allow"
                action = statement["Action"]
                actions.update([action] if isinstance(action, str) else action)
        else:
            templates.update(entry)
    return actions, templates
