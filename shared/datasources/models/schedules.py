"""Schedule requests and views (POST /schedule, GET /schedules)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from datasources.models.common import Scope, SourceId, StrictModel
from datasources.models.requests import SyncOptions
from datasources.models.schedule_expression import (
    ON_UPLOAD,
    ExpressionError,
    parse_expression,
    zone,
)

# Each source is one item of the request's DynamoDB transaction, and an `on_upload`
# source a second one (its upload index item): 25 stays inside the 100-item limit.
MAX_SCHEDULE_SOURCE_IDS = 25
DEFAULT_MAX_CONSECUTIVE_FAILURES = 5


class ScheduleRequest(StrictModel):
    scope: Scope = Scope.USER
    source_ids: Annotated[list[SourceId], Field(min_length=1, max_length=MAX_SCHEDULE_SOURCE_IDS)]
    schedule: Annotated[str, Field(max_length=256)] | None = Field(
        description='rate(N minutes|hours|days), cron(min hour dom month dow year), "on_upload", '
        "or null to remove the schedule"
    )
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    sync_options: SyncOptions = Field(default_factory=SyncOptions)
    enabled: bool = True
    max_consecutive_failures: Annotated[int, Field(ge=1, le=100)] = DEFAULT_MAX_CONSECUTIVE_FAILURES

    @field_validator("schedule")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is None or value == ON_UPLOAD:
            return value
        try:
            parse_expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value


class SchedulesQuery(StrictModel):
    scope: Scope = Scope.USER


class ScheduleView(BaseModel):
    source_id: str
    schedule: str
    timezone: str
    sync_options: dict[str, Any]
    enabled: bool
    max_consecutive_failures: int
    next_run_at: str | None = Field(
        description="The next fire time (UTC); null for on_upload, disabled or paused schedules"
    )
    last_run: dict[str, Any] | None = Field(
        description="The last trigger: {status: started|skipped, job_id | running_job_id, "
        "reason, trigger, at}, then the job's outcome once it ends"
    )
    consecutive_failures: int
    paused_reason: str | None
    updated_at: str


class SchedulesData(BaseModel):
    schedules: list[ScheduleView]


TriggerKind = Literal["api", "schedule", "upload"]
