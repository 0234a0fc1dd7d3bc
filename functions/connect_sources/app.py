"""POST /api/v1/data/{workspace_id}/connect — save data sources (all or none)."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.responses import ConnectData
from datasources.models.source_requests import ConnectRequest
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.sources import connect_sources


@api_route(body=ConnectRequest, response=ConnectData)
def route(request: ApiRequest[ConnectRequest]) -> ApiResult:
    data = connect_sources(request.principal, request.workspace_id, request.input)
    count = len(data.connected_sources)
    metrics.add_metric(name="SourcesConnected", unit=MetricUnit.Count, value=count)
    return ApiResult(data, f"Connected {count} data source(s)", status_code=201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb", "secretsmanager")
