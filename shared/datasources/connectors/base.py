"""The connector interface and the value types it trades in.

See docs/architecture.md, "The connector interface".

A connector is built from a validated `connection_config` (secrets included) and a
`ConnectorContext`. It never talks to DynamoDB, S3 landing or SQS: the sync engine
persists what it yields. Drivers are imported inside connector modules only, so the
light handlers (connect, list, cleanup, status) never load one.

Resumption contract for `read`:
- `StreamState.cursor_state` is the committed incremental state of the stream from the
  last completed run (None on a first or full-refresh run). It is whatever JSON the
  connector put in `Batch.cursor_state`.
- `StreamState.resume_token` is the position inside the current run (None at its start);
  it is the `resume_token` of the last batch the engine persisted. A connector that
  fixes an upper bound for the run (a max cursor value) puts it in the token so that
  continuations in other invocations keep it.
- Each `Batch` carries at most `batch_size` records, the token to resume after it, and
  `cursor_state`: the state to commit if the stream finished right after this batch.
- Every token and state value is JSON-serialisable (datetimes as ISO-8601 strings,
  decimals as strings), because the engine stores them as JSON text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

# The stream shapes are models (the schema and preview answers show them); connectors
# name them, and the normalized types, from here with the rest of their interface.
from datasources.models.streams import Column, Table
from datasources.types import NormalizedType

if TYPE_CHECKING:
    import pyarrow as pa

    from datasources.config import Settings
    from datasources.lake import LakeAllowance

__all__ = [
    "Batch",
    "CheckResult",
    "Column",
    "Connector",
    "ConnectorContext",
    "NormalizedType",
    "StreamState",
    "Table",
]


class CheckResult(BaseModel):
    reachable: bool
    latency_ms: float
    details: dict[str, Any] = Field(default_factory=dict)


class StreamState(BaseModel):
    """What the engine hands `read`: which cursor, the committed state, the run position."""

    cursor_field: str | None = None
    cursor_state: dict[str, Any] | None = None
    resume_token: dict[str, Any] | None = None


@dataclass
class Batch:
    """Up to `batch_size` records, columnar (a pyarrow Table) where the connector can.

    `records` may instead be a list of dicts whose values are JSON-like, datetime,
    date, time, Decimal or bytes; the engine types them with the discovered schema.
    """

    records: pa.Table | list[dict[str, Any]]
    resume_token: dict[str, Any] | None
    cursor_state: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        if isinstance(self.records, list):
            return len(self.records)
        return int(self.records.num_rows)


@dataclass
class ConnectorContext:
    """What a connector may use besides its config: settings and AWS clients."""

    settings: Settings
    s3_client_factory: Any = None  # callable(**kwargs) -> boto3 S3 client
    # What a file source may read back from the service's own landing bucket, resolved
    # by the services layer from the reader's reach. None: nothing there is readable.
    lake: LakeAllowance | None = None
    # When every upstream read and parse must have ended (a time.monotonic() value):
    # the function's remaining time less a margin (datasources.limits). None: no limit.
    deadline: float | None = None


@runtime_checkable
class Connector(Protocol):
    def check(self) -> CheckResult: ...

    def discover(self) -> list[Table]: ...

    def read(self, stream: str, state: StreamState, batch_size: int) -> Iterator[Batch]: ...

    def close(self) -> None: ...
