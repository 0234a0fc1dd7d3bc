"""Shared field types and limits for request models."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

# Documented patterns (README "Limits"): ids and names that are safe in keys and S3 paths.
# `^…$` means the whole string for pydantic (Rust regex) and OpenAPI (ECMA), but Python's
# `$` also matches before a final "\n": Python code checks them only with `fullmatches`.
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SOURCE_ID_PATTERN = r"^src_[a-f0-9]{20}$"
JOB_ID_PATTERN = r"^job_[a-f0-9]{20}$"
SOURCE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,127}$"
# Token claims (sub, organization) end up inside DynamoDB keys and S3 paths, where
# '#', '/' and '=' are delimiters.
CLAIM_PATTERN = r"^[A-Za-z0-9_.@:|+-]{1,128}$"
MAX_METADATA_BYTES = 8192
# DynamoDB writes at most 100 items in one transaction: the all-or-none writes of a
# request are sized from it.
MAX_TRANSACTION_ITEMS = 100
# Sources one connect or schedule request writes, in one transaction of up to two items
# each (the source and its name guard, or its upload index): half of what would fit.
MAX_SOURCES_PER_WRITE = 25
# Source ids one sync or cleanup request may name (a sync covers fewer: see the engine).
MAX_SOURCE_IDS = 100
MASK = "********"

WorkspaceId = Annotated[str, StringConstraints(pattern=WORKSPACE_ID_PATTERN)]
SourceId = Annotated[str, StringConstraints(pattern=SOURCE_ID_PATTERN)]
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
SourceName = Annotated[str, StringConstraints(pattern=SOURCE_NAME_PATTERN)]


def fullmatches(pattern: str, value: object) -> bool:
    """Whether `value` is a string matched whole by `pattern` (no trailing newline passes)."""
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


SourceType = Literal["database", "api", "file"]
# A step of the path to a secret field inside a connection config (key or list index).
PathKey = str | int


class Scope(StrEnum):
    USER = "user"
    ORGANIZATION = "organization"


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class StrictModel(BaseModel):
    """Request models refuse unknown fields so a typo is a 422, not a silent default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseModel(BaseModel):
    """What an endpoint answers: the services build these, the document is generated from
    them. An undeclared field is refused, so a response cannot carry more than the
    document says; a field with a default may be left unset, and is then left out."""

    # Built at first use, not at import: a function builds only the responses it answers.
    model_config = ConfigDict(extra="forbid", defer_build=True)
