"""The `events/` samples, made answerable locally: a real token, and loopback hosts only.

The samples carry `Bearer REPLACE_WITH_TOKEN`; the bench mints an HS256 token with the
secret it gives the functions. test_connection's sample names a public host, which
would send a DNS query off this machine: it is pointed at the local PostgreSQL, so the
function answers a real connection check instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import (
    EVENTS_DIR,
    MY_DB,
    MY_HOST,
    MY_PASSWORD,
    MY_PORT,
    MY_USER,
    PG_DB,
    PG_HOST,
    PG_PASSWORD,
    PG_PORT,
    PG_USER,
    WORKSPACE,
)


def local_database_config(engine: str = "postgresql") -> dict[str, Any]:
    if engine == "mariadb":
        return {
            "engine": "mariadb",
            "host": MY_HOST,
            "port": MY_PORT,
            "database": MY_DB,
            "username": MY_USER,
            "password": MY_PASSWORD,
        }
    return {
        "engine": "postgresql",
        "host": PG_HOST,
        "port": PG_PORT,
        "database": PG_DB,
        "username": PG_USER,
        "password": PG_PASSWORD,
    }


def sample_event(function_dir: str, token: str) -> tuple[dict[str, Any], list[str]]:
    """The function's sample event ready to invoke, and notes on what was changed."""
    path = EVENTS_DIR / f"{function_dir}.json"
    if not path.exists():
        raise FileNotFoundError(f"no sample event at events/{function_dir}.json")
    event = json.loads(path.read_text())
    notes: list[str] = []
    headers = event.get("headers")
    if isinstance(headers, dict):
        for key in list(headers):
            if key.lower() == "authorization":
                headers[key] = f"Bearer {token}"
        notes.append("minted token")
    if isinstance(event.get("pathParameters"), dict):
        event["pathParameters"].setdefault("workspace_id", WORKSPACE)
    if function_dir == "test_connection":
        body = json.loads(event["body"])
        body["source_config"] = {"type": "database", "connection_config": local_database_config()}
        event["body"] = json.dumps(body)
        notes.append("database pointed at the local PostgreSQL (loopback only)")
    return event, notes


def write_events(target: Path, functions: list[str], token: str) -> dict[str, list[str]]:
    """Write each function's prepared sample to `target/<function>.json`."""
    target.mkdir(parents=True, exist_ok=True)
    all_notes: dict[str, list[str]] = {}
    for function_dir in functions:
        event, notes = sample_event(function_dir, token)
        (target / f"{function_dir}.json").write_text(json.dumps(event))
        all_notes[function_dir] = notes
    # The baseline answers list's sample (it makes the same DynamoDB Query).
    event, _ = sample_event("list_sources", token)
    (target / "baseline.json").write_text(json.dumps(event))
    return all_notes
