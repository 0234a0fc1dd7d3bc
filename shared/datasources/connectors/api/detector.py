"""`pagination.kind: auto`: how the first page of a resource says it is paged.

In this order, on the first page:

1. a `Link: <...>; rel="next"` header: follow it (`link_header`);
2. an obvious next URL in the body (`next`, `links.next`, `@odata.nextLink`, ...):
   follow it (`next_url`);
3. a total (`X-Total-Count`, `X-Total`, `Content-Range` headers; `total`, `count`,
   `total_pages`, `meta.pagination.total`, ... in the body) that the page already
   holds: a single page;
4. a page or offset parameter in the request URL (`_page`, `page`, `offset`,
   `_start`, with `_limit`, `limit`, `per_page`, `page_size` beside it), else one the
   body echoes (`page`, `current_page`, `offset`, `skip`, `start`, at the top level or
   under `meta`, `pagination`, `meta.pagination` or `paging`): page with it, counting
   up from the first page's value, until the announced total (or an empty page);
5. a total the page does not hold, with no way found to the rest: the read fails
   with `PagingError`, which names the signal and the config that would page it,
   rather than landing one page as the whole resource;
6. otherwise a single page, said so in the job notes.

The decision is kept in the resume token (`mode`, `next_path`, `paging`), so
continuations in later invocations page the same way.
"""

from __future__ import annotations

from typing import Any

from datasources.connectors.api.paginators import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageView,
    Paginator,
    Pos,
    Total,
    find_next_url,
    total_signal,
)
from datasources.connectors.api.records import lookup
from datasources.models.connection import Pagination

URL_PAGE_PARAMS = ("_page", "page")
URL_OFFSET_PARAMS = ("offset", "_start")
SIZE_PARAMS = ("_limit", "limit", "per_page", "page_size", "pageSize")
BODY_CONTAINERS = ("", "meta", "pagination", "meta.pagination", "paging")
BODY_PAGE_KEYS = ("page", "current_page", "currentPage")
BODY_OFFSET_KEYS = ("offset", "skip", "start")
BODY_SIZE_KEYS = ("limit", "per_page", "perPage", "page_size", "pageSize", "take")

_EXAMPLES = (
    '{"kind": "page", "page_param": "page", "size_param": "per_page"} or '
    '{"kind": "offset", "offset_param": "offset", "limit_param": "limit"}'
)


class PagingError(ValueError):
    """A response signals more records than it holds, and no way to get them was found."""

    def __init__(self, total: Total, returned: int) -> None:
        super().__init__(
            f"the API signals {total.describe()} ({total.signal}) but the first page held "
            f"{returned} and announced no way to the rest (no Link header, next URL, or "
            "page/offset parameter in the URL or the body); refusing to land one page as "
            "the whole resource. Set the resource's pagination, e.g. "
            f"{_EXAMPLES}, or put the API's page parameter in the path "
            "(e.g. ?_page=1&_limit=100)"
        )
        self.total = total


class AutoPaginator(Paginator):
    """`auto`: the first page decides (`detect`) and the resume token keeps the decision."""

    kind = "auto"

    def __init__(self, pagination: Pagination, chosen: Paginator | None = None) -> None:
        super().__init__(pagination)
        self.chosen = chosen
        if chosen is not None:
            self.notes = chosen.notes

    @property
    def positional(self) -> bool:
        return self.chosen is not None and self.chosen.positional

    def update_params(self, pos: Pos, params: dict[str, Any]) -> None:
        if self.chosen is not None:
            self.chosen.update_params(pos, params)

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        if self.chosen is None:
            self.chosen = detect(self.pagination, page)
            self.chosen.notes = self.notes
        return self.chosen.next_pos(pos, page)

    def state(self) -> dict[str, Any]:
        if self.chosen is None:
            return {"mode": None, "next_path": None}
        return self.chosen.state()


class SinglePage(Paginator):
    """`auto` found the first page to be the whole resource: remembered as mode `none`."""

    def next_pos(self, pos: Pos, page: PageView) -> Pos | None:
        total = total_signal(page)
        if total is not None:
            why = f"the API's {total.signal} says {total.describe()}, all on the first page"
        else:
            why = (
                "the first page announced no further page (no Link header, next URL, "
                "total, or page/offset parameter)"
            )
        self.notes.append(f"single page: {why}; it is the whole resource")
        return None

    def state(self) -> dict[str, Any]:
        return {"mode": "none", "next_path": None}


def detect(pagination: Pagination, page: PageView) -> Paginator:
    """The paginator a first page announces (see the module docstring); PagingError when
    it announces more records than it holds and no way to them."""
    if "next" in page.links:
        return LinkHeaderPaginator(pagination)
    found = find_next_url(page.body)
    if found:
        return NextUrlPaginator(pagination, found)
    total = total_signal(page)
    if total is not None and not total.more_than(len(page.records)):
        return SinglePage(pagination)
    paging = _from_url(page) or _from_body(page)
    if paging is not None:
        return _detected(pagination, paging)
    if total is not None:
        raise PagingError(total, len(page.records))
    return SinglePage(pagination)


def _from_url(page: PageView) -> dict[str, Any] | None:
    """Page or offset parameters the request URL already carries."""
    params = dict(page.url.params)
    return _paging(page, params, URL_OFFSET_PARAMS, URL_PAGE_PARAMS, SIZE_PARAMS, by_url=True)


def _from_body(page: PageView) -> dict[str, Any] | None:
    """Page or offset parameters the body echoes back."""
    if not isinstance(page.body, dict):
        return None
    for path in BODY_CONTAINERS:
        container = lookup(page.body, path) if path else page.body
        if isinstance(container, dict):
            found = _paging(
                page, container, BODY_OFFSET_KEYS, BODY_PAGE_KEYS, BODY_SIZE_KEYS, by_url=False
            )
            if found is not None:
                return found
    return None


def _paging(
    page: PageView,
    values: dict[str, Any],
    offset_keys: tuple[str, ...],
    page_keys: tuple[str, ...],
    size_keys: tuple[str, ...],
    *,
    by_url: bool,
) -> dict[str, Any] | None:
    """How to page, from the first offset or page key that holds a number in `values`."""
    size_key = next((k for k in size_keys if _int(values.get(k)) is not None), None)
    size = _int(values.get(size_key)) if size_key else None
    for key in offset_keys:
        start = _int(values.get(key))
        if start is not None:
            return {
                "kind": "offset",
                "offset_param": key,
                "start": start,
                "limit_param": size_key or "limit",
                "page_size": size or len(page.records) or None,
            }
    for key in page_keys:
        number = _int(values.get(key))
        if number is not None:
            # A body's `current_page` and friends answer the request parameter `page`.
            name = key if by_url else "page"
            return {"kind": "page", "page_param": name, "start_page": number, "size": size}
    return None


def _detected(pagination: Pagination, paging: dict[str, Any]) -> Paginator:
    update = {k: v for k, v in paging.items() if k not in ("size", "start")}
    derived = pagination.model_copy(update=update)
    if paging["kind"] == "offset":
        return OffsetPaginator(derived, paging)
    return PageNumberPaginator(derived, paging)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


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
    kind = pagination.kind
    if kind == "next_url":
        return NextUrlPaginator(pagination, state.get("next_path"))
    if kind != "auto":
        return _KINDS[kind](pagination)
    mode = state.get("mode")
    chosen: Paginator | None = None
    if mode == "link_header":
        chosen = LinkHeaderPaginator(pagination)
    elif mode == "next_url":
        chosen = NextUrlPaginator(pagination, state.get("next_path"))
    elif mode in ("page", "offset") and isinstance(state.get("paging"), dict):
        chosen = _detected(pagination, state["paging"])
    elif mode == "none":
        chosen = SinglePage(pagination)
    return AutoPaginator(pagination, chosen)
