"""POST /api/v1/data/{workspace_id}/connect — save data sources (all or none)."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.source_requests import ConnectRequest
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.sources import connect_sources


@api_route(body=ConnectRequest)
def route(request: ApiRequest[ConnectRequest]) -> ApiResult:
    connected = connect_sources(request.principal, request.workspace_id, request.input)
    metrics.add_metric(name="SourcesConnected", unit=MetricUnit.Count, value=len(connected))
    return ApiResult(
        {"connected_sources": connected},
        f"Connected {len(connected)} data source(s)",
        status_code=201,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb", "secretsmanager")
