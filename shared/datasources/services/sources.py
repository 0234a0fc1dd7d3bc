"""Connect, list, clean up, test and describe data sources."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from datasources.auth import Principal
from datasources.config import get_settings
from datasources.dal import sources as sources_dal
from datasources.dal.sources import SourceRecord
from datasources.errors import SourceNotFound, ValidationFailed
from datasources.models.requests import CleanupRequest, ListQuery, SchemaQuery
from datasources.secrets_store import delete_secret, put_secrets
from datasources.services.common import (
    choose_cursor,
    new_id,
    now_iso,
    open_config,
    open_source,
    tenant_for,
)
from datasources.services.schedules import remove_schedules, schedule_view

if TYPE_CHECKING:
    from datasources.models.source_requests import ConnectRequest, TestConnectionRequest


def source_view(source: SourceRecord) -> dict[str, Any]:
    """A source as the API returns it: secrets masked, no ARN, no lease internals."""
    return {
        "id": source.id,
        "name": source.name,
        "type": source.type,
        "scope": source.scope,
        "connection_config": source.connection_config,
        "metadata": source.metadata,
        "created_at": source.created_at,
        "updated_at": source.updated_at,
        "created_by": source.created_by,
        "last_sync": source.last_sync,
        "schedule": schedule_view(source),
    }


def connect_sources(
    principal: Principal, workspace_id: str, request: ConnectRequest
) -> list[dict[str, Any]]:
    """Save every source of the request, or none: secrets first, then one transaction."""
    from datasources.models.connection import split_secrets

    principal.require_write(request.scope)
    limit = get_settings().max_sources_per_request
    if len(request.sources) > limit:
        raise ValidationFailed(f"at most {limit} sources can be connected in one request")
    tenant = tenant_for(principal, workspace_id, request.scope)
    now = now_iso()
    records: list[SourceRecord] = []
    created_secrets: list[str] = []
    try:
        for source in request.sources:
            source_id = new_id("src")
            masked, secrets = split_secrets(source.connection_config)
            arn = put_secrets(principal.organization, source_id, secrets)
            if arn:
                created_secrets.append(arn)
            records.append(
                SourceRecord(
                    id=source_id,
                    name=source.name,
                    type=source.type,
                    scope=request.scope.value,
                    connection_config=masked,
                    metadata=source.metadata,
                    created_at=now,
                    updated_at=now,
                    created_by=principal.sub,
                    secret_arn=arn,
                )
            )
        sources_dal.create_sources(tenant, records)
    except Exception:
        # Nothing was saved: remove the secrets written for it, with no recovery window.
        for arn in created_secrets:
            delete_secret(arn, immediately=True)
        raise
    return [source_view(r) for r in records]


def list_sources(
    principal: Principal, workspace_id: str, query: ListQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the caller's sources in a scope, and the token for the next page."""
    tenant = tenant_for(principal, workspace_id, query.scope)
    page, token = sources_dal.list_sources(
        tenant, source_type=query.type, limit=query.limit, next_token=query.next_token
    )
    return [source_view(s) for s in page], token


def cleanup_sources(
    principal: Principal, workspace_id: str, request: CleanupRequest
) -> dict[str, Any]:
    """Delete sources (all of the scope when no ids): items, state, secrets; cancel jobs.

    Synced data in the landing bucket is kept: it belongs to the workspace's lake.
    """
    principal.require_write(request.scope)
    tenant = tenant_for(principal, workspace_id, request.scope)
    if request.source_ids is None:
        targets = list(sources_dal.iter_all_sources(tenant))
        not_found: list[str] = []
    else:
        found = sources_dal.get_sources(tenant, request.source_ids)
        targets = list(found.values())
        not_found = [sid for sid in dict.fromkeys(request.source_ids) if sid not in found]
    # Imported here: only cleanup touches jobs, and list shares this module.
    from datasources.dal.jobs import cancel_source_jobs
    from datasources.sync.events import job_ended

    cancelled = cancel_source_jobs(tenant, [s.id for s in targets], now_iso())
    for job_id in cancelled:
        job_ended(tenant, job_id)
    remove_schedules(targets)
    sources_dal.delete_sources(tenant, targets)
    for source in targets:
        delete_secret(source.secret_arn)
    return {
        "deleted_count": len(targets),
        "deleted_source_ids": [s.id for s in targets],
        "not_found": not_found,
        "cancelled_job_ids": cancelled,
    }


def test_connection(principal: Principal, request: TestConnectionRequest) -> dict[str, Any]:
    """Check a config before it is saved; ConnectionFailed says which stage failed."""
    connector = open_config(
        request.source_config.connection_config,
        request.source_config.type,
        principal.organization,
    )
    try:
        started = time.perf_counter()
        result = connector.check()
        latency = result.latency_ms or round((time.perf_counter() - started) * 1000, 1)
    finally:
        connector.close()
    return {"reachable": result.reachable, "latency_ms": latency, "details": result.details}


def get_schema(principal: Principal, workspace_id: str, query: SchemaQuery) -> dict[str, Any]:
    """Discover the streams of a saved source, with the cursor a sync would use."""
    tenant = tenant_for(principal, workspace_id, query.scope)
    source = sources_dal.get_source(tenant, query.source_id)
    if source is None:
        raise SourceNotFound(f"data source {query.source_id} not found")
    connector = open_source(source, principal.organization)
    try:
        tables = connector.discover()
    finally:
        connector.close()
    return {
        "source_id": source.id,
        "tables": [
            {**t.model_dump(), "cursor_field": choose_cursor(t.cursor_candidates, None)}
            for t in tables
        ],
    }
