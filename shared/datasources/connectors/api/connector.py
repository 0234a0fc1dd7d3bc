"""The `api` connector: pages through HTTP JSON API resources and yields typed batches.

Its collaborators: `client` (egress, auth, redaction, retries, JSON), `paginators`
(one class per pagination kind), `detector` (what `auto` decides), `records` (the list of
records in a body), `typing` (column inference and Arrow), `retry` (the backoff
policy).

Resources
    With no `resources`, `base_url` itself is one resource, named after its last path
    segment (`https://x/v1/orders` -> `orders`) or `records`.

Loop guards
    A cursor or next URL seen before in the run, or a page/offset page with exactly the
    records of the page before, stops the read with a SourceReadError, and so does
    reaching `max_pages` while the API still announces another page.

Resume token (after each batch)
    `pos` is the request of the page holding the next record (see `paginators`), `skip`
    how many of that page's records were already emitted; plus the pages fetched, the
    pagination decision of `auto` (`mode`, `next_path`, `paging`), the records key, the column
    types and the incremental bounds. `{"done": true}` after the last batch. Resuming
    re-requests that page and skips `skip` records, so nothing is lost or doubled as
    long as the API serves the same page again.

Incremental
    With `incremental: {cursor_field, param}`, the committed cursor value (or
    `initial_value`) is sent as `param` on the first request of the run and fixed for
    the run; every batch carries `cursor_state={"value": max cursor seen}`. Whether the
    API's parameter is inclusive is the API's business: an inclusive one repeats the
    records at the boundary value (at least once, never lost). Without `incremental`
    but with a cursor chosen by the engine (`StreamState.cursor_field`, e.g. the
    `updated_at` that discover offers), every page is still fetched and the records
    whose cursor is below the committed value are dropped here (`>=`, so boundary
    records repeat rather than get lost). With neither, a full refresh: `cursor_state`
    is None.

`check` makes one request without retries; `discover` retries within at most 10 s,
because both answer an API Gateway request.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from datasources.connectors.api import typing as api_typing
from datasources.connectors.api.client import ApiClient, ApiFailure
from datasources.connectors.api.detector import PagingError, paginator_for
from datasources.connectors.api.paginators import PageView, Paginator, describe
from datasources.connectors.api.records import RecordsError, dumps, find_records
from datasources.connectors.api.retry import DISCOVER_BUDGET_SECONDS
from datasources.connectors.base import (
    Batch,
    CheckResult,
    ConnectorContext,
    StreamState,
    Table,
)
from datasources.egress import Fetched
from datasources.errors import SourceReadError, ValidationFailed
from datasources.models.connection import ApiConfig, ApiResource

TOKEN_VERSION = 1


@dataclass
class _Run:
    """What one read (or one discover sample) knows besides the position."""

    resource: ApiResource
    paginator: Paginator
    cursor_field: str | None = None  # the configured one, else the engine's choice
    client_filter: bool = False  # no request parameter: drop old records here
    records_key: str | None = None  # auto-detected records key
    since: Any = None
    max_cursor: Any = None
    columns: dict[str, str] | None = None
    pages: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, resource: ApiResource, state: StreamState | None) -> _Run:
        token = (state.resume_token if state else None) or {}
        current = token.get("v") == TOKEN_VERSION
        incremental = resource.incremental
        run = cls(resource, paginator_for(resource.pagination, token if current else None))
        if incremental is not None:
            run.cursor_field = incremental.cursor_field
        elif state is not None and state.cursor_field:
            run.cursor_field = state.cursor_field
            run.client_filter = True
        if current:
            run.records_key = token.get("records_key")
            run.since = token.get("since")
            run.max_cursor = token.get("max_cursor")
            run.pages = int(token.get("pages") or 0)
            if token.get("columns") is not None:
                run.columns = {str(name): str(kind) for name, kind in token["columns"]}
        elif run.cursor_field is not None:
            committed = (state.cursor_state or {}).get("value") if state else None
            initial = incremental.initial_value if incremental is not None else None
            run.since = committed if committed is not None else initial
        return run

    def token(self, pos: dict[str, Any] | None, skip: int) -> dict[str, Any]:
        token: dict[str, Any] = {
            "v": TOKEN_VERSION,
            "pos": pos,
            "skip": skip,
            "pages": self.pages,
            **self.paginator.state(),
            "records_key": self.records_key,
            "since": self.since,
            "max_cursor": self.max_cursor,
            "columns": [[name, kind] for name, kind in (self.columns or {}).items()],
        }
        if pos is None:
            token["done"] = True
        return token


@dataclass
class _Page:
    records: list[dict[str, Any]]
    next_pos: dict[str, Any] | None
    response: Fetched


class ApiConnector:
    """Connector for HTTP JSON APIs (see the module docstrings of this package)."""

    def __init__(
        self,
        config: ApiConfig,
        context: ConnectorContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._client = ApiClient(config, context, sleep=sleep, rng=rng)

    # ------------------------------------------------------------ protocol

    def check(self) -> CheckResult:
        """One authenticated request to `health_path` or the first resource's first page."""
        client = self._client
        started = time.perf_counter()
        try:
            if self._config.health_path:
                url = client.join(self._config.health_path)
                response = client.get(url, {}, retry_budget=None)
            else:
                run = _Run.start(self._resources()[0], None)
                url, params = self._page_request(run, run.paginator.first())
                response = client.get(url, params, retry_budget=None)
                # A resource must answer JSON with records where the config says: an HTML
                # login page with HTTP 200 is not a working connection, whatever its status.
                self._records(run, client.json(response), response)
        except ApiFailure as failure:
            raise client.connection_failed(failure) from None
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return CheckResult(
            reachable=True,
            latency_ms=latency_ms,
            details={
                "status_code": response.status,
                "url": client.safe_url(response.url),
                "content_type": response.headers.get("content-type", ""),
                "request_latency_ms": response.latency_ms,
            },
        )

    def discover(self) -> list[Table]:
        """Sample the first page of each resource and infer its columns."""
        tables = []
        budget = min(self._config.max_retry_wait_seconds, DISCOVER_BUDGET_SECONDS)
        for resource in self._resources():
            run = _Run.start(resource, None)
            try:
                page = self._fetch_page(
                    run, run.paginator.first(), retry_budget=budget, strict=False
                )
            except ApiFailure as failure:
                failure.message = f"resource '{resource.name}': {failure.message}"
                raise self._client.connection_failed(failure) from None
            columns = api_typing.infer_columns(page.records)
            tables.append(
                Table(
                    name=resource.name,
                    columns=columns,
                    primary_key=api_typing.primary_key(resource, page.records),
                    cursor_candidates=api_typing.resource_cursor_candidates(resource, columns),
                    row_count_estimate=len(page.records) if page.next_pos is None else None,
                    kind="resource",
                )
            )
        return tables

    def read(self, stream: str, state: StreamState, batch_size: int) -> Iterator[Batch]:
        """Page through `stream`, yielding batches of at most `batch_size` records."""
        if batch_size < 1:
            raise ValidationFailed("batch_size must be at least 1")
        resource = self._resource(stream)
        token = state.resume_token or {}
        if token.get("done"):
            return
        run = _Run.start(resource, state)
        if run.client_filter and not token:
            run.notes.append(
                f"resource '{stream}' has no incremental request parameter: every page is "
                f"read and records with '{run.cursor_field}' below the committed value are "
                "skipped"
            )
        pos: dict[str, Any] = dict(token.get("pos") or run.paginator.first())
        skip = int(token.get("skip") or 0)
        try:
            yield from self._read_pages(run, pos, skip, batch_size)
        except ApiFailure as failure:
            raise SourceReadError(
                self._client.redact(f"reading '{stream}' failed: {failure.message}"),
                details={"stage": failure.stage, "status_code": failure.status},
            ) from None

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __enter__(self) -> ApiConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading

    def _read_pages(
        self, run: _Run, pos: dict[str, Any], skip: int, batch_size: int
    ) -> Iterator[Batch]:
        seen: set[str] = {json.dumps(pos, sort_keys=True)}
        previous: tuple[Any, ...] | None = None
        buffer: list[dict[str, Any]] = []
        budget = self._config.max_retry_wait_seconds
        while True:
            page = self._fetch_page(run, pos, retry_budget=budget)
            records = page.records
            if run.columns is None and records:
                # The run's schema comes from its first page, as discover's does; the
                # token carries it so continuations in other invocations keep it.
                run.columns = api_typing.infer_kinds(records)
            next_pos = page.next_pos
            if run.paginator.positional:
                if records:
                    fingerprint = (len(records), dumps(records[0]), dumps(records[-1]))
                    if fingerprint == previous:
                        raise ApiFailure(
                            f"the API returned the same records for {describe(pos)} as for "
                            "the page before, so it ignores the pagination parameters; "
                            "stopping instead of syncing forever (check "
                            "pagination.page_param / offset_param)",
                            stage="read",
                        )
                    previous = fingerprint
            elif next_pos is not None:
                key = json.dumps(next_pos, sort_keys=True)
                if key in seen:
                    raise ApiFailure(
                        f"the API returned a next {describe(next_pos)} it had already "
                        "returned in this run; stopping instead of looping forever",
                        stage="read",
                    )
                seen.add(key)
            if run.client_filter and run.since is not None and run.cursor_field:
                # Deterministic for the run (`since` is fixed in the token), so `skip`
                # counts the same filtered list when a continuation re-fetches the page.
                records = api_typing.at_or_after(records, run.cursor_field, run.since)
            index = min(skip, len(records))
            skip = 0
            while index < len(records):
                take = min(batch_size - len(buffer), len(records) - index)
                buffer.extend(records[index : index + take])
                index += take
                if len(buffer) >= batch_size:
                    if index < len(records):
                        yield self._batch(run, buffer, pos, index)
                    else:
                        yield self._batch(run, buffer, next_pos, 0)
                    buffer = []
            if next_pos is None:
                break
            pos = next_pos
        if buffer:
            yield self._batch(run, buffer, None, 0)

    def _batch(
        self, run: _Run, records: list[dict[str, Any]], pos: dict[str, Any] | None, skip: int
    ) -> Batch:
        if run.columns is None:
            run.columns = {}
        try:
            notes = run.notes + api_typing.widen(run.columns, records)
        except api_typing.DecimalMismatch as exc:
            raise ApiFailure(str(exc), stage="read") from None
        run.notes = []
        table = api_typing.to_arrow(run.columns, records)
        cursor_state = None
        if run.cursor_field is not None:
            run.max_cursor = api_typing.max_cursor(records, run.cursor_field, run.max_cursor)
            value = run.max_cursor if run.max_cursor is not None else run.since
            cursor_state = {"value": value} if value is not None else None
        return Batch(
            records=table if table is not None else list(records),
            resume_token=run.token(pos, skip),
            cursor_state=cursor_state,
            notes=notes,
        )

    def _fetch_page(
        self, run: _Run, pos: dict[str, Any], *, retry_budget: float, strict: bool = True
    ) -> _Page:
        """One page and the position after it. Not `strict` (discover's sample), a page
        whose paging cannot be found counts as one with more to come."""
        pagination = run.resource.pagination
        if run.pages >= pagination.max_pages:
            raise ApiFailure(
                f"stopped after {pagination.max_pages} pages (pagination.max_pages) while the "
                "API still announced another page; raise max_pages if the resource is "
                "really that large",
                stage="read",
            )
        url, params = self._page_request(run, pos)
        response = self._client.get(url, params, retry_budget=retry_budget)
        run.pages += 1
        body = self._client.json(response)
        records = self._records(run, body, response)
        view = PageView(
            body=body,
            records=records,
            headers=response.headers,
            links=response.links,
            url=response.url,
            follow=lambda target: self._client.follow_url(response.url, target),
        )
        try:
            next_pos = run.paginator.next_pos(pos, view)
        except PagingError as exc:
            if strict:
                raise ApiFailure(str(exc), stage="read") from None
            next_pos = {}
        name = run.resource.name
        run.notes.extend(f"resource '{name}': {note}" for note in run.paginator.notes)
        run.paginator.notes.clear()
        return _Page(records, next_pos, response)

    def _page_request(self, run: _Run, pos: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        resource = run.resource
        params = {name: self._client.reveal_param(v) for name, v in resource.params.items()}
        if resource.incremental is not None and run.since is not None:
            params[resource.incremental.param] = run.since
        return run.paginator.request(pos, self._client.resource_url(resource), params)

    def _records(self, run: _Run, body: Any, response: Fetched) -> list[dict[str, Any]]:
        try:
            records, run.records_key = find_records(
                body,
                records_path=run.resource.records_path,
                records_key=run.records_key,
                resource=run.resource.name,
                where=self._client.safe_url(response.url),
            )
        except RecordsError as exc:
            raise ApiFailure(str(exc), stage="read") from None
        return records

    # ------------------------------------------------------------ resources

    def _resources(self) -> list[ApiResource]:
        if self._config.resources:
            return list(self._config.resources)
        return [ApiResource(name=_default_name(self._config.base_url))]

    def _resource(self, stream: str) -> ApiResource:
        for resource in self._resources():
            if resource.name == stream:
                return resource
        raise SourceReadError(f"this API source has no resource named '{stream}'")


def _default_name(base_url: str) -> str:
    segments = [s for s in urlsplit(base_url).path.split("/") if s]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", segments[-1])[:128] if segments else ""
    return name or "records"
