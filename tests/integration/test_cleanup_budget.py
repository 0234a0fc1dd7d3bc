"""Cleanup of many sources stays within the request and never orphans a secret (D8).

Through the real cleanup handler and worker against emulated AWS built from the
template. A source's secret is scheduled for deletion with, or before, its items, so a
cleanup stopped at any point (budget, crash) leaves no deleted source with a live secret;
sources past the time budget are deleted by the worker through the sync queue.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from local.context import FakeLambdaContext
from tests.conftest import Stack


def connect_many(stack: Stack, count: int) -> list[str]:
    """`count` database sources with a password each (so each has a secret)."""
    ids: list[str] = []
    for start in range(0, count, 25):
        sources = [
            {
                "type": "database",
                "name": f"db-{i}",
                "connection_config": {
                    "host": "db.example.com",
                    "port": 5432,
                    "database": "d",
                    "username": "u",
                    "password": f"pw-{i}",
                },
            }
            for i in range(start, min(count, start + 25))
        ]
        response = stack.call("connect", body={"sources": sources})
        assert response.status_code == 201, response.body
        ids += [s["id"] for s in response.data["connected_sources"]]
    return ids


def seed_many(stack: Stack, count: int) -> list[str]:
    """`count` sources of user-1 in ws_demo, each with a secret and a stream state, written
    straight through the DAL (connect's transactions would take minutes in moto)."""
    from datasources.aws.secrets import put_secrets
    from datasources.dal.keys import Tenant, name_sk, state_sk
    from datasources.dal.sources import SourceRecord
    from datasources.dal.table import table
    from datasources.models.common import Scope

    tenant = Tenant("acme", "ws_demo", Scope.USER, "user-1")
    ids = [f"src_{i:020x}" for i in range(count)]
    with table().batch_writer() as batch:
        for index, source_id in enumerate(ids):
            arn = put_secrets("acme", source_id, [(["password"], f"pw-{index}")])
            record = SourceRecord(
                id=source_id,
                name=f"db-{index}",
                type="database",
                scope="user",
                connection_config={"host": "db.example.com", "password": "********"},
                metadata={},
                created_at="2026-01-01T00:00:00Z",
                updated_at="2026-01-01T00:00:00Z",
                created_by="user-1",
                secret_arn=arn,
            )
            batch.put_item(Item=record.to_item(tenant))
            batch.put_item(
                Item={
                    "pk": tenant.pk,
                    "sk": name_sk(record.name),
                    "kind": "name",
                    "source_id": source_id,
                }
            )
            batch.put_item(
                Item={"pk": tenant.pk, "sk": state_sk(source_id, "public.t"), "kind": "state"}
            )
    return ids


def secrets_by_source(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every source secret (deleted ones included), by source id."""
    found: dict[str, dict[str, Any]] = {}
    pages = stack.secrets.get_paginator("list_secrets").paginate(IncludePlannedDeletion=True)
    for page in pages:
        for secret in page["SecretList"]:
            if "/sources/" in secret["Name"]:  # not the stack's JWT key
                found[secret["Name"].rsplit("/", 1)[-1]] = secret
    return found


def live_source_ids(stack: Stack) -> set[str]:
    items = stack.ddb.scan(TableName=stack.resources.table_name)["Items"]
    return {i["id"]["S"] for i in items if i.get("kind", {}).get("S") == "source"}


def orphaned(stack: Stack, ids: list[str]) -> list[str]:
    """Sources whose item is gone while their secret is not scheduled for deletion."""
    live = live_source_ids(stack)
    secrets = secrets_by_source(stack)
    return [i for i in ids if i not in live and "DeletedDate" not in secrets[i]]


def test_cleanup_of_1000_sources_stays_within_the_request_and_schedules_every_secret(
    stack: Stack, record_property: Any
) -> None:
    ids = seed_many(stack, 1000)
    started = time.perf_counter()
    response = stack.call(
        "cleanup", body={}, context=FakeLambdaContext(timeout_seconds=29, frozen=True)
    )
    seconds = time.perf_counter() - started
    record_property("cleanup_1000_request_seconds", round(seconds, 2))
    assert response.status_code == 200, response.body
    data = response.data
    # Within the request: the 20 s budget plus one chunk, well inside API Gateway's 29 s.
    assert seconds < 25
    assert sorted(data["deleted_source_ids"] + data["pending_source_ids"]) == sorted(ids)
    assert data["continuing"] == bool(data["pending_source_ids"])
    assert orphaned(stack, ids) == []
    delivered = stack.drain(remaining_ms=900_000)  # the worker's own timeout
    assert stack.ddb.scan(TableName=stack.resources.table_name)["Count"] == 0
    assert live_source_ids(stack) == set()
    secrets = secrets_by_source(stack)
    assert all("DeletedDate" in secrets[i] for i in ids)
    record_property("cleanup_1000_deleted_in_request", data["deleted_count"])
    record_property("cleanup_1000_worker_messages", delivered)
    print(
        f"\ncleanup of 1000 sources: request {seconds:.1f} s, {data['deleted_count']} deleted "
        f"in the request, {len(data['pending_source_ids'])} by the worker ({delivered} messages)"
    )


def test_cleanup_past_its_budget_continues_through_the_queue(stack: Stack) -> None:
    ids = connect_many(stack, 60)
    stack.configure(SYNC_TIME_BUDGET_SECONDS="0.001")
    response = stack.call("cleanup", body={})
    assert response.status_code == 200, response.body
    data = response.data
    # At least one chunk (25) is always removed; the rest is pending.
    assert data["deleted_count"] == 25 and data["continuing"] is True
    assert sorted(data["deleted_source_ids"] + data["pending_source_ids"]) == sorted(ids)
    assert "more are being deleted in the background" in response.body["message"]
    assert orphaned(stack, ids) == []
    listed = {s["id"] for s in stack.call("list", query={"limit": "200"}).data}
    assert listed == set(data["pending_source_ids"])

    messages = stack.receive()
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["kind"] == "cleanup" and body["source_ids"] == data["pending_source_ids"]
    # The worker has the same budget rule: one chunk per message, then it chains itself.
    stack.deliver(messages[0], remaining_ms=1_000)
    assert orphaned(stack, ids) == []
    stack.drain(remaining_ms=60_000)
    assert live_source_ids(stack) == set()
    assert all("DeletedDate" in s for s in secrets_by_source(stack).values())


def test_a_redelivered_cleanup_message_is_harmless(stack: Stack) -> None:
    ids = connect_many(stack, 30)
    stack.configure(SYNC_TIME_BUDGET_SECONDS="0.001")
    stack.call("cleanup", body={})
    message = stack.receive()[0]
    stack.deliver(message)
    again = stack.deliver(message)  # SQS delivers at least once
    assert again.get("batchItemFailures") == []
    assert live_source_ids(stack) == set()
    assert orphaned(stack, ids) == []


def test_a_dead_lettered_cleanup_message_is_reported_and_its_sources_stay_listed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a cleanup continuation the worker gave up on, when the reaper consumes it
    # from the dead-letter queue, then it neither crashes nor loses track of a source.
    from datasources.services import reaper

    errors: list[str] = []
    monkeypatch.setattr(reaper.logger, "error", lambda msg, *a, **k: errors.append(msg))
    ids = connect_many(stack, 30)
    stack.configure(SYNC_TIME_BUDGET_SECONDS="0.001")
    pending = stack.call("cleanup", body={}).data["pending_source_ids"]
    message = stack.receive()[0]
    reaper.dead_lettered(message["Body"], 3)
    assert live_source_ids(stack) == set(pending)
    assert orphaned(stack, ids) == []
    assert any("cleanup continuation was dead-lettered" in e for e in errors)


@pytest.mark.parametrize(
    ("operation", "after"),
    [("DeleteSecret", 3), ("DeleteSecret", 30), ("BatchWriteItem", 0), ("BatchWriteItem", 1)],
)
def test_a_cleanup_killed_at_any_point_leaves_no_orphaned_secret(
    stack: Stack, operation: str, after: int
) -> None:
    from datasources import aws

    ids = connect_many(stack, 60)
    service = "secretsmanager" if operation == "DeleteSecret" else "dynamodb"
    client = aws.client(service)
    calls = {"n": 0}

    def kill(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise KeyboardInterrupt("the function was killed")  # not caught by the handler

    event = f"before-call.{client.meta.service_model.endpoint_prefix}.{operation}"
    client.meta.events.register(event, kill)
    try:
        with pytest.raises(KeyboardInterrupt):
            stack.call("cleanup", body={})
    finally:
        client.meta.events.unregister(event, kill)
    assert orphaned(stack, ids) == []
    # Running it again finishes the job, secrets already scheduled included.
    response = stack.call("cleanup", body={})
    assert response.status_code == 200, response.body
    stack.drain()
    assert live_source_ids(stack) == set()
    assert all("DeletedDate" in s for s in secrets_by_source(stack).values())
