"""Request bodies and query strings that carry no connection config.

The light functions (list, status, cleanup) import only these; the models that embed
a source's `connection_config` live in `source_requests`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from datasources.limits import DEFAULT_BATCH_SIZE
from datasources.models.common import (
    MAX_SOURCE_IDS,
    Scope,
    SourceId,
    SourceType,
    StrictModel,
)


class ListQuery(StrictModel):
    scope: Scope = Scope.USER
    type: SourceType | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    next_token: Annotated[str, Field(max_length=2048)] | None = None


class SyncOptions(StrictModel):
    incremental: bool = True
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = DEFAULT_BATCH_SIZE
    format: Literal["parquet", "jsonl"] = "parquet"
    streams: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=5000
    )
    cursor_fields: dict[str, str] = Field(default_factory=dict)
    reset_state: bool | list[str] = False


class SyncRequest(StrictModel):
    scope: Scope = Scope.USER
    source_ids: Annotated[list[SourceId], Field(max_length=MAX_SOURCE_IDS)] | None = None
    sync_options: SyncOptions = Field(default_factory=SyncOptions)


class JobQuery(StrictModel):
    scope: Scope = Scope.USER


class CleanupRequest(StrictModel):
    scope: Scope = Scope.USER
    source_ids: Annotated[list[SourceId], Field(max_length=MAX_SOURCE_IDS)] | None = None


class SchemaQuery(StrictModel):
    source_id: SourceId
    scope: Scope = Scope.USER


# Preview answers from the source inside the request: a peek, never a sync.
MAX_PREVIEW_ROWS = 100


class PreviewQuery(StrictModel):
    source_id: SourceId
    stream: Annotated[str, Field(min_length=1, max_length=1024)]
    limit: Annotated[int, Field(ge=1, le=MAX_PREVIEW_ROWS)] = 20
    scope: Scope = Scope.USER
