"""A source's streams as discovered: their columns and normalized types.

Connectors produce them; the schema and preview answers show them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from datasources.types import NormalizedType


class Column(BaseModel):
    name: str
    type: NormalizedType
    native_type: str
    nullable: bool = True


class Table(BaseModel):
    """One stream of a source: a table, a view, an API resource or a file set."""

    name: str
    columns: list[Column]
    primary_key: list[str] = Field(default_factory=list)
    cursor_candidates: list[str] = Field(default_factory=list)
    row_count_estimate: int | None = None
    kind: str = "table"
    # False when discovery can already tell a read would fail, `reason` saying why and
    # what to do (no SELECT permission, a materialized view never populated).
    readable: bool = True
    reason: str | None = None
