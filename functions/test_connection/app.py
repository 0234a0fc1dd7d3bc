"""POST /api/v1/data/{workspace_id}/test-connection — check a config before saving it."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.responses import TestConnectionData
from datasources.models.source_requests import TestConnectionRequest
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.sources import test_connection
from datasources.tracing import tracer


@api_route(body=TestConnectionRequest, response=TestConnectionData)
def route(request: ApiRequest[TestConnectionRequest]) -> ApiResult:
    result = test_connection(request.principal, request.input)
    return ApiResult(result, f"Connection test successful ({result.latency_ms} ms)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init()
