"""End to end over HTTP: a stream that fails leaves its ERROR line in the local stack's log.

Given a PostgreSQL schema of its own with a view that fails on its third row (division
by zero), when a client syncs it, then the job fails, and the log the stack writes (what
CloudWatch holds when deployed) has one JSON line naming the job, the source, the
stream, the stage and the cause, and no secret.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.connectors import db_fixtures as fx
from tests.e2e.helpers import connect, only_stream, sync
from tests.e2e.test_local_stack_database import pg_config

if TYPE_CHECKING:
    from tests.e2e.conftest import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def failing_schema() -> Iterator[str]:
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    schema = f"ds_e2e_fail_{uuid.uuid4().hex[:10]}"
    with fx.pg_connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.t (id bigint PRIMARY KEY)")
        conn.execute(f"INSERT INTO {schema}.t SELECT generate_series(1, 5)")
        conn.execute(f"CREATE VIEW {schema}.bad AS SELECT id, 10 / (id - 3) AS x FROM {schema}.t")
    try:
        yield schema
    finally:
        with fx.pg_connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def failed_stream_lines(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    found = []
    for text in stack.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "sync stream failed" not in text or job_id not in text:
            continue
        line = json.loads(text[text.index("{") :])
        if line.get("message") == "sync stream failed" and line.get("job_id") == job_id:
            found.append(line)
    return found


def test_a_failed_stream_is_one_error_line_in_the_stack_log(
    local_stack: LocalStack, failing_schema: str
) -> None:
    stack = local_stack
    workspace = f"ws_e2e_{uuid.uuid4().hex[:10]}"
    config = pg_config(failing_schema)
    source = connect(stack, workspace, "database", failing_schema, config)
    stream = f"{failing_schema}.bad"

    job = sync(stack, workspace, source["id"], streams=[stream])

    assert job["status"] == "failed", job
    assert "division by zero" in only_stream(job)["error"]
    deadline = time.monotonic() + 10
    lines = failed_stream_lines(stack, job["job_id"])
    while not lines and time.monotonic() < deadline:
        time.sleep(0.2)  # the log is written by another process
        lines = failed_stream_lines(stack, job["job_id"])
    assert len(lines) == 1, stack.log_tail()
    (line,) = lines
    assert line["level"] == "ERROR"
    assert line["source_id"] == source["id"]
    assert line["stream"] == stream
    assert line["stage"] == "read"
    assert "division by zero" in line["cause"]
    assert fx.PASSWORD not in json.dumps(line)
