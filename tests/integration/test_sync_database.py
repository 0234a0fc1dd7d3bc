"""The sync engine's promises with a real PostgreSQL table, proven by counting records.

The handlers run in-process against emulated AWS (the `stack` fixture); the source is
a table in its own schema of the local PostgreSQL (unique per test, dropped after).
A zero time budget makes POST /sync queue its work, and each worker delivery with one
second left (and a one-second reserve) writes one part and chains the next message, so
the table can be changed between the deliveries of one run.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from datasources.dal import jobs as jobs_dal
from datasources.dal.keys import Tenant
from datasources.models.common import Scope
from tests.conftest import Stack
from tests.connectors import db_fixtures as fx

pytestmark = pytest.mark.postgres

BASE = dt.datetime(2024, 5, 1, 12, 0, 0, 250_001, tzinfo=dt.UTC)
TENANT = Tenant("acme", "ws_demo", Scope.USER, "user-1")


@pytest.fixture
def pg() -> Iterator[tuple[Any, str]]:
    """(autocommit connection, schema) with table `t(id, updated_at, v)`; dropped after."""
    if fx.SKIP:
        pytest.skip("DS_SKIP_DB_TESTS=1: database tests skipped on purpose")
    try:
        conn = fx.pg_connect()
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is not reachable on {fx.HOST}:{fx.PG_PORT} ({type(exc).__name__}); "
            "run `scripts/databases.sh start` first",
            pytrace=False,
        )
    schema = f"ds_it_{uuid.uuid4().hex[:10]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.t (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, v text)"
    )
    try:
        yield conn, schema
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


def fill(conn: Any, schema: str, start: int, stop: int, *, ties: int = 1) -> None:
    """Rows start..stop-1; `ties` consecutive ids share one cursor value."""
    conn.execute(
        f"INSERT INTO {schema}.t SELECT g, %s::timestamptz + (g / %s::int) * interval '1 second', "
        "'row ' || g FROM generate_series(%s::int, %s::int) g",
        (BASE, ties, start, stop - 1),
    )


def connect_pg(stack: Stack, schema: str, **overrides: Any) -> str:
    config = fx.pg_values(schema=schema, **overrides)
    response = stack.call(
        "connect",
        body={"sources": [{"type": "database", "name": schema, "connection_config": config}]},
    )
    assert response.status_code == 201, response.body
    return str(response.data["connected_sources"][0]["id"])


def sync(stack: Stack, source_id: str, **options: Any) -> dict[str, Any]:
    response = stack.call("sync", body={"source_ids": [source_id], "sync_options": options})
    assert response.status_code in (200, 202), response.body
    return dict(response.data)


def status(stack: Stack, job_id: str) -> dict[str, Any]:
    response = stack.call("status", path={"job_id": job_id}, query={"scope": "user"})
    assert response.status_code == 200, response.body
    return dict(response.data)


def only_stream(job: dict[str, Any]) -> dict[str, Any]:
    ((stream,),) = [source["streams"] for source in job["sources"]]
    return dict(stream)


def job_prefix(stack: Stack, job: dict[str, Any]) -> str:
    output = only_stream(job)["output"]
    return str(output.removeprefix(f"s3://{stack.bucket}/"))


def rows_of_job(stack: Stack, job: dict[str, Any]) -> list[dict[str, Any]]:
    return stack.read_parts(f"{job_prefix(stack, job)}part-")


def manifest_of(stack: Stack, job: dict[str, Any]) -> dict[str, Any]:
    key = f"{job_prefix(stack, job)}_manifest.json"
    return dict(json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()))


def assert_ids_once(rows: list[dict[str, Any]], expected: range | set[int]) -> None:
    counts = Counter(r["id"] for r in rows)
    duplicates = sorted(i for i, n in counts.items() if n > 1)
    assert not duplicates, f"duplicated ids: {duplicates[:10]}"
    assert set(counts) == set(expected), sorted(set(expected) ^ set(counts))[:20]


def deliver_one(stack: Stack, *, remaining_ms: int = 1000) -> bool:
    """Run the worker on the next queued message; False when the queue is empty."""
    messages = stack.receive(1)
    if not messages:
        return False
    result = stack.deliver(messages[0], remaining_ms=remaining_ms)
    assert not result.get("batchItemFailures"), result
    return True


def test_rows_written_at_the_cursor_boundary_during_a_chained_run_land_exactly_once(
    stack: Stack, pg: tuple[Any, str]
) -> None:
    conn, schema = pg
    fill(conn, schema, 1, 1001, ties=10)  # 10 rows share each cursor value
    # Every version of every row: id -> the updated_at values it has had.
    versions: dict[int, list[dt.datetime]] = {
        i: [BASE + dt.timedelta(seconds=i // 10)] for i in range(1, 1001)
    }
    source_id = connect_pg(stack, schema)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    first = sync(stack, source_id, batch_size=70)
    assert first["status"] == "running" and first["records_processed"] == 0
    next_id = 100_000
    deliveries = 0
    while deliver_one(stack):
        deliveries += 1
        # Between two deliveries: rows at the current maximum cursor with a larger key,
        # rows beyond it, and updates of a row already read and of one not read yet.
        top = conn.execute(f"SELECT max(updated_at) FROM {schema}.t").fetchone()[0]
        later = top + dt.timedelta(milliseconds=1)
        for stamp in (top, top, later):
            next_id += 1
            conn.execute(f"INSERT INTO {schema}.t VALUES (%s, %s, 'inserted')", (next_id, stamp))
            versions[next_id] = [stamp]
        for row_id in (deliveries, 1000 - deliveries):
            stamp = later + dt.timedelta(microseconds=row_id)
            conn.execute(
                f"UPDATE {schema}.t SET updated_at = %s, v = 'updated' WHERE id = %s",
                (stamp, row_id),
            )
            versions[row_id].append(stamp)
    assert deliveries >= 14  # 1000 rows / 70 a part, one part per delivery
    first = status(stack, first["job_id"])
    assert first["status"] == "completed", first
    state = jobs_dal.get_stream_state(TENANT, source_id, f"{schema}.t")
    assert state is not None and state.cursor_field == "updated_at"

    second = sync(stack, source_id, batch_size=70)
    stack.drain(remaining_ms=1000)
    second = status(stack, second["job_id"])
    assert second["status"] == "completed", second
    # The second run's last delivery found no row left after its last part: the state
    # it commits is still the position of that part, not the run's starting point.
    top = conn.execute(f"SELECT max(updated_at), max(id) FROM {schema}.t").fetchone()
    committed = jobs_dal.get_stream_state(TENANT, source_id, f"{schema}.t")
    assert committed is not None and committed.cursor_state is not None
    assert dt.datetime.fromisoformat(committed.cursor_state["value"]) == top[0], (
        committed.cursor_state,
        state.cursor_state,
    )
    third = sync(stack, source_id, batch_size=70)
    stack.drain(remaining_ms=1000)
    assert status(stack, third["job_id"])["records_processed"] == 0

    landed = Counter(
        (row["id"], row["updated_at"]) for job in (first, second) for row in rows_of_job(stack, job)
    )
    twice = [pair for pair, n in landed.items() if n > 1]
    assert not twice, f"landed twice: {twice[:5]}"
    assert {row_id for row_id, _ in landed} == set(versions), "a row was skipped"
    for row_id, stamp in landed:
        assert stamp in versions[row_id], f"row {row_id} landed with an unknown version"
    missing_final = [i for i, seen in versions.items() if (i, seen[-1]) not in landed]
    assert not missing_final, f"final versions not landed: {missing_final[:10]}"
    never_updated = [i for i, seen in versions.items() if len(seen) == 1]
    per_id = Counter(row_id for row_id, _ in landed)
    assert all(per_id[i] == 1 for i in never_updated)
    assert first["records_processed"] + second["records_processed"] == sum(landed.values())


def test_a_chained_large_sync_lands_every_row_once(stack: Stack, pg: tuple[Any, str]) -> None:
    conn, schema = pg
    fill(conn, schema, 1, 20_001, ties=7)
    source_id = connect_pg(stack, schema)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job = sync(stack, source_id, batch_size=1000)
    assert job["status"] == "running"
    assert stack.drain(remaining_ms=1000) >= 20
    job = status(stack, job["job_id"])
    assert job["status"] == "completed" and job["records_processed"] == 20_000
    assert only_stream(job)["parts"] == 20
    assert_ids_once(rows_of_job(stack, job), range(1, 20_001))


def test_a_table_gone_mid_sync_fails_the_job_keeps_the_state_and_the_next_run_recovers(
    stack: Stack, pg: tuple[Any, str]
) -> None:
    conn, schema = pg
    stream = f"{schema}.t"
    fill(conn, schema, 1, 1001)
    source_id = connect_pg(stack, schema)
    first = sync(stack, source_id, batch_size=500)
    assert first["status"] == "completed" and first["records_processed"] == 1000
    committed = jobs_dal.get_stream_state(TENANT, source_id, stream)
    assert committed is not None and committed.cursor_state is not None

    fill(conn, schema, 1001, 4001)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    failing = sync(stack, source_id, batch_size=500)["job_id"]
    assert deliver_one(stack) and deliver_one(stack)  # two parts of the new rows
    assert status(stack, failing)["records_processed"] == 1000
    conn.execute(f"ALTER TABLE {schema}.t RENAME TO t_moved")
    message = stack.receive(1)[0]
    for attempt in (1, 2, 3):
        message["Attributes"]["ApproximateReceiveCount"] = str(attempt)
        result = stack.deliver(message, remaining_ms=1000)
        # The third attempt is given up explicitly (the message goes to the DLQ).
        expected = [] if attempt == 3 else [{"itemIdentifier": message["MessageId"]}]
        assert result["batchItemFailures"] == expected
    job = status(stack, failing)
    assert job["status"] == "failed", job
    error = only_stream(job)["error"]
    assert stream in error and ("not found" in error or "dropped or renamed" in error), error
    assert "gave up after 3 attempts" in error
    assert job["error"] and stream in job["error"]
    assert fx.PASSWORD not in json.dumps(job)
    # The failed run committed nothing: the state is the first run's.
    after = jobs_dal.get_stream_state(TENANT, source_id, stream)
    assert after is not None
    assert after.cursor_state == committed.cursor_state
    assert after.last_job_id == first["job_id"]

    conn.execute(f"ALTER TABLE {schema}.t_moved RENAME TO t")
    stack.configure(SYNC_TIME_BUDGET_SECONDS=20)
    stack.drain()  # the failed job's leftover message is ignored
    recovered = sync(stack, source_id, batch_size=500)
    assert recovered["status"] == "completed", recovered
    assert recovered["records_processed"] == 3000
    assert_ids_once(rows_of_job(stack, recovered), range(1001, 4001))


def test_a_backend_killed_mid_read_is_retried_from_its_checkpoint_without_duplicates(
    stack: Stack, pg: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, schema = pg
    fill(conn, schema, 1, 3001, ties=3)
    source_id = connect_pg(stack, schema)
    stack.configure(SYNC_TIME_BUDGET_SECONDS=0)
    job_id = sync(stack, source_id, batch_size=500)["job_id"]
    real_checkpoint = jobs_dal.checkpoint
    calls = {"n": 0, "killed": 0}

    def checkpoint_then_kill(*args: Any, **kwargs: Any) -> bool:
        done = real_checkpoint(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            # The reading backend holds a lock on the table while its cursor is open.
            killed = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE relation = %s::regclass AND pid <> pg_backend_pid()",
                (f"{schema}.t",),
            ).fetchall()
            calls["killed"] = len(killed)
        return done

    monkeypatch.setattr(jobs_dal, "checkpoint", checkpoint_then_kill)
    stack.configure(RETRY_DELAY_SECONDS=0)
    message = stack.receive(1)[0]
    result = stack.deliver(message, remaining_ms=60_000)
    assert calls["killed"] == 1
    # Parts were counted before the kill: the unit goes on from a fresh continuation
    # (attempts count lack of progress), so this message is done.
    assert not result.get("batchItemFailures")
    running = status(stack, job_id)
    # Batches read ahead before the kill may still be written; the rest must wait.
    assert running["status"] == "running"
    assert 1000 <= running["records_processed"] < 3000
    stream = only_stream(running)
    assert "connection to PostgreSQL was lost" in (stream["error"] or ""), stream
    assert stream["attempts"] >= 1

    message["Attributes"]["ApproximateReceiveCount"] = "2"
    assert not stack.deliver(message, remaining_ms=60_000).get("batchItemFailures")
    stack.drain()
    job = status(stack, job_id)
    assert job["status"] == "completed" and job["records_processed"] == 3000
    assert_ids_once(rows_of_job(stack, job), range(1, 3001))


def test_a_column_added_between_runs_lands_in_the_new_parts_and_the_manifest(
    stack: Stack, pg: tuple[Any, str]
) -> None:
    conn, schema = pg
    fill(conn, schema, 1, 51)
    source_id = connect_pg(stack, schema)
    first = sync(stack, source_id)
    assert first["status"] == "completed" and first["records_processed"] == 50
    assert manifest_of(stack, first)["schema_changes"] == {"added": [], "removed": []}

    conn.execute(f"ALTER TABLE {schema}.t ADD COLUMN region text")
    later = BASE + dt.timedelta(days=1)
    conn.execute(
        f"INSERT INTO {schema}.t SELECT g, %s, 'new', 'eu-' || g FROM generate_series(51, 60) g",
        (later,),
    )
    conn.execute(
        f"UPDATE {schema}.t SET region = 'us', updated_at = %s WHERE id = 7",
        (later + dt.timedelta(seconds=1),),
    )
    second = sync(stack, source_id)
    assert second["status"] == "completed" and second["records_processed"] == 11
    rows = {r["id"]: r for r in rows_of_job(stack, second)}
    assert sorted(rows) == [7, *range(51, 61)]
    assert rows[7]["region"] == "us" and rows[55]["region"] == "eu-55"
    changes = manifest_of(stack, second)
    assert changes["schema_changes"] == {"added": ["region"], "removed": []}
    assert "region" in [c["name"] for c in changes["schema"]]
    # The first job's parts keep the schema they were written with.
    assert all("region" not in row for row in rows_of_job(stack, first))
