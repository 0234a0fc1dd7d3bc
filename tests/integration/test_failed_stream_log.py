"""A failed stream leaves one ERROR line in the log naming the job, source, stream,
stage and cause, in the Powertools JSON the deployed functions print.

The source is a PostgreSQL schema of its own: a table that reads and a view that fails
on its third row (division by zero), so one stream fails and the other completes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack
from tests.connectors import db_fixtures as fx
from tests.integration.test_sync_database import connect_pg, sync

pytestmark = pytest.mark.postgres


class JsonLines(logging.Handler):
    """The lines the service's Powertools logger prints, parsed."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(self.format(record)))


@pytest.fixture
def service_log() -> Iterator[JsonLines]:
    from datasources.observability import logger

    handler = JsonLines()
    handler.setFormatter(logger.registered_formatter)
    service = logging.getLogger(logger.name)
    service.addHandler(handler)
    try:
        yield handler
    finally:
        service.removeHandler(handler)


@pytest.fixture
def failing_view() -> Iterator[str]:
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    conn = fx.pg_connect()
    schema = f"ds_faillog_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.t (id bigint PRIMARY KEY, v text)")
    conn.execute(f"INSERT INTO {schema}.t SELECT g, 'row ' || g FROM generate_series(1, 5) g")
    conn.execute(f"CREATE VIEW {schema}.bad AS SELECT id, 10 / (id - 3) AS x FROM {schema}.t")
    try:
        yield schema
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def test_a_failed_stream_logs_one_error_line_with_job_source_stream_stage_and_cause(
    stack: Stack, failing_view: str, service_log: JsonLines
) -> None:
    schema = failing_view
    source_id = connect_pg(stack, schema)

    job = sync(stack, source_id, batch_size=2)

    assert job["status"] == "failed", job
    lines = [r for r in service_log.records if r.get("message") == "sync stream failed"]
    assert len(lines) == 1, lines
    (line,) = lines
    assert line["level"] == "ERROR"
    assert line["job_id"] == job["job_id"]
    assert line["source_id"] == source_id
    assert line["stream"] == f"{schema}.bad"
    assert line["stage"] == "read"
    assert "division by zero" in line["cause"] and f"{schema}.bad" in line["cause"]
    assert fx.PASSWORD not in json.dumps(service_log.records)
