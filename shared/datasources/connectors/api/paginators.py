"""Pagination of API resources: one class per kind, and the totals responses announce.

A position (`pos`) names the request of one page: `{"page": n}`, `{"offset": n}`,
`{"cursor": t}`, `{"url": u}` or `{}` for the resource's first request. It is what the
resume token keeps, so each paginator owns how a position becomes a request
(`request`), which position follows a page (`next_pos`) and what else it must remember
across invocations (`state`, restored by `detector.paginator_for`).

Kinds (`pagination.kind`): `none`, `page`, `offset`, `cursor`, `link_header`,
`next_url`, and `auto` (the default), which the first page decides (`detector`):
a Link header, a next URL in the body (`NEXT_URL_PATHS`), page/offset parameters in
the URL or the body paged up to the announced total (`total_signal`), a single page,
or a refusal to guess. Next URLs are followed as given (they carry the API's own
filter parameters); only credentials are re-added, by the client.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from datasources.connectors.api.records import lookup
from datasources.models.connection import Pagination

DEFAULT_LIMIT = 100

NEXT_URL_PATHS = (
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
CURSOR_PATHS = (
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

Pos = dict[str, Any]

# Where a body says how many records or pages the whole resource has.
TOTAL_RECORD_PATHS = (
    "total",
    "total_count",
    "totalCount",
    "total_results",
    "totalResults",
    "total_items",
    "totalItems",
    "count",
    "meta.total",
    "meta.total_count",
    "meta.totalCount",
    "meta.pagination.total",
    "meta.pagination.total_count",
    "pagination.total",
    "pagination.total_count",
    "pagination.totalItems",
)
TOTAL_PAGE_PATHS = (
    "total_pages",
    "totalPages",
    "page_count",
    "pageCount",
    "last_page",
    "meta.total_pages",
    "meta.last_page",
    "meta.pagination.total_pages",
    "meta.pagination.pageCount",
    "pagination.total_pages",
    "pagination.totalPages",
)
_CONTENT_RANGE = re.compile(r"^\s*(?:[A-Za-z-]+\s+)?(?:\d+-\d+|\*)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Total:
    """How many records or pages a response says the resource has, and where it said so."""

    signal: str  # e.g. "X-Total-Count header", "'meta.pagination.total' in the body"
    records: int | None = None
    pages: int | None = None

    def more_than(self, returned: int) -> bool:
        """Whether the resource holds more than a first page of `returned` records."""
        if self.records is not None:
            return self.records > returned
        return self.pages is not None and self.pages > 1

    def describe(self) -> str:
        if self.records is not None:
            return f"{self.records} records"
        return f"{self.pages} pages"


@dataclass
class PageView:
    """What a paginator sees of one answered page."""

    body: Any
    records: list[dict[str, Any]]
    headers: httpx.Headers
    links: dict[str | None, dict[str, str]]
    url: httpx.URL  # the page's own URL, after redirects
    follow: Callable[[str], str]  # a next link, resolved, checked, credentials stripped


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def total_signal(page: PageView) -> Total | None:
    """The total a response announces: `X-Total-Count`/`X-Total` or `Content-Range`
    headers, else a count of records or pages in the body."""
    for header in ("X-Total-Count", "X-Total"):
        text = page.headers.get(header, "").strip()
        if text.isdigit():
            return Total(f"{header} header", records=int(text))
    matched = _CONTENT_RANGE.match(page.headers.get("Content-Range", ""))
    if matched:
        return Total("Content-Range header", records=int(matched.group(1)))
    if isinstance(page.body, dict):
        for path in TOTAL_RECORD_PATHS:
            count = _count(lookup(page.body, path))
            if count is not None:
                return Total(f"'{path}' in the body", records=count)
        for path in TOTAL_PAGE_PATHS:
            count = _count(lookup(page.body, path))
            if count is not None:
                return Total(f"'{path}' in the body", pages=count)
    return None


class Paginator:
    """No pagination: the first page is the whole resource (`kind: none`)."""

    kind = "none"
    # Sentences for the job notes, taken by the connector after each page.
    notes: list[str]

    @property
    def positional(self) -> bool:
        """Whether positions are computed, not announced: a page/offset API that ignores
        its parameters answers the same page again, which is caught by comparing
        contents; other kinds are caught by a repeated position."""
        return False

    def __init__(self, pagination: Pagination) -> None:
        self.pagination = pagination
        self.notes = []

    def first(self) -> Pos:
        """The position of the resource's first page."""
        return {}

    def request(self, pos: Pos, url: httpx.URL, params: dict[str, Any]) -> tuple[httpx.URL, dict]:
        """The URL and query parameters that fetch the page at `pos`."""
        if "url" in pos:
            return httpx.URL(pos["url"]), {}
        pagination = self.pagination
        if pagination.size_param and pagination.page_size:
            params[pagination.size_param] = pagination.page_size
        self.update_params(pos, params)
        return url, params

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        """Add this kind's own parameters for `pos`."""

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        """The position of the page after `page`, or None when it was the last."""
        total = total_signal(page)
        note = "single page (pagination kind none)"
        if total is not None and total.more_than(len(page.records)):
            note += (
                f": the API signals {total.describe()} ({total.signal}) and the page held "
                f"{len(page.records)}; the rest is not read, as configured"
            )
        self.notes.append(note)
        return None

    def state(self) -> dict[str, Any]:
        """What the resume token keeps besides the position (`mode`, `next_path`)."""
        return {"mode": None, "next_path": None}


class _Positional(Paginator):
    """A kind whose positions are counted here, not announced by the API.

    Found by auto-detection (`detected` holds what was found: parameter names, first
    value, size), it also stops at the total the responses announce, so no request
    goes past the last page; the token keeps `detected` to page the same way later.
    """

    def __init__(self, pagination: Pagination, detected: dict[str, Any] | None = None) -> None:
        super().__init__(pagination)
        self.detected = detected

    @property
    def positional(self) -> bool:
        return True

    def total(self, page: PageView) -> Total | None:
        """The announced total, when this paginator was detected (explicit kinds read
        until an empty page, as configured)."""
        return total_signal(page) if self.detected is not None else None

    def state(self) -> dict[str, Any]:
        if self.detected is None:
            return super().state()
        return {"mode": self.kind, "next_path": None, "paging": self.detected}


class PageNumberPaginator(_Positional):
    """`page`: a page number parameter, counting from `start_page`, until an empty page."""

    kind = "page"

    def first(self) -> Pos:
        return {"page": self.pagination.start_page}

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        params[self.pagination.page_param] = pos.get("page", self.pagination.start_page)

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if not page.records:
            return None
        start = self.pagination.start_page
        number = pos.get("page", start)
        total = self.total(page)
        if total is not None:
            pages = number - start + 1
            size = (self.detected or {}).get("size") or len(page.records)
            if total.pages is not None and pages >= total.pages:
                return None
            if total.records is not None and pages * size >= total.records:
                return None
        return {"page": number + 1}


class OffsetPaginator(_Positional):
    """`offset`: an offset and a limit parameter, until an empty page."""

    kind = "offset"

    def _start(self) -> int:
        return int((self.detected or {}).get("start", 0))

    def first(self) -> Pos:
        return {"offset": self._start()}

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        params[self.pagination.offset_param] = pos.get("offset", self._start())
        params[self.pagination.limit_param] = self.pagination.page_size or DEFAULT_LIMIT

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if not page.records:
            return None
        after = pos.get("offset", self._start()) + len(page.records)
        total = self.total(page)
        if total is not None and total.records is not None and after >= total.records:
            return None
        return {"offset": after}


class CursorPaginator(Paginator):
    """`cursor`: a token from the body (`cursor_path`, or a usual place) sent back as
    `cursor_param`, until there is none or `has_more` is false."""

    kind = "cursor"

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        if pos.get("cursor") is not None:
            params[self.pagination.cursor_param] = pos["cursor"]

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        body = page.body
        if isinstance(body, dict) and body.get("has_more") is False:
            return None
        cursor_path = self.pagination.cursor_path
        for path in (cursor_path,) if cursor_path else CURSOR_PATHS:
            token = lookup(body, path)
            if isinstance(token, str | int) and not isinstance(token, bool):
                return {"cursor": token} if token != "" else None
        return None


class LinkHeaderPaginator(Paginator):
    """`link_header`: the URL of `Link: <...>; rel="next"`."""

    kind = "link_header"

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        target = page.links.get("next", {}).get("url")
        return {"url": page.follow(target)} if target else None

    def state(self) -> dict[str, Any]:
        return {"mode": self.kind, "next_path": None}


class NextUrlPaginator(Paginator):
    """`next_url`: a next-page URL in the body, at `next_url_path` or a usual place."""

    kind = "next_url"

    def __init__(self, pagination: Pagination, next_path: str | None = None) -> None:
        super().__init__(pagination)
        self.next_path = next_path or pagination.next_url_path

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if self.next_path is None:
            self.next_path = find_next_url(page.body)
        value = lookup(page.body, self.next_path) if self.next_path else None
        if isinstance(value, dict):
            value = value.get("href")
        if not isinstance(value, str) or not value:
            return None
        return {"url": page.follow(value)}

    def state(self) -> dict[str, Any]:
        return {"mode": self.kind, "next_path": self.next_path}


def find_next_url(body: Any) -> str | None:
    """The path of an obvious next-page URL in the body, or None."""
    if not isinstance(body, dict):
        return None
    for path in NEXT_URL_PATHS:
        value = lookup(body, path)
        if isinstance(value, dict):
            value = value.get("href")
        if isinstance(value, str) and value.startswith(("https://", "http://", "/", "?")):
            return path
    return None


def describe(pos: Pos) -> str:
    """A position as a message names it."""
    if "page" in pos:
        return f"page {pos['page']}"
    if "offset" in pos:
        return f"offset {pos['offset']}"
    if "cursor" in pos:
        return "cursor"
    if "url" in pos:
        return f"page URL ({pos['url']})"
    return "first page"
