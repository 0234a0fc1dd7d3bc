"""Response shapes, for the OpenAPI document (the services build plain dicts of this shape)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from datasources.connectors.base import Column
from datasources.models.schedules import ScheduleView
from datasources.types import IncrementalCaptures


class SourceView(BaseModel):
    id: str
    name: str
    type: Literal["database", "api", "file"]
    scope: Literal["user", "organization"]
    connection_config: dict[str, Any] = Field(
        description='The config as saved; every secret field reads "********".'
    )
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    created_by: str
    last_sync: dict[str, Any] | None
    schedule: ScheduleView | None = Field(
        default=None, description="The source's schedule (POST /schedule), or null"
    )


class ConnectData(BaseModel):
    connected_sources: list[SourceView]


class StreamProgress(BaseModel):
    stream: str
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    mode: Literal["incremental", "full_refresh"]
    cursor_field: str | None
    records: int
    parts: int
    bytes: int
    cursor_range: dict[str, Any]
    output: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    notes: list[str]
    error: str | None


class SourceProgress(BaseModel):
    source_id: str
    status: str
    records_processed: int
    streams: list[StreamProgress]


class SyncJobView(BaseModel):
    job_id: str | None
    status: Literal["queued", "running", "completed", "failed", "cancelled"]
    records_processed: int
    trigger: Literal["api", "schedule", "upload"] | None = None
    sources: list[SourceProgress]
    options: dict[str, Any] | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    status_url: str | None = None


class CleanupData(BaseModel):
    deleted_count: int
    deleted_source_ids: list[str]
    not_found: list[str]
    cancelled_job_ids: list[str]
    # True when the time budget ran out: the worker deletes `pending_source_ids` (their
    # secrets first), and they disappear from GET /list as it goes.
    continuing: bool = False
    pending_source_ids: list[str] = Field(default_factory=list)


class TestConnectionData(BaseModel):
    reachable: bool
    latency_ms: float
    details: dict[str, Any]


class TableView(BaseModel):
    name: str
    columns: list[Column]
    primary_key: list[str]
    cursor_candidates: list[str]
    cursor_field: str | None
    incremental_captures: IncrementalCaptures | None = Field(
        default=None,
        description="What an incremental sync on `cursor_field` sees: `inserts_and_updates` "
        "(an update column, or PostgreSQL's row version `xmin`) or `inserts` only (a key or a "
        "creation time). Deletes are never seen by an incremental sync; null: no cursor.",
    )
    row_count_estimate: int | None
    kind: str


class SchemaData(BaseModel):
    source_id: str
    tables: list[TableView]


class PreviewData(BaseModel):
    source_id: str
    stream: str
    columns: list[Column] = Field(description="The stream's columns, typed as in `schema`.")
    rows: list[dict[str, Any]] = Field(
        description="Up to `limit` rows, by column name; timestamps ISO-8601, decimals as "
        "strings, binary as hex."
    )
    row_count: int
    truncated: bool = Field(
        description="True when the response size cap cut rows or long values short."
    )


class ErrorData(BaseModel):
    code: str
    errors: list[dict[str, Any]] | None = None
    stage: str | None = None


class ErrorEnvelope(BaseModel):
    status: Literal["error"]
    message: str
    data: ErrorData | None
    request_id: str | None = None
