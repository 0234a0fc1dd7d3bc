"""The `api` connector: HTTP JSON APIs, read with one pooled httpx client.

Requests
    One `httpx.Client` per connector (keep-alive, at most 4 connections). Every request
    has a timeout (`timeout_seconds` for connect, read, write and pool) and every body a
    wall-clock cap and a size cap, so a server that trickles bytes cannot hold a sync.
    Proxies and .netrc from the environment are ignored (`trust_env=False`): a proxy
    would bypass the SSRF guard and .netrc could add credentials nobody configured.
    Every request also ends at the context's deadline (the function's remaining time
    less a margin, `datasources.limits`): timeouts are cut to the time left and a
    watchdog shuts the socket at the deadline, so trickled headers or bodies end as
    stage `timeout`. A body is scanned for nesting depth and number of values before
    `json.loads`, and a page may hold at most `MAX_PAGE_RECORDS` records.

Security
    * Every TCP connection (first request, next-page URLs, redirects) is opened by
      `_GuardedBackend`, which resolves the host through `netguard.resolve_host` and
      connects to the address the guard returned, never to the name again. TLS still
      uses the host name for SNI and certificate checks, because httpcore passes the
      URL's host as `server_hostname`. So there is no DNS-rebinding window.
    * Redirects are not followed automatically. Up to 5 are followed by hand, only to
      the same host (and port, or an http -> https upgrade), so credentials never travel
      to another host. A next-page URL that points to another host is refused too.
    * https only; plain http only when `settings.local_mode` is on.
    * Secret values (api key, bearer token, basic password, secret-looking headers) are
      masked in every error message and log line, and a query-parameter api key is
      stripped from every URL kept in a resume token or shown in a message.

Authentication
    `api_key` goes where `api_key_in` says: `Authorization: Bearer <key>` (default), the
    header `api_key_name` (default `X-API-Key`) or the query parameter `api_key_name`
    (default `api_key`). `basic_auth`, `bearer_token` and extra `headers` are sent too;
    when several set `Authorization`, the api key wins over the bearer token, which wins
    over basic auth, which wins over `headers`.

Resources
    With no `resources`, `base_url` itself is one resource, named after its last path
    segment (`https://x/v1/orders` -> `orders`) or `records`.

Records
    `records_path` is a dotted path to the list of records (`.` = the whole body).
    Without it: a list body is the records; in an object body the records are the
    list under `data`, `results`, `items`, `records`, ... or the only list-valued key;
    otherwise the error asks for `records_path`. Scalars in the list become `{"value": x}`.

Pagination (`pagination.kind`)
    `none`, `page`, `offset`, `cursor`, `link_header`, `next_url` (see `Pagination`), and
    `auto` (the default): after the first page, follow a `Link: <...>; rel="next"` header
    if there is one, else an obvious next URL in the body (`next`, `next_url`,
    `next_page_url`, `links.next`, `links.next.href`, `_links.next.href`, `paging.next`,
    `pagination.next`, `meta.next`, `@odata.nextLink`, ...: a string that is an http(s)
    URL or starts with `/` or `?`), else stop after one page. So the minimal config
    `{base_url, api_key}` syncs a paginated API completely. Next URLs are followed as
    given (they carry the API's own filter parameters); only credentials are re-added.
    Loop guard: a cursor or next URL seen before in the run, or a page/offset page with
    exactly the records of the page before, stops the read with a SourceReadError, and
    so does reaching `max_pages` while the API still announces another page.

Types
    Columns are inferred from a page of records: string, integer, number, boolean,
    timestamp_tz / timestamp / date for ISO-8601-looking strings, json for objects and
    arrays. `read` yields pyarrow Tables typed that way: timestamps are parsed (tz-aware
    ones to UTC, microseconds), objects and arrays are JSON text. A later value that does
    not fit its column widens the column (integer -> number -> string) and a new key adds a
    column; both are noted on the batch and carried in the resume token.

Resume token (after each batch)
    `pos` is the request of the page holding the next record (`{"page": n}`,
    `{"offset": n}`, `{"cursor": t}`, `{"url": u}`, or `{}` for the resource's first
    request), `skip` how many of that page's records were already emitted; plus the
    pages fetched, the auto-detected pagination mode and records key, the column types
    and the incremental bounds. `{"done": true}` after the last batch.
    Resuming re-requests that page and skips `skip` records, so nothing is lost or
    doubled as long as the API serves the same page again.

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

Retries
    429 and 5xx are retried with exponential backoff and jitter, honouring `Retry-After`
    (seconds or an HTTP date), while the total wait stays within
    `max_retry_wait_seconds`; timeouts and refused connections get a couple of retries
    in the same budget. Other 4xx fail at once with the upstream status. `check` makes
    one request without retries; `discover` retries within at most 10 s, because both
    answer an API Gateway request.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpcore
import httpx
import pyarrow as pa
from pydantic import SecretStr

from datasources.connectors.base import (
    Batch,
    CheckResult,
    Column,
    ConnectorContext,
    NormalizedType,
    StreamState,
    Table,
)
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.limits import (
    MAX_PAGE_RECORDS,
    DeadlineExceeded,
    LimitExceeded,
    check_json,
    seconds_left,
    shut_at_deadline,
)
from datasources.models.common import MASK
from datasources.models.connection import ApiConfig, ApiResource, reveal
from datasources.netguard import resolve_host

logger = logging.getLogger(__name__)

TOKEN_VERSION = 1
MAX_REDIRECTS = 5
MAX_ATTEMPTS = 8  # per request, whatever the wait budget
MAX_TRANSPORT_ATTEMPTS = 3  # a timeout or refused connection is retried twice at most
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
DISCOVER_RETRY_BUDGET_SECONDS = 10.0
MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_LIMIT = 100
USER_AGENT = "datasources-api/0.1 (+api connector)"

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_RECORD_KEYS = ("data", "results", "items", "records", "entries", "rows", "objects", "values")
_NEXT_URL_PATHS = (
    "next",
    "next_url",
    "nextUrl",
    "next_page_url",
    "nextPageUrl",
    "next_link",
    "nextLink",
    "@odata.nextLink",
    "links.next",
    "links.next.href",
    "_links.next",
    "_links.next.href",
    "paging.next",
    "pagination.next",
    "pagination.next_url",
    "meta.next",
    "meta.next_url",
    "meta.pagination.next",
)
_CURSOR_PATHS = (
    "next_cursor",
    "nextCursor",
    "next_page_token",
    "nextPageToken",
    "cursor",
    "next",
    "meta.next_cursor",
    "meta.nextCursor",
    "meta.cursor",
    "pagination.next_cursor",
    "pagination.cursor",
    "response_metadata.next_cursor",
    "paging.cursors.after",
)
# Update-timestamp names, best first; compared without case and underscores.
_CURSOR_NAMES = (
    "updatedat",
    "modifiedat",
    "lastmodified",
    "lastmodifiedat",
    "lastupdated",
    "lastupdatedat",
    "datemodified",
    "dateupdated",
    "updatedtime",
    "modifiedtime",
    "changedat",
    "updated",
    "modified",
)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)

_ARROW_TYPES: dict[str, Any] = {
    "string": pa.string(),
    "json": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp_tz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
}


class _Failure(Exception):
    """A request or body problem; the public methods turn it into the domain error."""

    def __init__(self, message: str, *, stage: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.status = status


# ---------------------------------------------------------------- transport


class _GuardedBackend(httpcore.SyncBackend):
    """Opens every TCP connection to the address the SSRF guard approved, and ends it at
    the context's deadline (per-read timeouts alone let a trickling server go on)."""

    def __init__(self, context: ConnectorContext) -> None:
        self._settings = context.settings
        self._deadline = context.deadline
        self._watchdogs: list[threading.Timer] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        # Raises ConnectionFailed(stage="dns"|"policy") before any socket exists.
        resolved = resolve_host(
            host,
            port,
            local_mode=self._settings.local_mode,
            allowed_cidrs=self._settings.allowed_cidrs,
        )
        if self._deadline is not None:
            left = max(0.001, self._deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        stream = super().connect_tcp(
            resolved.address,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        watchdog = shut_at_deadline(stream.get_extra_info("socket"), self._deadline)
        if watchdog is not None:
            self._watchdogs.append(watchdog)
        return stream

    def close(self) -> None:
        """Stop the watchdogs of this backend's connections."""
        for watchdog in self._watchdogs:
            watchdog.cancel()
        self._watchdogs.clear()


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport with the pool's network backend replaced by the guarded one.

    httpx (pinned) does not expose `network_backend`, so the pool is rebuilt here with the
    same settings httpx would use; the request/response mapping stays httpx's own.
    """

    def __init__(self, context: ConnectorContext, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool.close()
        self.backend = _GuardedBackend(context)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=self.backend,
        )

    def close(self) -> None:
        super().close()
        self.backend.close()


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL  # final URL, after same-host redirects (may hold a query api key)
    links: dict[str | None, dict[str, str]]
    latency_ms: float


# ---------------------------------------------------------------- run state


@dataclass
class _Run:
    """What one read (or one discover sample) knows besides the position."""

    resource: ApiResource
    cursor_field: str | None = None  # the configured one, else the engine's choice
    client_filter: bool = False  # no request parameter: drop old records here
    mode: str | None = None  # resolved kind for `auto`: link_header, next_url or none
    next_path: str | None = None  # where the next URL or cursor was found
    records_key: str | None = None  # auto-detected records key
    since: Any = None
    max_cursor: Any = None
    columns: dict[str, str] | None = None
    pages: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, resource: ApiResource, state: StreamState | None) -> _Run:
        token = (state.resume_token if state else None) or {}
        incremental = resource.incremental
        run = cls(resource=resource)
        if incremental is not None:
            run.cursor_field = incremental.cursor_field
        elif state is not None and state.cursor_field:
            run.cursor_field = state.cursor_field
            run.client_filter = True
        if token.get("v") == TOKEN_VERSION:
            run.mode = token.get("mode")
            run.next_path = token.get("next_path")
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
            "mode": self.mode,
            "next_path": self.next_path,
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
    body: Any


# ---------------------------------------------------------------- connector


class ApiConnector:
    """Connector for HTTP JSON APIs (see the module docstring for the behaviour)."""

    def __init__(
        self,
        config: ApiConfig,
        context: ConnectorContext,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._context = context
        self._sleep = sleep  # injected by tests so backoff does not really wait
        self._random = rng or random.Random()
        base = urlsplit(config.base_url)
        if base.scheme != "https" and not context.settings.local_mode:
            raise ValidationFailed(
                "base_url must use https (plain http is only allowed in local mode)"
            )
        try:
            self._base = httpx.URL(config.base_url)
        except httpx.InvalidURL:
            # e.g. an octal IPv4 host (0177.0.0.1), which httpx refuses to parse.
            raise ValidationFailed("base_url is not a valid URL") from None
        self._query_key: tuple[str, str] | None = None
        self._secrets: list[str] = []
        headers = self._auth_headers()
        timeout = config.timeout_seconds
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        # A body gets a generous wall-clock cap on top of the per-read timeout, because a
        # server can keep a read timeout from firing by trickling one byte at a time.
        self._body_seconds = max(4 * timeout, 30.0)
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
        self._deadline = context.deadline
        self._client = httpx.Client(
            transport=_GuardedTransport(context, limits),
            headers=headers,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
        )

    # ------------------------------------------------------------ protocol

    def check(self) -> CheckResult:
        """One authenticated request to `health_path` or the first resource's first page."""
        resource = None if self._config.health_path else self._resources()[0]
        started = time.perf_counter()
        try:
            if resource is None:
                url = self._join(self._config.health_path or "")
                response = self._get(url, {}, retry_budget=None)
            else:
                run = _Run.start(resource, None)
                url, params = self._page_request(run, _first_pos(resource))
                response = self._get(url, params, retry_budget=None)
                # A resource must answer JSON with records where the config says: an HTML
                # login page with HTTP 200 is not a working connection, whatever its status.
                self._records(run, self._json(response), response)
        except _Failure as failure:
            raise self._connection_failed(failure) from None
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return CheckResult(
            reachable=True,
            latency_ms=latency_ms,
            details={
                "status_code": response.status,
                "url": self._safe_url(response.url),
                "content_type": response.headers.get("content-type", ""),
                "request_latency_ms": response.latency_ms,
            },
        )

    def discover(self) -> list[Table]:
        """Sample the first page of each resource and infer its columns."""
        tables = []
        for resource in self._resources():
            run = _Run.start(resource, None)
            try:
                page = self._fetch_page(
                    run, _first_pos(resource), retry_budget=self._discover_budget()
                )
            except _Failure as failure:
                failure.message = f"resource '{resource.name}': {failure.message}"
                raise self._connection_failed(failure) from None
            columns = _infer_columns(page.records)
            tables.append(
                Table(
                    name=resource.name,
                    columns=columns,
                    primary_key=_primary_key(resource, page.records),
                    cursor_candidates=_cursor_candidates(resource, columns),
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
        pos: dict[str, Any] = dict(token.get("pos") or _first_pos(resource))
        skip = int(token.get("skip") or 0)
        try:
            yield from self._read_pages(run, pos, skip, batch_size)
        except _Failure as failure:
            raise SourceReadError(
                self._redact(f"reading '{stream}' failed: {failure.message}"),
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
        kind = run.resource.pagination.kind
        seen: set[str] = {json.dumps(pos, sort_keys=True)}
        previous: tuple[Any, ...] | None = None
        buffer: list[dict[str, Any]] = []
        while True:
            page = self._fetch_page(run, pos, retry_budget=self._config.max_retry_wait_seconds)
            records = page.records
            if run.columns is None and records:
                # The run's schema comes from its first page, as discover's does; the
                # token carries it so continuations in other invocations keep it.
                run.columns = {c.name: c.type for c in _infer_columns(records)}
            if kind in ("page", "offset") and records:
                fingerprint = (len(records), _dumps(records[0]), _dumps(records[-1]))
                if fingerprint == previous:
                    raise _Failure(
                        f"the API returned the same records for {_describe(pos)} as for the "
                        "page before, so it ignores the pagination parameters; stopping "
                        "instead of syncing forever (check pagination.page_param / "
                        "offset_param)",
                        stage="read",
                    )
                previous = fingerprint
            next_pos = page.next_pos
            if next_pos is not None and kind not in ("page", "offset"):
                key = json.dumps(next_pos, sort_keys=True)
                if key in seen:
                    raise _Failure(
                        f"the API returned a next {_describe(next_pos)} it had already "
                        "returned in this run; stopping instead of looping forever",
                        stage="read",
                    )
                seen.add(key)
            if run.client_filter and run.since is not None and run.cursor_field:
                # Deterministic for the run (`since` is fixed in the token), so `skip`
                # counts the same filtered list when a continuation re-fetches the page.
                floor = _cursor_key(run.since)
                records = [
                    r
                    for r in records
                    if (value := _lookup(r, run.cursor_field)) is not None
                    and _cursor_key(value) >= floor
                ]
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
        notes = run.notes + _widen(run, records)
        run.notes = []
        table = _to_arrow(run.columns or {}, records)
        cursor_state = None
        if run.cursor_field is not None:
            for record in records:
                value = _lookup(record, run.cursor_field)
                if value is not None and (
                    run.max_cursor is None or _cursor_key(value) > _cursor_key(run.max_cursor)
                ):
                    run.max_cursor = value
            value = run.max_cursor if run.max_cursor is not None else run.since
            cursor_state = {"value": value} if value is not None else None
        return Batch(
            records=table if table is not None else list(records),
            resume_token=run.token(pos, skip),
            cursor_state=cursor_state,
            notes=notes,
        )

    def _fetch_page(self, run: _Run, pos: dict[str, Any], *, retry_budget: float) -> _Page:
        pagination = run.resource.pagination
        if run.pages >= pagination.max_pages:
            raise _Failure(
                f"stopped after {pagination.max_pages} pages (pagination.max_pages) while the "
                "API still announced another page; raise max_pages if the resource is "
                "really that large",
                stage="read",
            )
        url, params = self._page_request(run, pos)
        response = self._get(url, params, retry_budget=retry_budget)
        run.pages += 1
        body = self._json(response)
        records = self._records(run, body, response)
        return _Page(
            records=records, next_pos=self._next_pos(run, pos, body, records, response), body=body
        )

    def _page_request(self, run: _Run, pos: dict[str, Any]) -> tuple[httpx.URL, dict[str, Any]]:
        if "url" in pos:
            return httpx.URL(pos["url"]), {}
        resource = run.resource
        pagination = resource.pagination
        params: dict[str, Any] = {}
        for name, value in resource.params.items():
            if isinstance(value, SecretStr):  # the model wraps credential-looking params
                value = value.get_secret_value()
                self._remember_secret(value)
            params[name] = value
        if resource.incremental is not None and run.since is not None:
            params[resource.incremental.param] = run.since
        if pagination.size_param and pagination.page_size:
            params[pagination.size_param] = pagination.page_size
        if pagination.kind == "page":
            params[pagination.page_param] = pos.get("page", pagination.start_page)
        elif pagination.kind == "offset":
            params[pagination.offset_param] = pos.get("offset", 0)
            params[pagination.limit_param] = pagination.page_size or DEFAULT_LIMIT
        elif pagination.kind == "cursor" and pos.get("cursor") is not None:
            params[pagination.cursor_param] = pos["cursor"]
        return self._resource_url(resource), params

    def _next_pos(
        self,
        run: _Run,
        pos: dict[str, Any],
        body: Any,
        records: list[dict[str, Any]],
        response: _Response,
    ) -> dict[str, Any] | None:
        pagination = run.resource.pagination
        kind = pagination.kind
        if kind == "none":
            return None
        if kind == "page":
            return {"page": pos.get("page", pagination.start_page) + 1} if records else None
        if kind == "offset":
            return {"offset": pos.get("offset", 0) + len(records)} if records else None
        if kind == "cursor":
            if isinstance(body, dict) and body.get("has_more") is False:
                return None
            paths = (pagination.cursor_path,) if pagination.cursor_path else _CURSOR_PATHS
            for path in paths:
                token = _lookup(body, path)
                if isinstance(token, (str, int)) and not isinstance(token, bool):
                    return {"cursor": token} if token != "" else None
            return None
        if kind == "link_header":
            return self._link_next(response)
        if kind == "next_url":
            return self._body_next(run, body, response, pagination.next_url_path)
        # auto: the first page decides, and the token keeps the decision.
        if run.mode is None:
            if "next" in response.links:
                run.mode = "link_header"
            else:
                found = _find_next_url(body)
                run.mode = "next_url" if found else "none"
                run.next_path = found
        if run.mode == "link_header":
            return self._link_next(response)
        if run.mode == "next_url":
            return self._body_next(run, body, response, run.next_path)
        return None

    def _link_next(self, response: _Response) -> dict[str, Any] | None:
        target = response.links.get("next", {}).get("url")
        return {"url": self._follow_url(response.url, target)} if target else None

    def _body_next(
        self, run: _Run, body: Any, response: _Response, path: str | None
    ) -> dict[str, Any] | None:
        if path is None:
            path = _find_next_url(body)
            run.next_path = path
        value = _lookup(body, path) if path else None
        if isinstance(value, dict):
            value = value.get("href")
        if not isinstance(value, str) or not value:
            return None
        return {"url": self._follow_url(response.url, value)}

    def _follow_url(self, current: httpx.URL, target: str) -> str:
        joined = current.join(target)
        if not self._same_origin(self._base, joined):
            raise _Failure(
                f"the API's next-page link points to another host ({joined.host}); it is "
                f"not followed, so credentials stay with {self._base.host}",
                stage="read",
            )
        return self._safe_url(joined)

    def _records(self, run: _Run, body: Any, response: _Response) -> list[dict[str, Any]]:
        path = run.resource.records_path
        where = self._safe_url(response.url)
        if path in (".", "$"):
            value = body
        elif path:
            value = _lookup(body, path, missing=_MISSING)
            if value is _MISSING:
                raise _Failure(
                    f"records_path '{path}' was not found in the response from {where} "
                    f"({_shape(body)})",
                    stage="read",
                )
        elif isinstance(body, list):
            value = body
        elif isinstance(body, dict):
            if run.records_key is None:
                run.records_key = _detect_records_key(body, run.resource.name, where)
            if run.records_key not in body:
                raise _Failure(
                    f"the response from {where} has no '{run.records_key}' list as the "
                    f"first page had ({_shape(body)}); set records_path",
                    stage="read",
                )
            value = body[run.records_key]
        else:
            raise _Failure(
                f"the response from {where} is a JSON {_json_type(body)}, not a list of "
                "records or an object holding one",
                stage="read",
            )
        if value is None:
            return []
        if not isinstance(value, list):
            raise _Failure(
                f"records_path '{path or run.records_key}' in the response from {where} holds "
                f"a JSON {_json_type(value)}, not a list of records",
                stage="read",
            )
        if len(value) > MAX_PAGE_RECORDS:
            raise _Failure(
                f"the response from {where} holds {len(value)} records, over "
                f"{MAX_PAGE_RECORDS} (limit: records per page); use a smaller page size",
                stage="read",
            )
        return [item if isinstance(item, dict) else {"value": item} for item in value]

    # ------------------------------------------------------------ HTTP

    def _get(
        self, url: httpx.URL, params: dict[str, Any], *, retry_budget: float | None
    ) -> _Response:
        """GET with manual redirects and, when `retry_budget` is set, backoff retries."""
        waited = 0.0
        attempt = 0
        transport_failures = 0
        while True:
            response: _Response | None = None
            try:
                response = self._send(url, params)
            except _Failure as failure:
                transient = failure.stage in ("timeout", "tcp", "transport")
                transport_failures += 1
                if (
                    retry_budget is None
                    or not transient
                    or transport_failures >= MAX_TRANSPORT_ATTEMPTS
                ):
                    raise
                last: _Failure = failure
            else:
                if 200 <= response.status < 300:
                    return response
                last = self._status_failure(response)
                if retry_budget is None or not _retryable(response.status):
                    raise last
            delay, told = self._retry_delay(response, attempt)
            if self._deadline is not None and time.monotonic() + delay >= self._deadline:
                last.message += " (no time left in this request to retry)"
                raise last
            if attempt + 1 >= MAX_ATTEMPTS or waited + delay > retry_budget:
                if told and attempt + 1 < MAX_ATTEMPTS:
                    last.message += (
                        f"; the API asked to retry after {delay:.0f} s, beyond the retry "
                        f"budget (max_retry_wait_seconds={retry_budget:g})"
                    )
                else:
                    last.message += (
                        f" (gave up after {attempt + 1} attempts, {waited:.1f} s of waiting)"
                    )
                raise last
            logger.info(
                "api request retry",
                extra={
                    "url": self._safe_url(url),
                    "status": response.status if response else last.stage,
                    "delay_s": round(delay, 3),
                    "attempt": attempt + 1,
                },
            )
            self._sleep(delay)
            waited += delay
            attempt += 1

    def _send(self, url: httpx.URL, params: dict[str, Any]) -> _Response:
        """One logical GET: the request plus up to MAX_REDIRECTS same-host redirects."""
        current = url.copy_merge_params(params) if params else url
        for _ in range(MAX_REDIRECTS + 1):
            if current.scheme != "https" and not (
                current.scheme == "http" and self._context.settings.local_mode
            ):
                raise _Failure(
                    f"refusing a {current.scheme or 'scheme-less'} URL: only https is allowed",
                    stage="config",
                )
            target = self._with_auth(current)
            started = time.perf_counter()
            timeout = self._request_timeout(current)
            try:
                with self._client.stream("GET", target, timeout=timeout) as raw:
                    body = self._read_body(raw, current)
                    status, headers, links = raw.status_code, raw.headers, raw.links
            except ConnectionFailed as exc:  # the SSRF guard or DNS, from _GuardedBackend
                raise _Failure(exc.message, stage=exc.stage) from None
            except httpx.HTTPError as exc:
                if self._deadline is None or time.monotonic() < self._deadline:
                    raise self._transport_failure(exc, current) from None
                # The watchdog ended the connection at the deadline, whatever broke.
                raise self._deadline_failure(current) from None
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            logger.debug(
                "api request",
                extra={"url": self._safe_url(current), "status": status, "ms": latency_ms},
            )
            if status in _REDIRECT_STATUSES and headers.get("location"):
                current = self._redirect_target(current, headers["location"])
                continue
            return _Response(status, headers, body, current, links, latency_ms)
        raise _Failure(
            f"the API redirected more than {MAX_REDIRECTS} times ({self._safe_url(url)})",
            stage="http",
        )

    def _request_timeout(self, url: httpx.URL) -> httpx.Timeout:
        """The configured timeouts, each cut to the time left before the deadline."""
        try:
            left = seconds_left(self._deadline, f"GET {self._safe_url(url)}")
        except DeadlineExceeded:
            raise self._deadline_failure(url) from None
        if left is None:
            return self._timeout
        seconds = self._config.timeout_seconds
        return httpx.Timeout(min(seconds, left), connect=min(seconds, 10.0, left))

    def _deadline_failure(self, url: httpx.URL) -> _Failure:
        return _Failure(
            f"the API did not answer before this function's time ran out "
            f"({self._safe_url(url)}; limit: the function's remaining time less a margin)",
            stage="timeout",
        )

    def _transport_failure(self, exc: httpx.HTTPError, current: httpx.URL) -> _Failure:
        if isinstance(exc, httpx.TimeoutException):
            return _Failure(
                f"the API did not answer within {self._config.timeout_seconds:g} s "
                f"({self._safe_url(current)})",
                stage="timeout",
            )
        if isinstance(exc, httpx.ConnectError):
            if _is_tls_error(exc):
                return _Failure(
                    f"TLS handshake with {current.host} failed: {_tls_reason(exc)}",
                    stage="tls",
                )
            return _Failure(
                f"could not connect to {current.host} port {_port(current)}: "
                "connection refused or unreachable",
                stage="tcp",
            )
        return _Failure(
            f"the connection to {current.host} failed during the request ({type(exc).__name__})",
            stage="transport",
        )

    def _read_body(self, raw: httpx.Response, url: httpx.URL) -> bytes:
        deadline = time.monotonic() + self._body_seconds
        chunks: list[bytes] = []
        size = 0
        for chunk in raw.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Failure(
                    f"the response from {self._safe_url(url)} is larger than "
                    f"{MAX_BODY_BYTES // (1024 * 1024)} MB; use a smaller page size",
                    stage="read",
                )
            if time.monotonic() > deadline:
                raise _Failure(
                    f"the response from {self._safe_url(url)} took longer than "
                    f"{self._body_seconds:g} s to arrive",
                    stage="timeout",
                )
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise self._deadline_failure(url)
            chunks.append(chunk)
        return b"".join(chunks)

    def _redirect_target(self, current: httpx.URL, location: str) -> httpx.URL:
        target = current.join(location)
        upgrade = current.scheme == "http" and target.scheme == "https"
        same_port = _port(current) == _port(target) or (upgrade and _port(target) == 443)
        if target.host != current.host or not same_port:
            raise _Failure(
                f"the API redirected to another host ({target.host}:{_port(target)}); "
                "redirects are only followed on the same host, so credentials are never "
                "sent elsewhere",
                stage="http",
            )
        if current.scheme == "https" and target.scheme != "https":
            raise _Failure("the API redirected from https to plain http; refused", stage="http")
        return target

    def _status_failure(self, response: _Response) -> _Failure:
        status = response.status
        where = self._safe_url(response.url)
        if status in (401, 403):
            return _Failure(
                f"authentication rejected by the API (HTTP {status})", stage="auth", status=status
            )
        hint = _upstream_hint(response.body)
        if status == 404:
            message = f"the API answered HTTP 404 (not found) for {where}: check base_url and path"
        elif status == 429:
            message = f"the API is rate limiting requests (HTTP 429) at {where}"
        elif 300 <= status < 400:
            message = f"the API answered HTTP {status} without a usable redirect at {where}"
        else:
            message = f"the API answered HTTP {status} for {where}"
        return _Failure(message + (f": {hint}" if hint else ""), stage="http", status=status)

    def _retry_delay(self, response: _Response | None, attempt: int) -> tuple[float, bool]:
        """(seconds to wait, whether the API said so with Retry-After)."""
        if response is not None:
            told = _parse_retry_after(response.headers.get("retry-after"))
            if told is not None:
                return told, True
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
        # Equal jitter: never less than half the exponential step, so retries still back off.
        return ceiling / 2 + self._random.uniform(0, ceiling / 2), False

    def _json(self, response: _Response) -> Any:
        content_type = response.headers.get("content-type", "")
        where = self._safe_url(response.url)
        head = response.body[:512].lstrip().lower()
        if "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html")):
            raise _Failure(
                f"the API answered with an HTML page, not JSON (HTTP {response.status}, "
                f"content-type '{content_type}') at {where}: check base_url and path",
                stage="read",
            )
        try:
            # Before Python builds anything: bounded nesting and number of values.
            check_json(response.body, f"the response from {where}")
        except LimitExceeded as exc:
            raise _Failure(str(exc), stage="read") from None
        try:
            return json.loads(response.body)
        except ValueError:
            raise _Failure(
                f"the response from {where} is not valid JSON (HTTP {response.status}, "
                f"content-type '{content_type}', {len(response.body)} bytes)",
                stage="read",
            ) from None

    # ------------------------------------------------------------ config helpers

    def _auth_headers(self) -> dict[str, str]:
        config = self._config
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        for name, value in config.headers.items():
            if name.lower() in _RESERVED_HEADERS:
                continue  # httpx sets these from the URL and body; a user value would lie
            plain = reveal(value) or ""
            headers[name] = plain
            if isinstance(value, SecretStr):  # the model wraps secret-looking headers
                self._remember_secret(plain)
        if config.basic_auth is not None:
            password = reveal(config.basic_auth.password) or ""
            pair = f"{config.basic_auth.username}:{password}".encode()
            encoded = base64.b64encode(pair).decode("ascii")
            headers["Authorization"] = f"Basic {encoded}"
            self._remember_secret(password)
            self._remember_secret(encoded)
        if config.bearer_token is not None:
            token = reveal(config.bearer_token) or ""
            headers["Authorization"] = f"Bearer {token}"
            self._remember_secret(token)
        if config.api_key is not None:
            key = reveal(config.api_key) or ""
            self._remember_secret(key)
            name = config.effective_api_key_name
            if config.api_key_in == "bearer":
                headers[name] = f"Bearer {key}"
            elif config.api_key_in == "header":
                headers[name] = key
            else:
                self._query_key = (name, key)
        return headers

    def _remember_secret(self, value: str) -> None:
        # Very short values would mask unrelated text; they are not real secrets anyway.
        if len(value) >= 4:
            for variant in (value, quote(value, safe=""), quote(value)):
                if variant not in self._secrets:
                    self._secrets.append(variant)
        self._secrets.sort(key=len, reverse=True)

    def _with_auth(self, url: httpx.URL) -> httpx.URL:
        if self._query_key is None:
            return url
        name, key = self._query_key
        return url.copy_set_param(name, key)

    def _safe_url(self, url: httpx.URL | str) -> str:
        """The URL without userinfo or the api key parameter: fit for tokens and messages."""
        parsed = httpx.URL(url) if isinstance(url, str) else url
        parsed = parsed.copy_with(username=None, password=None)
        if self._query_key is not None:
            parsed = parsed.copy_remove_param(self._query_key[0])
        return self._redact(str(parsed))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def _connection_failed(self, failure: _Failure) -> ConnectionFailed:
        details = {"status_code": failure.status} if failure.status is not None else None
        return ConnectionFailed(self._redact(failure.message), stage=failure.stage, details=details)

    def _discover_budget(self) -> float:
        return min(self._config.max_retry_wait_seconds, DISCOVER_RETRY_BUDGET_SECONDS)

    def _resources(self) -> list[ApiResource]:
        if self._config.resources:
            return list(self._config.resources)
        return [ApiResource(name=_default_name(self._config.base_url))]

    def _resource(self, stream: str) -> ApiResource:
        for resource in self._resources():
            if resource.name == stream:
                return resource
        raise SourceReadError(f"this API source has no resource named '{stream}'")

    def _resource_url(self, resource: ApiResource) -> httpx.URL:
        path = resource.path
        if path.startswith(("http://", "https://")):
            url = httpx.URL(path)
            if not self._same_origin(self._base, url):
                raise _Failure(
                    f"resource '{resource.name}' points to another host than base_url",
                    stage="config",
                )
            return url
        return self._join(path)

    def _join(self, path: str) -> httpx.URL:
        if not path:
            return self._base
        base = urlsplit(self._config.base_url)
        extra = urlsplit(path)
        joined = base.path.rstrip("/") + "/" + extra.path.lstrip("/")
        query = "&".join(part for part in (base.query, extra.query) if part)
        return httpx.URL(urlunsplit((base.scheme, base.netloc, joined, query, "")))

    @staticmethod
    def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
        return a.scheme == b.scheme and a.host == b.host and _port(a) == _port(b)


# ---------------------------------------------------------------- helpers


class _Missing:
    pass


_MISSING: Any = _Missing()


def _first_pos(resource: ApiResource) -> dict[str, Any]:
    pagination = resource.pagination
    if pagination.kind == "page":
        return {"page": pagination.start_page}
    if pagination.kind == "offset":
        return {"offset": 0}
    return {}


def _lookup(body: Any, path: str, missing: Any = None) -> Any:
    """The value at a dotted path (`a.b.0.c`), or `missing`."""
    if isinstance(body, dict) and path in body:
        return body[path]  # keys such as "@odata.nextLink" contain a dot
    value = body
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return missing
    return value


def _find_next_url(body: Any) -> str | None:
    """The path of an obvious next-page URL in the body, or None."""
    if not isinstance(body, dict):
        return None
    for path in _NEXT_URL_PATHS:
        value = _lookup(body, path)
        if isinstance(value, dict):
            value = value.get("href")
        if isinstance(value, str) and _looks_like_url(value):
            return path
    return None


def _looks_like_url(value: str) -> bool:
    return value.startswith(("https://", "http://", "/", "?"))


def _detect_records_key(body: dict[str, Any], resource_name: str, where: str) -> str:
    lists = [key for key, value in body.items() if isinstance(value, list)]
    for key in (*_RECORD_KEYS, resource_name):
        if key in lists:
            return key
    if len(lists) == 1:
        return lists[0]
    if not lists:
        # An empty first page often says `"data": null`; take the usual key if present.
        for key in _RECORD_KEYS:
            if key in body and body[key] is None:
                return key
        raise _Failure(
            f"could not find a list of records in the response from {where} "
            f"({_shape(body)}); set records_path",
            stage="read",
        )
    raise _Failure(
        f"the response from {where} has several lists ({', '.join(lists[:10])}); set "
        "records_path to the one that holds the records",
        stage="read",
    )


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        keys = ", ".join(list(body)[:15])
        return f"top-level keys: {keys}" if keys else "an empty object"
    return f"a JSON {_json_type(body)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(pos: dict[str, Any]) -> str:
    if "page" in pos:
        return f"page {pos['page']}"
    if "offset" in pos:
        return f"offset {pos['offset']}"
    if "cursor" in pos:
        return "cursor"
    if "url" in pos:
        return f"page URL ({pos['url']})"
    return "first page"


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _default_name(base_url: str) -> str:
    segments = [s for s in urlsplit(base_url).path.split("/") if s]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", segments[-1])[:128] if segments else ""
    return name or "records"


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _retryable(status: int) -> bool:
    return status == 429 or 500 <= status < 600


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _upstream_hint(body: bytes) -> str | None:
    """A short message from a JSON error body (`error`, `message`, `detail`), if any."""
    head = body[:65536]
    try:
        check_json(head, "the error body")  # a hint is not worth a deep parse
        parsed = json.loads(head)
    except ValueError:  # LimitExceeded too
        return None
    if isinstance(parsed, dict):
        for key in ("message", "error_description", "error", "detail", "title"):
            value = parsed.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return None


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tls_reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verification failed ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return str(seen.reason or "protocol error").replace("_", " ").lower()
        seen = seen.__cause__ or seen.__context__
    return "handshake failed"


# ---------------------------------------------------------------- types


def _string_kind(value: str) -> str:
    if _DATE_RE.match(value):
        return "date" if _parse_date(value) is not None else "string"
    match = _TIMESTAMP_RE.match(value)
    if match and _parse_timestamp(value) is not None:
        return "timestamp_tz" if match.group(4) else "timestamp"
    return "string"


def _value_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(2**63) <= value < 2**63 else "string"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return _string_kind(value)
    return "json"


def _merge_kinds(kinds: set[str]) -> str:
    if not kinds:
        return "string"
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"integer", "number"}:
        return "number"
    return "string"


_NATIVE = {
    "boolean": "boolean",
    "integer": "integer",
    "number": "number",
    "string": "string",
    "timestamp_tz": "string(date-time)",
    "timestamp": "string(date-time)",
    "date": "string(date)",
}


def _infer_columns(records: list[dict[str, Any]]) -> list[Column]:
    """Columns over the union of the records' keys, in first-seen order."""
    kinds: dict[str, set[str]] = {}
    natives: dict[str, set[str]] = {}
    for record in records:
        for key, value in record.items():
            kind = _value_kind(value)
            kinds.setdefault(key, set())
            natives.setdefault(key, set())
            if kind is not None:
                kinds[key].add(kind)
                natives[key].add(_NATIVE.get(kind) or _json_type(value))
    columns = []
    for key, found in kinds.items():
        merged: NormalizedType = _merge_kinds(found)  # type: ignore[assignment]
        native = "|".join(sorted(natives[key])) or "null"
        # API fields are never guaranteed present: every column is nullable.
        columns.append(Column(name=key, type=merged, native_type=native, nullable=True))
    return columns


def _primary_key(resource: ApiResource, records: list[dict[str, Any]]) -> list[str]:
    if resource.primary_key:
        return list(resource.primary_key)
    # `id`, present and unique over the whole sample, is the primary key of nearly every API.
    ids = [record.get("id") for record in records]
    hashable = [v for v in ids if isinstance(v, str | int) and not isinstance(v, bool)]
    if records and len(hashable) == len(ids) and len(set(hashable)) == len(ids):
        return ["id"]
    return []


def _cursor_candidates(resource: ApiResource, columns: list[Column]) -> list[str]:
    if resource.incremental is not None:
        return [resource.incremental.cursor_field]
    usable = {c.name: c for c in columns if c.type not in ("json", "boolean")}
    by_norm = {name.replace("_", "").replace("-", "").lower(): name for name in usable}
    return [by_norm[norm] for norm in _CURSOR_NAMES if norm in by_norm]


def _cursor_key(value: Any) -> tuple[int, Any]:
    """An order over cursor values: numbers, then timestamps, then other strings."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, str):
        parsed = _parse_timestamp(value) if _TIMESTAMP_RE.match(value) else None
        if parsed is None and _DATE_RE.match(value):
            day = _parse_date(value)
            parsed = datetime(day.year, day.month, day.day) if day else None
        if parsed is not None:
            aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            return (1, aware.timestamp())
        return (2, value)
    return (3, _dumps(value))


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _parse_timestamp(value: str) -> datetime | None:
    match = _TIMESTAMP_RE.match(value)
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    text = f"{day}T{clock}"
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")
    if zone:
        text += "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _fits(kind: str, value: Any) -> bool:
    if value is None or kind in ("string", "json"):
        return True
    found = _value_kind(value)
    if kind == "number":
        return found in ("integer", "number")
    return found == kind


def _widen(run: _Run, records: list[dict[str, Any]]) -> list[str]:
    """Make the run's columns hold every value of `records`; say what changed."""
    columns = run.columns if run.columns is not None else {}
    run.columns = columns
    notes: list[str] = []
    new_keys: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.items():
            kind = columns.get(key)
            if kind is None:
                new_keys.setdefault(key, []).append(value)
            elif not _fits(kind, value):
                wider = "number" if kind == "integer" and _fits("number", value) else "string"
                columns[key] = wider
                notes.append(f"column '{key}' widened from {kind} to {wider}")
    for key, values in new_keys.items():
        kinds = {k for k in (_value_kind(v) for v in values) if k is not None}
        columns[key] = _merge_kinds(kinds)
        notes.append(f"new column '{key}' ({columns[key]})")
    return notes


def _convert(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else _dumps(value)
    if kind == "json":
        return _dumps(value)
    if kind == "number":
        return float(value)
    if kind == "timestamp_tz":
        parsed = _parse_timestamp(value)
        return parsed.astimezone(UTC) if parsed else None
    if kind == "timestamp":
        return _parse_timestamp(value)
    if kind == "date":
        return _parse_date(value)
    return value


def _to_arrow(columns: dict[str, str], records: list[dict[str, Any]]) -> Any:
    """A pyarrow Table with one typed column per known key, or None without columns."""
    if not columns:
        return None
    arrays = []
    fields = []
    for name, kind in columns.items():
        values = [_convert(kind, record.get(name)) for record in records]
        arrow_type = _ARROW_TYPES[kind]
        arrays.append(pa.array(values, type=arrow_type))
        fields.append(pa.field(name, arrow_type, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
