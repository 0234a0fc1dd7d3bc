"""PostgreSQL's row version (`xmin`) as an incremental cursor, at the connector.

A table without an update column offers `xmin`; a run commits the 64-bit position of
the oldest transaction running at its start, and the next run selects the rows written
from there on. A position 2^31 transactions or more behind (wraparound) or ahead of the
server (a state from another cluster) cannot select by age: the run reads every row and
the notes say why.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.sql.factory import open_database_connector
from datasources.connectors.sql.postgres import PostgresConnector
from tests.connectors import db_fixtures as fx

pytestmark = pytest.mark.postgres


@pytest.fixture
def keyed(db_context: ConnectorContext) -> Iterator[tuple[Any, PostgresConnector, str]]:
    """(autocommit connection, connector on a schema of its own, stream `k` of 30 rows)."""
    fx.require_server(fx.pg_connect, "PostgreSQL", fx.PG_PORT)
    conn = fx.pg_connect()
    schema = f"ds_xmin_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {schema}.k (id bigint PRIMARY KEY, v text)")
    conn.execute(f"INSERT INTO {schema}.k SELECT g, 'row ' || g FROM generate_series(1, 30) g")
    built = open_database_connector(fx.pg_config(schema=schema), db_context)
    assert isinstance(built, PostgresConnector)
    try:
        yield conn, built, f"{schema}.k"
    finally:
        built.close()
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def read_ids(connector: PostgresConnector, stream: str, state: StreamState) -> list[int]:
    return [
        row["id"] for batch in connector.read(stream, state, 7) for row in batch.records.to_pylist()
    ]


def test_xmin_is_offered_first_when_no_column_says_updated(keyed):
    _, connector, stream = keyed
    (table,) = connector.discover()
    assert table.name == stream and table.cursor_candidates == ["xmin", "id"]


def test_a_run_commits_its_start_position_and_the_next_reads_only_what_changed(keyed):
    conn, connector, stream = keyed
    batches = list(connector.read(stream, StreamState(cursor_field="xmin"), 7))
    assert sum(b.num_rows for b in batches) == 30
    committed = batches[-1].cursor_state
    assert committed is not None and isinstance(committed["value"], int)
    # The position is 64-bit (epoch included) and not past the server's next xid.
    (next_xid,) = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    assert next_xid[0] >= committed["value"] > 0

    conn.execute(f"UPDATE {stream} SET v = 'changed' WHERE id = 12")
    state = StreamState(cursor_field="xmin", cursor_state=committed)
    assert connector.incremental_notes(stream, state) == []
    assert 12 in read_ids(connector, stream, state)
    assert len(read_ids(connector, stream, state)) < 30


@pytest.mark.parametrize("distance", [2**31, -(2**20)])
def test_a_position_past_the_wraparound_horizon_or_ahead_reads_every_row_with_a_note(
    keyed, distance: int
):
    conn, connector, stream = keyed
    (now,) = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    state = StreamState(cursor_field="xmin", cursor_state={"value": now[0] - distance, "pk": []})
    notes = connector.incremental_notes(stream, state)
    assert len(notes) == 1 and "wraparound" in notes[0] and "every row is read again" in notes[0]
    assert sorted(read_ids(connector, stream, state)) == list(range(1, 31))
