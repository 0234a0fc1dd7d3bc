"""POST /api/v1/data/{workspace_id}/sync — start a sync; small ones finish inline."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.requests import SyncRequest
from datasources.models.responses import SyncJobView
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.syncs import CLIENTS, preload, start_sync
from datasources.tracing import tracer

preload()  # at init: see preload()


@api_route(body=SyncRequest, response=SyncJobView)
def route(request: ApiRequest[SyncRequest]) -> ApiResult:
    job = start_sync(request.principal, request.workspace_id, request.input, request.remaining_ms)
    metrics.add_metric(name="RecordsSynced", unit=MetricUnit.Count, value=job.records_processed)
    if job.job_id is None:
        return ApiResult(job, "No data sources to sync")
    if job.status in ("running", "queued"):
        message = f"Sync running: {job.records_processed} records so far; poll the status URL"
        return ApiResult(job, message, status_code=202)
    message = f"Sync {job.status}: {job.records_processed} records"
    return ApiResult(job, message)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init(*CLIENTS)
