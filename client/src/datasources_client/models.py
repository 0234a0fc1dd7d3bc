"""Typed views of the API's `data`. Each keeps the exact `data` it was built from in `raw`
(what `--output json` prints), so a field the server adds later is never lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINISHED = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    type: str
    scope: str
    connection_config: dict[str, Any]
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    created_by: str
    last_sync: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Source:
        return cls(
            id=data["id"],
            name=data["name"],
            type=data["type"],
            scope=data["scope"],
            connection_config=dict(data.get("connection_config") or {}),
            metadata=dict(data.get("metadata") or {}),
            created_at=data.get("created_at", ""),
            updated_at=data.get("updated_at", ""),
            created_by=data.get("created_by", ""),
            last_sync=data.get("last_sync"),
            raw=data,
        )


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    native_type: str
    nullable: bool

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Column:
        return cls(
            data["name"], data["type"], data.get("native_type", ""), data.get("nullable", True)
        )


@dataclass(frozen=True)
class Table:
    name: str
    columns: list[Column]
    primary_key: list[str]
    cursor_candidates: list[str]
    cursor_field: str | None
    row_count_estimate: int | None
    kind: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Table:
        return cls(
            name=data["name"],
            columns=[Column.from_api(c) for c in data.get("columns", [])],
            primary_key=list(data.get("primary_key") or []),
            cursor_candidates=list(data.get("cursor_candidates") or []),
            cursor_field=data.get("cursor_field"),
            row_count_estimate=data.get("row_count_estimate"),
            kind=data.get("kind", "table"),
        )


@dataclass(frozen=True)
class Schema:
    source_id: str
    tables: list[Table]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Schema:
        return cls(data["source_id"], [Table.from_api(t) for t in data.get("tables", [])], data)


@dataclass(frozen=True)
class Preview:
    source_id: str
    stream: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    truncated: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Preview:
        return cls(
            source_id=data["source_id"],
            stream=data["stream"],
            columns=[Column.from_api(c) for c in data.get("columns", [])],
            rows=list(data.get("rows") or []),
            truncated=bool(data.get("truncated")),
            raw=data,
        )


@dataclass(frozen=True)
class ConnectionTest:
    reachable: bool
    latency_ms: float
    details: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ConnectionTest:
        return cls(
            bool(data.get("reachable")),
            float(data.get("latency_ms") or 0),
            dict(data.get("details") or {}),
            data,
        )


@dataclass(frozen=True)
class StreamProgress:
    source_id: str
    stream: str
    status: str
    mode: str | None
    records: int
    parts: int
    bytes: int
    output: str
    error: str | None

    @classmethod
    def from_api(cls, source_id: str, data: dict[str, Any]) -> StreamProgress:
        return cls(
            source_id=source_id,
            stream=data["stream"],
            status=data.get("status", ""),
            mode=data.get("mode"),
            records=int(data.get("records") or 0),
            parts=int(data.get("parts") or 0),
            bytes=int(data.get("bytes") or 0),
            output=data.get("output") or "",
            error=data.get("error"),
        )


@dataclass(frozen=True)
class SyncJob:
    job_id: str | None
    status: str
    records_processed: int
    streams: list[StreamProgress]
    error: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> SyncJob:
        streams = [
            StreamProgress.from_api(source["source_id"], stream)
            for source in data.get("sources") or []
            for stream in source.get("streams") or []
        ]
        return cls(
            job_id=data.get("job_id"),
            status=data.get("status", ""),
            records_processed=int(data.get("records_processed") or 0),
            streams=streams,
            error=data.get("error"),
            raw=data,
        )


@dataclass(frozen=True)
class CleanupResult:
    deleted_count: int
    deleted_source_ids: list[str]
    not_found: list[str]
    cancelled_job_ids: list[str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> CleanupResult:
        return cls(
            int(data.get("deleted_count") or 0),
            list(data.get("deleted_source_ids") or []),
            list(data.get("not_found") or []),
            list(data.get("cancelled_job_ids") or []),
            data,
        )


@dataclass(frozen=True)
class Schedule:
    source_id: str
    schedule: str | None
    timezone: str
    sync_options: dict[str, Any]
    enabled: bool
    next_run_at: str | None
    last_run: dict[str, Any] | None
    consecutive_failures: int
    paused_reason: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Schedule:
        return cls(
            source_id=data["source_id"],
            schedule=data.get("schedule"),
            timezone=data.get("timezone") or "UTC",
            sync_options=dict(data.get("sync_options") or {}),
            enabled=bool(data.get("enabled", True)),
            next_run_at=data.get("next_run_at"),
            last_run=data.get("last_run"),
            consecutive_failures=int(data.get("consecutive_failures") or 0),
            paused_reason=data.get("paused_reason"),
            raw=data,
        )
