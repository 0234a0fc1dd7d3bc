"""POST /sync and GET /sync/{job_id}; what the sync, worker and trigger functions load.

The engine (and with it the connectors and Arrow) is imported by `preload` or by the
first sync, never at this module's import: the status function stays light.
"""

from __future__ import annotations

from collections.abc import Callable

from datasources.auth import Principal
from datasources.dal import sources as sources_dal
from datasources.dal.keys import tenant_for
from datasources.errors import SourceNotFound
from datasources.models.common import Scope
from datasources.models.requests import SyncRequest
from datasources.models.responses import SyncJobView
from datasources.sync.status import job_status

# The AWS clients a sync uses, made at init by the sync, worker and trigger functions.
CLIENTS = ("dynamodb", "s3", "sqs", "secretsmanager")


def preload() -> None:
    """Import the data path: the engine, connectors with their drivers, Arrow and Parquet.

    The sync and worker functions call this at init, which Lambda runs once per
    execution environment before its first request: the first sync then starts as warm
    as every later one, instead of paying a few hundred milliseconds of imports inside
    API Gateway's 29 s. The light functions never call it.
    """
    from datasources.connectors.registry import load_all
    from datasources.sync import engine, writer  # noqa: F401 - imported for their side effect

    load_all()


def start_sync(
    principal: Principal,
    workspace_id: str,
    request: SyncRequest,
    remaining_ms: Callable[[], int],
) -> SyncJobView:
    """Create a job, work it inline while the time budget lasts, enqueue the rest."""
    from datasources.sync.engine import run_job

    principal.require_write(request.scope)
    tenant = tenant_for(principal, workspace_id, request.scope)
    if request.source_ids:
        found = sources_dal.get_sources(tenant, request.source_ids)
        missing = [sid for sid in request.source_ids if sid not in found]
        if missing:
            raise SourceNotFound(
                f"data source not found: {', '.join(missing)}", details={"not_found": missing}
            )
        sources = [found[sid] for sid in dict.fromkeys(request.source_ids)]
    else:
        sources = list(sources_dal.iter_all_sources(tenant))
    return run_job(
        tenant, sources, request.sync_options, remaining_ms, created_by=principal.sub, trigger="api"
    )


def get_sync_job(principal: Principal, workspace_id: str, scope: Scope, job_id: str) -> SyncJobView:
    """A job's progress as the caller may see it (404 for another tenant's job)."""
    tenant = tenant_for(principal, workspace_id, scope)
    return job_status(tenant, job_id)
