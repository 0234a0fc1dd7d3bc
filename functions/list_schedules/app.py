"""GET /api/v1/data/{workspace_id}/schedules — the schedules of the caller's sources."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.responses import SchedulesData
from datasources.models.schedules import SchedulesQuery
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.schedules import list_schedules


@api_route(query=SchedulesQuery, response=SchedulesData)
def route(request: ApiRequest[SchedulesQuery]) -> ApiResult:
    data = list_schedules(request.principal, request.workspace_id, request.input)
    return ApiResult(data, f"Found {len(data.schedules)} schedule(s)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb")
