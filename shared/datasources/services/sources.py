"""Connect, list, clean up, test and describe data sources."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from datasources.auth import Principal
from datasources.aws.secrets import delete_secret, put_secrets
from datasources.config import get_settings
from datasources.dal import sources as sources_dal
from datasources.dal.keys import tenant_for
from datasources.dal.sources import SourceRecord
from datasources.errors import SourceNotFound
from datasources.ids import new_id, now_iso
from datasources.models.requests import CleanupRequest, ListQuery, SchemaQuery
from datasources.models.responses import (
    CleanupData,
    ColumnView,
    ConnectData,
    ScheduleView,
    SchemaData,
    SourceView,
    TableView,
    TestConnectionData,
)
from datasources.sync.sources import open_source
from datasources.types import choose_cursor, incremental_captures

if TYPE_CHECKING:
    from datasources.models.connection import ConfigModel
    from datasources.models.source_requests import ConnectRequest, TestConnectionRequest


def source_view(source: SourceRecord) -> SourceView:
    """A source as the API returns it: secrets masked, no ARN, no lease internals."""
    return SourceView(
        id=source.id,
        name=source.name,
        type=source.type,
        scope=source.scope,
        connection_config=source.connection_config,
        metadata=source.metadata,
        created_at=source.created_at,
        updated_at=source.updated_at,
        created_by=source.created_by,
        last_sync=source.last_sync,
        schedule=_schedule_view(source),
    )


def _schedule_view(source: SourceRecord) -> ScheduleView | None:
    if not source.schedule:
        return None
    # Imported at the first scheduled source, not at init: connect and list start
    # without the schedule models and the expression parser (cold start, make bench).
    from datasources.services.schedules import schedule_view

    return schedule_view(source)


def _with_engines(sources: list[Any]) -> list[ConfigModel]:
    """Each source's config, a database's with its engine: asked of the server when the
    config does not say it, once, and stored. The probes run side by side, so a request
    of many sources waits about one connect_timeout (at most 20 s), not their sum."""
    from concurrent.futures import ThreadPoolExecutor

    from datasources.connectors.sql.engine_probe import complete_engine
    from datasources.models.connection import DatabaseConfig

    settings = get_settings()
    configs: list[ConfigModel] = [s.connection_config for s in sources]
    unknown = {
        i: config
        for i, (source, config) in enumerate(zip(sources, configs, strict=True))
        if source.type == "database" and isinstance(config, DatabaseConfig) and not config.engine
    }
    if not unknown:
        return configs
    with ThreadPoolExecutor(max_workers=len(unknown)) as pool:
        futures = {i: pool.submit(complete_engine, c, settings) for i, c in unknown.items()}
        # The first failure in request order is the one reported.
        for i, future in futures.items():
            configs[i] = future.result()[0]
    return configs


def connect_sources(
    principal: Principal, workspace_id: str, request: ConnectRequest
) -> ConnectData:
    """Save every source of the request, or none: secrets first, then one transaction."""
    from datasources.models.connection import split_secrets

    principal.require_write(request.scope)
    tenant = tenant_for(principal, workspace_id, request.scope)
    if any(source.type == "file" for source in request.sources):
        from datasources.dal.lake_access import Reader, check_file_config

        reader = Reader.of_source(tenant)
        for source in request.sources:
            check_file_config(reader, source.connection_config)
    now = now_iso()
    records: list[SourceRecord] = []
    created_secrets: list[str] = []
    configs = _with_engines(list(request.sources))
    try:
        for source, config in zip(request.sources, configs, strict=True):
            source_id = new_id("src")
            masked, secrets = split_secrets(config)
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
    return ConnectData(connected_sources=[source_view(r) for r in records])


def list_sources(
    principal: Principal, workspace_id: str, query: ListQuery
) -> tuple[list[SourceView], str | None]:
    """One page of the caller's sources in a scope, and the token for the next page."""
    tenant = tenant_for(principal, workspace_id, query.scope)
    page, token = sources_dal.list_sources(
        tenant, source_type=query.type, limit=query.limit, next_token=query.next_token
    )
    return [source_view(s) for s in page], token


def cleanup_sources(
    principal: Principal, workspace_id: str, request: CleanupRequest, *, remaining_ms: int
) -> CleanupData:
    """Delete sources (all of the scope when no ids): items, state, secrets; cancel jobs.

    Works within the request's time budget; sources left when it runs out are deleted
    by the worker, and the answer lists them as pending (`continuing`). Synced data in
    the landing bucket is kept: it belongs to the workspace's lake.
    """
    # Imported here: only cleanup uses it, and list shares this module.
    from datasources.sync.cleanup import remove_sources, request_deadline

    principal.require_write(request.scope)
    deadline = request_deadline(remaining_ms)
    tenant = tenant_for(principal, workspace_id, request.scope)
    if request.source_ids is None:
        targets = list(sources_dal.iter_all_sources(tenant))
        not_found: list[str] = []
    else:
        found = sources_dal.get_sources(tenant, request.source_ids)
        targets = list(found.values())
        not_found = [sid for sid in dict.fromkeys(request.source_ids) if sid not in found]
    progress = remove_sources(tenant, targets, deadline, now_iso)
    return CleanupData(
        deleted_count=len(progress.deleted),
        deleted_source_ids=progress.deleted,
        not_found=not_found,
        cancelled_job_ids=progress.cancelled_jobs,
        continuing=bool(progress.pending),
        pending_source_ids=progress.pending,
    )


def test_connection(principal: Principal, request: TestConnectionRequest) -> TestConnectionData:
    """Check a config before it is saved; ConnectionFailed says which stage failed."""
    from datasources.connectors.registry import open_connector
    from datasources.dal.lake_access import Reader, lake_allowance

    config = request.source_config.connection_config
    lake = lake_allowance(Reader.of_caller(principal), config)
    connector = open_connector(request.source_config.type, config, lake)
    try:
        started = time.perf_counter()
        result = connector.check()
        latency = result.latency_ms or round((time.perf_counter() - started) * 1000, 1)
    finally:
        connector.close()
    return TestConnectionData(
        reachable=result.reachable, latency_ms=latency, details=result.details
    )


def get_schema(principal: Principal, workspace_id: str, query: SchemaQuery) -> SchemaData:
    """Discover the streams of a saved source, with the cursor a sync would use."""
    tenant = tenant_for(principal, workspace_id, query.scope)
    source = sources_dal.get_source(tenant, query.source_id)
    if source is None:
        raise SourceNotFound(f"data source {query.source_id} not found")
    connector = open_source(source, tenant)
    try:
        tables = connector.discover()
    finally:
        connector.close()
    return SchemaData(
        source_id=source.id,
        tables=[
            TableView(
                name=t.name,
                columns=[ColumnView(**dict(c)) for c in t.columns],
                primary_key=t.primary_key,
                cursor_candidates=t.cursor_candidates,
                row_count_estimate=t.row_count_estimate,
                kind=t.kind,
                cursor_field=(cursor := choose_cursor(t.cursor_candidates, None)),
                incremental_captures=incremental_captures(cursor),
                readable=t.readable,
                reason=t.reason,
            )
            for t in tables
        ],
    )
