"""openapi.yaml is generated from the models; a stale copy fails here (`make openapi`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_openapi_yaml_is_up_to_date_with_the_models() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_openapi", ROOT / "scripts" / "gen_openapi.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == module.render(), "openapi.yaml is stale: run `make openapi`"


def test_every_published_endpoint_is_documented() -> None:
    import yaml

    paths = yaml.safe_load((ROOT / "openapi.yaml").read_text())["paths"]
    for suffix in (
        "connect",
        "list",
        "sync",
        "sync/{job_id}",
        "cleanup",
        "test-connection",
        "schema",
    ):
        assert f"/api/v1/data/{{workspace_id}}/{suffix}" in paths


def test_the_document_states_the_source_limits_the_service_enforces() -> None:
    import yaml

    from datasources.models.common import MAX_SOURCE_IDS, MAX_SOURCES_PER_WRITE

    schemas = yaml.safe_load((ROOT / "openapi.yaml").read_text())["components"]["schemas"]
    # Connect and schedule: one bound, enforced by the request model the document is made of.
    assert schemas["ConnectRequest"]["properties"]["sources"]["maxItems"] == MAX_SOURCES_PER_WRITE
    assert (
        schemas["ScheduleRequest"]["properties"]["source_ids"]["maxItems"] == MAX_SOURCES_PER_WRITE
    )
    for name in ("SyncRequest", "CleanupRequest"):
        ids = schemas[name]["properties"]["source_ids"]["anyOf"][0]
        assert ids["maxItems"] == MAX_SOURCE_IDS, name
