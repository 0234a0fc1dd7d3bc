"""GET /api/v1/data/{workspace_id}/sync/{job_id} — a sync job's progress."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.errors import JobNotFound
from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.common import JOB_ID_PATTERN, fullmatches
from datasources.models.requests import JobQuery
from datasources.models.responses import SyncJobView
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.syncs import get_sync_job


@api_route(query=JobQuery, response=SyncJobView)
def route(request: ApiRequest[JobQuery]) -> ApiResult:
    job_id = request.path.get("job_id", "")
    if not fullmatches(JOB_ID_PATTERN, job_id):
        raise JobNotFound(f"sync job {job_id[:64]} not found")
    job = get_sync_job(request.principal, request.workspace_id, request.input.scope, job_id)
    return ApiResult(job, f"Sync job {job.status}")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb")
