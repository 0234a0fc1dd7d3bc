"""GET /api/v1/data/{workspace_id}/schema?source_id=… — discover a source's streams."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.requests import SchemaQuery
from datasources.models.responses import SchemaData
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.sources import get_schema
from datasources.tracing import tracer


@api_route(query=SchemaQuery, response=SchemaData)
def route(request: ApiRequest[SchemaQuery]) -> ApiResult:
    schema = get_schema(request.principal, request.workspace_id, request.input)
    return ApiResult(schema, f"Found {len(schema.tables)} table(s)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb", "secretsmanager")
