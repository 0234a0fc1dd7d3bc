"""Schedule requests (POST /schedule, GET /schedules); the views are in `responses`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from datasources.models.common import MAX_SOURCES_PER_WRITE, Scope, SourceId, StrictModel
from datasources.models.requests import SyncOptions
from datasources.models.schedule_expression import (
    ON_UPLOAD,
    ExpressionError,
    parse_expression,
    zone,
)

DEFAULT_MAX_CONSECUTIVE_FAILURES = 5


class ScheduleRequest(StrictModel):
    scope: Scope = Scope.USER
    source_ids: Annotated[list[SourceId], Field(min_length=1, max_length=MAX_SOURCES_PER_WRITE)]
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


TriggerKind = Literal["api", "schedule", "upload"]
