"""Pagination of API resources: one class per kind, and the detector behind `auto`.

A position (`pos`) names the request of one page: `{"page": n}`, `{"offset": n}`,
`{"cursor": t}`, `{"url": u}` or `{}` for the resource's first request. It is what the
resume token keeps, so each paginator owns how a position becomes a request
(`request`), which position follows a page (`next_pos`) and what else it must remember
across invocations (`state`, restored by `paginator_for`).

Kinds (`pagination.kind`): `none`, `page`, `offset`, `cursor`, `link_header`,
`next_url`, and `auto` (the default): after the first page, follow a
`Link: <...>; rel="next"` header if there is one, else an obvious next URL in the body
(`next`, `next_url`, `next_page_url`, `links.next`, `links.next.href`,
`_links.next.href`, `paging.next`, `pagination.next`, `meta.next`, `@odata.nextLink`,
...: a string that is an http(s) URL or starts with `/` or `?`), else stop after one
page. Next URLs are followed as given (they carry the API's own filter parameters);
only credentials are re-added, by the client.
"""

from __future__ import annotations

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


@dataclass
class PageView:
    """What a paginator sees of one answered page."""

    body: Any
    records: list[dict[str, Any]]
    headers: httpx.Headers
    links: dict[str | None, dict[str, str]]
    url: httpx.URL  # the page's own URL, after redirects
    follow: Callable[[str], str]  # a next link, resolved, checked, credentials stripped


class Paginator:
    """No pagination: the first page is the whole resource (`kind: none`)."""

    kind = "none"

    @property
    def positional(self) -> bool:
        """Whether positions are computed, not announced: a page/offset API that ignores
        its parameters answers the same page again, which is caught by comparing
        contents; other kinds are caught by a repeated position."""
        return False

    def __init__(self, pagination: Pagination) -> None:
        self.pagination = pagination

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
        return None

    def state(self) -> dict[str, Any]:
        """What the resume token keeps besides the position (`mode`, `next_path`)."""
        return {"mode": None, "next_path": None}


class PageNumberPaginator(Paginator):
    """`page`: a page number parameter, counting from `start_page`, until an empty page."""

    kind = "page"

    @property
    def positional(self) -> bool:
        return True

    def first(self) -> Pos:
        return {"page": self.pagination.start_page}

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        params[self.pagination.page_param] = pos.get("page", self.pagination.start_page)

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if not page.records:
            return None
        return {"page": pos.get("page", self.pagination.start_page) + 1}


class OffsetPaginator(Paginator):
    """`offset`: an offset and a limit parameter, until an empty page."""

    kind = "offset"

    @property
    def positional(self) -> bool:
        return True

    def first(self) -> Pos:
        return {"offset": 0}

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        params[self.pagination.offset_param] = pos.get("offset", 0)
        params[self.pagination.limit_param] = self.pagination.page_size or DEFAULT_LIMIT

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if not page.records:
            return None
        return {"offset": pos.get("offset", 0) + len(page.records)}


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


class AutoPaginator(Paginator):
    """`auto`: the first page decides (`detect`) and the resume token keeps the decision."""

    kind = "auto"

    def __init__(self, pagination: Pagination, chosen: Paginator | None = None) -> None:
        super().__init__(pagination)
        self.chosen = chosen

    @property
    def positional(self) -> bool:
        return self.chosen is not None and self.chosen.positional

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        if self.chosen is not None:
            self.chosen.update_params(pos, params)

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if self.chosen is None:
            self.chosen = detect(self.pagination, page)
        return self.chosen.next_pos(pos, page)

    def state(self) -> dict[str, Any]:
        if self.chosen is None:
            return {"mode": None, "next_path": None}
        return self.chosen.state()


def detect(pagination: Pagination, page: PageView) -> Paginator:
    """The paginator a first page announces: a Link header, a next URL in the body, or
    none (the page is the whole resource)."""
    if "next" in page.links:
        return LinkHeaderPaginator(pagination)
    found = find_next_url(page.body)
    if found:
        return NextUrlPaginator(pagination, found)
    return _NoneChosen(pagination)


class _NoneChosen(Paginator):
    """`auto` found no pagination: remembered as mode `none`."""

    def state(self) -> dict[str, Any]:
        return {"mode": "none", "next_path": None}


_KINDS: dict[str, type[Paginator]] = {
    "none": Paginator,
    "page": PageNumberPaginator,
    "offset": OffsetPaginator,
    "cursor": CursorPaginator,
    "link_header": LinkHeaderPaginator,
}


def paginator_for(pagination: Pagination, state: dict[str, Any] | None = None) -> Paginator:
    """The paginator of a resource, restored from a resume token's `state` if given."""
    state = state or {}
    if pagination.kind == "next_url":
        return NextUrlPaginator(pagination, state.get("next_path"))
    if pagination.kind == "auto":
        mode = state.get("mode")
        chosen: Paginator | None = None
        if mode == "link_header":
            chosen = LinkHeaderPaginator(pagination)
        elif mode == "next_url":
            chosen = NextUrlPaginator(pagination, state.get("next_path"))
        elif mode == "none":
            chosen = _NoneChosen(pagination)
        return AutoPaginator(pagination, chosen)
    return _KINDS[pagination.kind](pagination)


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
