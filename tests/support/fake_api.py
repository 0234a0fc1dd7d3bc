"""A small JSON API on 127.0.0.1 (ephemeral port) for connector and end-to-end tests.

    api = FakeApi(records=3000).start()
    api.url                     # "http://127.0.0.1:<port>"
    ...
    api.stop()                  # or: with FakeApi() as api: ...

Routes (all require auth unless `require_auth=False`: `Authorization: Bearer <key>`,
`X-API-Key: <key>`, `?api_key=<key>` or basic auth `user:password`):

- `/items/page?page=&per_page=`    -> `{"data": [...], "page": n, "total": N}`
- `/items/offset?offset=&limit=`   -> `{"results": [...], "total": N}`
- `/items/cursor?cursor=&limit=`   -> `{"items": [...], "meta": {"next_cursor": t | null}}`
- `/items/link?page=&per_page=`    -> a JSON list, `Link: <...>; rel="next"` (absolute URL
  echoing every query parameter, the api key included, as real APIs do)
- `/items/next?after=&limit=`      -> `{"records": [...], "links": {"next": "/items/next?..."}}`
- `/items/all`                      -> every record as one JSON list
- `/orders?page=&per_page=`         -> like `/items/link` (a "minimal config" endpoint)
- `/health`                         -> `{"ok": true}`
- `/slow?seconds=`                  -> waits, then `{"data": []}` (released by `stop()`)
- `/html`, `/notjson`, `/object`, `/scalar`, `/nested`  -> bad or odd bodies
- `/redirect?to=<url>`              -> 302 to `to`
- `/loop/cursor`, `/loop/link`, `/loop/page`, `/loop/next` -> pagination that never ends
- `/drift?page=`                    -> 3 Link-paged pages whose field types change

Pagination styles that announce no next page (auto-detection, issue 13):

- `/styles/json-server?_page=&_limit=` (or `_start=&_limit=`) -> a JSON list and
  `X-Total-Count: N`, like json-server
- `/styles/pages?page=&per_page=`  -> `{"items": [...], "page": n, "per_page": s,
  "total_pages": T}` (25 a page by default)
- `/styles/offset-meta?offset=&limit=` -> `{"data": [...], "meta": {"pagination":
  {"offset": o, "limit": l, "total": N}}}`
- `/styles/content-range?offset=&limit=` -> a JSON list and `Content-Range: items a-b/N`
- `/styles/total-only`             -> the first 100 records and `X-Total-Count: N`; no
  parameter pages it (a server that signals a total but offers no paging)
- `/styles/body-total`             -> `{"data": [first 100], "total": N}`, no paging
- `/money?page=`                    -> `{"data": [...]}` with decimal amounts kept as
  written (`money_pages` sets the raw JSON text of each page)

Every list route filters on `updated_since` (inclusive) or `updated_after` (exclusive)
against `updated_at`. `inject(...)` makes the next requests fail (429 with Retry-After,
500, ...). `touch(...)`/`add_records(...)` change records for incremental tests.
`requests` logs every request; `connections` counts accepted TCP connections.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

DEFAULT_API_KEY = "sk_test_4f1c9b2e7a6d5c3b"
DEFAULT_BASIC = ("api-user", "b4sic-p4ssw0rd")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_target: str


@dataclass
class _Fault:
    status: int
    remaining: int
    path_prefix: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


# The normalized column types discovery should infer from the served records.
RECORD_TYPES = {
    "id": "integer",
    "name": "string",
    "price": "decimal",  # 1.25, 2.5, ...: decimal literals land exactly
    "active": "boolean",
    "created_at": "timestamp_tz",
    "updated_at": "timestamp_tz",
    "ship_date": "date",
    "tags": "json",
    "meta": "json",
    "note": "string",
}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_record(i: int) -> dict[str, Any]:
    """Record `i` (1-based): scalars, an ISO timestamp pair, a date, nested values."""
    moment = _EPOCH + timedelta(minutes=i)
    return {
        "id": i,
        "name": f"item {i}",
        "price": round(i * 1.25, 2),
        "active": i % 3 != 0,
        "created_at": _iso(moment),
        "updated_at": _iso(moment),
        "ship_date": (moment.date()).isoformat(),
        "tags": [f"t{i % 5}", f"g{i % 7}"],
        "meta": {"source": "fake", "rank": i % 10},
        "note": None if i % 4 else f"note {i}",
    }


class FakeApi:
    """A threaded JSON API on loopback. Thread-safe; see the module docstring for routes."""

    def __init__(
        self,
        *,
        records: int = 3000,
        api_key: str = DEFAULT_API_KEY,
        basic: tuple[str, str] = DEFAULT_BASIC,
        require_auth: bool = True,
        default_page_size: int = 100,
    ) -> None:
        self.api_key = api_key
        self.basic = basic
        self.require_auth = require_auth
        self.default_page_size = default_page_size
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = [make_record(i) for i in range(1, records + 1)]
        self._clock = _EPOCH + timedelta(minutes=records)
        self._faults: list[_Fault] = []
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self._stopping = threading.Event()
        self.money_pages: list[bytes] = []  # raw JSON bodies served by /money?page=
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeApi:
        """Listen on 127.0.0.1 with an ephemeral port and serve in a daemon thread."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        # A short poll interval makes stop() quick (the default waits up to 0.5 s).
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; releases any request waiting in `/slow`."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ test controls

    @property
    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]

    def touch(self, ids: list[int], **changes: Any) -> str:
        """Update records `ids` (apply `changes`, bump `updated_at`); returns the new time."""
        with self._lock:
            self._clock += timedelta(minutes=1)
            stamp = _iso(self._clock)
            for record in self._records:
                if record["id"] in ids:
                    record.update(changes)
                    record["updated_at"] = stamp
            return stamp

    def add_records(self, count: int) -> list[int]:
        """Append `count` new records with a fresh `updated_at`; returns their ids."""
        with self._lock:
            self._clock += timedelta(minutes=1)
            start = len(self._records) + 1
            new = []
            for i in range(start, start + count):
                record = make_record(i)
                record["updated_at"] = _iso(self._clock)
                new.append(record)
            self._records.extend(new)
            return [r["id"] for r in new]

    def inject(
        self,
        status: int,
        *,
        times: int = 1,
        path_prefix: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (before auth)."""
        with self._lock:
            self._faults.append(_Fault(status, times, path_prefix, dict(headers or {}), body))

    def clear(self) -> None:
        """Forget injected faults and the request log."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # ------------------------------------------------------------ internals

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (
                    fault.path_prefix is None or path.startswith(fault.path_prefix)
                ):
                    fault.remaining -= 1
                    return fault
        return None

    def _authorized(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        if not self.require_auth:
            return True
        auth = headers.get("authorization", "")
        if auth == f"Bearer {self.api_key}":
            return True
        if headers.get("x-api-key") == self.api_key or query.get("api_key") == self.api_key:
            return True
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == self.basic
        return False

    def _filtered(self, query: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self._records)
        since = query.get("updated_since")
        after = query.get("updated_after")
        if since:
            rows = [r for r in rows if r["updated_at"] >= since]
        if after:
            rows = [r for r in rows if r["updated_at"] > after]
        return rows

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the client can pool connections
        # Headers and body go out in two writes; without this, Nagle + delayed ACK add
        # ~40 ms to every response.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            with api._lock:
                api.connections += 1
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with api._lock:
                api.requests.append(RecordedRequest("GET", parts.path, query, headers, self.path))
            fault = api._take_fault(parts.path)
            if fault is not None:
                body = fault.body if fault.body is not None else {"error": "injected"}
                self._send(fault.status, body, fault.headers)
                return
            if parts.path == "/html":
                self._raw(200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html")
                return
            if not api._authorized(headers, query):
                self._send(401, {"error": "invalid or missing api key"})
                return
            name = _ROUTES.get(parts.path)
            if name is None:
                self._send(404, {"error": f"no route {parts.path}"})
                return
            getattr(self, name)(query)

        # -------------------------------------------------------- replies

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            self._raw(status, json.dumps(body).encode(), "application/json", headers)

        def _raw(
            self,
            status: int,
            payload: bytes,
            content_type: str,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def base(self) -> str:
            return f"http://{self.headers.get('Host') or f'127.0.0.1:{api.port}'}"

        # -------------------------------------------------------- routes

        def page(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            page, size = _int(query, "page", 1), _int(query, "per_page", api.default_page_size)
            chunk = rows[(page - 1) * size : page * size]
            self._send(200, {"data": chunk, "page": page, "total": len(rows)})

        def offset(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            offset, limit = _int(query, "offset", 0), _int(query, "limit", api.default_page_size)
            self._send(200, {"results": rows[offset : offset + limit], "total": len(rows)})

        def cursor(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            start = _decode_cursor(query.get("cursor"))
            limit = _int(query, "limit", api.default_page_size)
            chunk = rows[start : start + limit]
            more = start + limit < len(rows)
            token = _encode_cursor(start + limit) if more else None
            self._send(200, {"items": chunk, "meta": {"next_cursor": token}})

        def link(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            page, size = _int(query, "page", 1), _int(query, "per_page", api.default_page_size)
            chunk = rows[(page - 1) * size : page * size]
            headers = {}
            if page * size < len(rows):
                echoed = {**query, "page": str(page + 1)}
                path = urlsplit(self.path).path
                headers["Link"] = (
                    f'<{self.base()}{path}?{urlencode(echoed)}>; rel="next", '
                    f'<{self.base()}{path}?page=1>; rel="first"'
                )
            self._send(200, chunk, headers)

        def next_url(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            after, limit = _int(query, "after", 0), _int(query, "limit", api.default_page_size)
            chunk = [r for r in rows if r["id"] > after][:limit]
            more = bool(chunk) and any(r["id"] > chunk[-1]["id"] for r in rows)
            nxt = None
            if more:
                echoed = {**query, "after": str(chunk[-1]["id"])}
                nxt = f"/items/next?{urlencode(echoed)}"
            self._send(200, {"records": chunk, "links": {"next": nxt}})

        def everything(self, query: dict[str, str]) -> None:
            self._send(200, api._filtered(query))

        def health(self, query: dict[str, str]) -> None:
            self._send(200, {"ok": True})

        def slow(self, query: dict[str, str]) -> None:
            api.wait(float(query.get("seconds", "5")))
            # The client usually gave up first, which is the point of the route.
            with contextlib.suppress(OSError):
                self._send(200, {"data": []})

        def notjson(self, query: dict[str, str]) -> None:
            self._raw(200, b"this is {not json", "application/json")

        def plain_object(self, query: dict[str, str]) -> None:
            self._send(200, {"status": "ok", "count": 3})

        def scalar(self, query: dict[str, str]) -> None:
            self._send(200, 42)

        def nested(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)[:5]
            self._send(200, {"response": {"body": {"rows": rows, "count": len(rows)}}})

        def redirect(self, query: dict[str, str]) -> None:
            self._raw(302, b"", "text/plain", {"Location": query.get("to", "/health")})

        def loop_cursor(self, query: dict[str, str]) -> None:
            self._send(200, {"items": [make_record(1)], "meta": {"next_cursor": "again"}})

        def loop_link(self, query: dict[str, str]) -> None:
            headers = {"Link": f'<{self.base()}/loop/link>; rel="next"'}
            self._send(200, [make_record(1)], headers)

        def loop_page(self, query: dict[str, str]) -> None:
            self._send(200, {"data": [make_record(1), make_record(2)]})

        def drift(self, query: dict[str, str]) -> None:
            # Field types that change from page to page, and a key that appears late.
            pages = [
                [{"id": 1, "v": 1, "when": "2024-01-01T00:00:00Z"}],
                [{"id": 2, "v": 2.5, "when": "2024-01-02T00:00:00Z", "extra": {"a": 1}}],
                [{"id": 3, "v": "text", "when": "not a time"}],
            ]
            page = _int(query, "page", 1)
            headers = {}
            if page < len(pages):
                headers["Link"] = f'<{self.base()}/drift?page={page + 1}>; rel="next"'
            self._send(200, pages[page - 1] if page <= len(pages) else [], headers)

        def json_server(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            limit = _int(query, "_limit", 10)
            start = _int(query, "_start", (_int(query, "_page", 1) - 1) * limit)
            self._send(200, rows[start : start + limit], {"X-Total-Count": str(len(rows))})

        def pages(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            page, size = _int(query, "page", 1), _int(query, "per_page", 25)
            chunk = rows[(page - 1) * size : page * size]
            total_pages = -(-len(rows) // size)
            body = {"items": chunk, "page": page, "per_page": size, "total_pages": total_pages}
            self._send(200, body)

        def offset_meta(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            offset, limit = _int(query, "offset", 0), _int(query, "limit", 100)
            meta = {"pagination": {"offset": offset, "limit": limit, "total": len(rows)}}
            self._send(200, {"data": rows[offset : offset + limit], "meta": meta})

        def content_range(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            offset, limit = _int(query, "offset", 0), _int(query, "limit", 100)
            chunk = rows[offset : offset + limit]
            last = offset + len(chunk) - 1
            span = f"{offset}-{last}" if chunk else "*"
            self._send(200, chunk, {"Content-Range": f"items {span}/{len(rows)}"})

        def total_only(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            self._send(200, rows[:100], {"X-Total-Count": str(len(rows))})

        def body_total(self, query: dict[str, str]) -> None:
            rows = api._filtered(query)
            self._send(200, {"data": rows[:100], "total": len(rows)})

        def money(self, query: dict[str, str]) -> None:
            page = _int(query, "page", 1)
            body = api.money_pages[page - 1] if page <= len(api.money_pages) else b"[]"
            headers = {}
            if page < len(api.money_pages):
                headers["Link"] = f'<{self.base()}/money?page={page + 1}>; rel="next"'
            self._raw(200, body, "application/json", headers)

        def loop_next(self, query: dict[str, str]) -> None:
            # Every page announces a new, different next page: only max_pages stops it.
            n = _int(query, "n", 0)
            self._send(200, {"data": [make_record(n + 1)], "next": f"/loop/next?n={n + 1}"})

    return Handler


# path -> handler method name
_ROUTES: dict[str, str] = {
    "/items/page": "page",
    "/items/offset": "offset",
    "/items/cursor": "cursor",
    "/items/link": "link",
    "/items/next": "next_url",
    "/items/all": "everything",
    "/orders": "link",
    "/health": "health",
    "/slow": "slow",
    "/notjson": "notjson",
    "/object": "plain_object",
    "/scalar": "scalar",
    "/nested": "nested",
    "/redirect": "redirect",
    "/loop/cursor": "loop_cursor",
    "/loop/link": "loop_link",
    "/loop/page": "loop_page",
    "/loop/next": "loop_next",
    "/drift": "drift",
    "/styles/json-server": "json_server",
    "/styles/pages": "pages",
    "/styles/offset-meta": "offset_meta",
    "/styles/content-range": "content_range",
    "/styles/total-only": "total_only",
    "/styles/body-total": "body_total",
    "/money": "money",
}


def _int(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(token: str | None) -> int:
    if not token:
        return 0
    padded = token + "=" * (-len(token) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().split(":", 1)[1])
