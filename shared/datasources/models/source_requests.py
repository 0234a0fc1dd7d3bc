"""Request bodies that carry a source's `connection_config` (connect, test-connection)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from datasources.models.common import (
    MAX_METADATA_BYTES,
    MAX_SOURCES_PER_WRITE,
    Scope,
    SourceName,
    StrictModel,
)
from datasources.models.connection import ApiConfig, DatabaseConfig, FileConfig


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_metadata_size)]


class _SourceBase(StrictModel):
    name: SourceName
    metadata: Metadata = Field(default_factory=dict)


class DatabaseSourceInput(_SourceBase):
    type: Literal["database"]
    connection_config: DatabaseConfig


class ApiSourceInput(_SourceBase):
    type: Literal["api"]
    connection_config: ApiConfig


class FileSourceInput(_SourceBase):
    type: Literal["file"]
    connection_config: FileConfig


# The `type` tag picks the connection_config model: one discriminated model per source type.
SourceInput = Annotated[
    DatabaseSourceInput | ApiSourceInput | FileSourceInput, Field(discriminator="type")
]


class ConnectRequest(StrictModel):
    scope: Scope = Scope.USER
    sources: Annotated[list[SourceInput], Field(min_length=1, max_length=MAX_SOURCES_PER_WRITE)]

    @model_validator(mode="after")
    def _unique_names(self) -> ConnectRequest:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"source name '{source.name}' appears twice in this request")
            seen.add(source.name)
        return self


class DatabaseConfigInput(StrictModel):
    type: Literal["database"]
    connection_config: DatabaseConfig


class ApiConfigInput(StrictModel):
    type: Literal["api"]
    connection_config: ApiConfig


class FileConfigInput(StrictModel):
    type: Literal["file"]
    connection_config: FileConfig


SourceConfigInput = Annotated[
    DatabaseConfigInput | ApiConfigInput | FileConfigInput, Field(discriminator="type")
]


class TestConnectionRequest(StrictModel):
    source_config: SourceConfigInput
