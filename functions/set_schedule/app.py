"""POST /api/v1/data/{workspace_id}/schedule — set or remove the schedule of sources."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.logging import correlation_paths

from datasources.http import ApiRequest, ApiResult, api_route
from datasources.models.responses import SchedulesData
from datasources.models.schedules import ScheduleRequest
from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.schedules import set_schedules


@api_route(body=ScheduleRequest, response=SchedulesData)
def route(request: ApiRequest[ScheduleRequest]) -> ApiResult:
    data = set_schedules(request.principal, request.workspace_id, request.input)
    if request.input.schedule is None:
        return ApiResult(data, f"Removed the schedule of {len(request.input.source_ids)} source(s)")
    return ApiResult(data, f"Scheduled {len(data.schedules)} source(s)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return route(event, context)


end_init("dynamodb", "scheduler")
