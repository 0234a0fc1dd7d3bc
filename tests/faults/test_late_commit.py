"""Case 7: a transaction that commits after an incremental run fixed its upper bound,
with a cursor below that bound, still lands (PostgreSQL holds the bound back)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.conftest import Stack
from tests.connectors import db_fixtures as fx
from tests.integration.test_sync_database import connect_pg, fill, pg, rows_of_job, sync

pytestmark = pytest.mark.postgres
__all__ = ["pg"]  # the fixture, imported for this module's tests


def test_7_a_row_committed_late_below_the_bound_lands_in_the_next_run(
    stack: Stack, pg: tuple[Any, str]
) -> None:
    conn, schema = pg
    fill(conn, schema, 1, 101)
    source_id = connect_pg(stack, schema)
    landed: list[int] = []
    first = sync(stack, source_id)
    landed += [r["id"] for r in rows_of_job(stack, first)]
    writer = fx.pg_connect()
    try:
        # A transaction writes row 500 with its start time as cursor, and stays open.
        writer.execute("BEGIN")
        writer.execute(f"INSERT INTO {schema}.t VALUES (500, now(), 'late')")
        time.sleep(0.05)
        conn.execute(f"INSERT INTO {schema}.t VALUES (501, now(), 'on time')")
        second = sync(stack, source_id)
        assert second["status"] == "completed"
        landed += [r["id"] for r in rows_of_job(stack, second)]
        writer.execute("COMMIT")
    finally:
        writer.close()
    third = sync(stack, source_id)
    landed += [r["id"] for r in rows_of_job(stack, third)]
    counts = Counter(landed)
    assert [i for i, n in counts.items() if n > 1] == []
    assert sorted(counts) == [*range(1, 101), 500, 501]
