"""GET /api/v1/data/{workspace_id}/preview?source_id=…&stream=… — a few rows of a stream."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.requests import PreviewQuery
from datasources.models.responses import PreviewData
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.preview import preview_stream
from datasources.tracing import tracer


@api_route(query=PreviewQuery, response=PreviewData)
def route(request: ApiRequest[PreviewQuery]) -> ApiResult:
    preview = preview_stream(request.principal, request.workspace_id, request.input)
    return ApiResult(preview, f"Read {preview.row_count} row(s) of {preview.stream}")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb", "secretsmanager")
