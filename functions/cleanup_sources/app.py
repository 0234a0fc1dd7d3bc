"""POST /api/v1/data/{workspace_id}/cleanup — delete sources, their secrets and state."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.requests import CleanupRequest
from datasources.models.responses import CleanupData
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.sources import cleanup_sources


@api_route(body=CleanupRequest, response=CleanupData)
def route(request: ApiRequest[CleanupRequest]) -> ApiResult:
    result = cleanup_sources(
        request.principal, request.workspace_id, request.input, remaining_ms=request.remaining_ms()
    )
    message = f"Deleted {result.deleted_count} data source(s)"
    if result.continuing:
        message += f"; {len(result.pending_source_ids)} more are being deleted in the background"
    if result.not_found:
        message += f"; {len(result.not_found)} not found"
    return ApiResult(result, message)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb", "secretsmanager", "sqs")
