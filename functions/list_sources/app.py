"""GET /api/v1/data/{workspace_id}/list — the caller's sources in a scope, paged."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.requests import ListQuery
from datasources.models.responses import SourceView
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.sources import list_sources


@api_route(query=ListQuery, response=list[SourceView])
def route(request: ApiRequest[ListQuery]) -> ApiResult:
    sources, next_token = list_sources(request.principal, request.workspace_id, request.input)
    return ApiResult(
        sources, f"Found {len(sources)} data source(s)", extra={"next_token": next_token}
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb")
