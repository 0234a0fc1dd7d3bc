"""What the endpoints answer in `data`: the services return these models, `api_route`
serialises them and `scripts/gen_openapi.py` documents them, so the document and the
responses come from one definition.

Every field is required unless a response may leave it out (then it has a default,
and is serialised only when the service sets it).
"""

# No `from __future__ import annotations`: pydantic would compile and evaluate each
# annotation string at import, which costs the light functions' cold start.
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from datasources.models.common import ResponseModel
from datasources.types import IncrementalCaptures, NormalizedType


class ScheduleView(ResponseModel):
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


class SchedulesData(ResponseModel):
    schedules: list[ScheduleView]


class SourceView(ResponseModel):
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
        description="The source's schedule (POST /schedule), or null"
    )


class ConnectData(ResponseModel):
    connected_sources: list[SourceView]


class StreamProgress(ResponseModel):
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


class SourceProgress(ResponseModel):
    source_id: str
    status: str
    records_processed: int
    streams: list[StreamProgress]


class SyncJobView(ResponseModel):
    """A job's progress. A sync with no sources answers only the first four fields."""

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


class CleanupData(ResponseModel):
    deleted_count: int
    deleted_source_ids: list[str]
    not_found: list[str]
    cancelled_job_ids: list[str]
    # True when the time budget ran out: the worker deletes `pending_source_ids` (their
    # secrets first), and they disappear from GET /list as it goes.
    continuing: bool
    pending_source_ids: list[str]


class TestConnectionData(ResponseModel):
    reachable: bool
    latency_ms: float
    details: dict[str, Any]


# Not the connectors' Column: this module is loaded by the light functions (list,
# status, cleanup), which never load connector code at cold start.
class ColumnView(ResponseModel):
    """A stream's column: its normalized type and the source's own type name."""

    name: str
    type: NormalizedType
    native_type: str
    nullable: bool


class TableView(ResponseModel):
    # In the order the connector's Table has them, then the cursor a sync would use.
    name: str
    columns: list[ColumnView]
    primary_key: list[str]
    cursor_candidates: list[str]
    row_count_estimate: int | None
    kind: str
    cursor_field: str | None
    incremental_captures: IncrementalCaptures | None = Field(
        default=None,
        description="What an incremental sync on `cursor_field` sees: `inserts_and_updates` "
        "(an update column, or PostgreSQL's row version `xmin`) or `inserts` only (a key or a "
        "creation time). Deletes are never seen by an incremental sync; null: no cursor.",
    )
    readable: bool = Field(
        default=True, description="False when a read is known to fail; `reason` says why"
    )
    reason: str | None = Field(
        default=None, description="Why the stream cannot be read, and what to do about it"
    )


class SchemaData(ResponseModel):
    source_id: str
    tables: list[TableView]


class PreviewData(ResponseModel):
    source_id: str
    stream: str
    columns: list[ColumnView] = Field(description="The stream's columns, typed as in `schema`.")
    rows: list[dict[str, Any]] = Field(
        description="Up to `limit` rows, by column name; timestamps ISO-8601, decimals as "
        "strings, binary as hex."
    )
    row_count: int
    truncated: bool = Field(
        description="True when the response size cap cut rows or long values short."
    )


# Documentation only (error_response builds the error envelope): built when first used.
class ErrorData(BaseModel):
    model_config = ConfigDict(defer_build=True)

    code: str
    errors: list[dict[str, Any]] | None = None
    stage: str | None = None


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(defer_build=True)

    status: Literal["error"]
    message: str
    data: ErrorData | None
    request_id: str | None = None
