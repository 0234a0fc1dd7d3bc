"""Each paginator's request update, next position and resume state, without a server
(connectors/api/paginators.py). The end-to-end behaviour is in tests/connectors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from datasources.connectors.api.detector import AutoPaginator, PagingError, detect, paginator_for
from datasources.connectors.api.paginators import (
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageView,
    total_signal,
)
from datasources.models.connection import Pagination

URL = httpx.URL("https://api.example.com/v1/items")


def view(
    body: Any = None,
    records: int = 2,
    headers: dict[str, str] | None = None,
    url: httpx.URL = URL,
) -> PageView:
    response = httpx.Response(200, headers=headers or {}, request=httpx.Request("GET", url))
    return PageView(
        body=body,
        records=[{"id": i} for i in range(records)],
        headers=response.headers,
        links=response.links,
        url=url,
        follow=lambda target: str(url.join(target)),
    )


def test_page_numbers_count_from_start_page_and_stop_at_an_empty_page() -> None:
    pager = PageNumberPaginator(Pagination(kind="page", start_page=0, size_param="n", page_size=5))
    first = pager.first()
    assert pager.request(first, URL, {}) == (URL, {"n": 5, "page": 0})
    assert pager.next_pos(first, view()) == {"page": 1}
    assert pager.next_pos({"page": 1}, view(records=0)) is None
    assert pager.positional


def test_offsets_advance_by_the_records_received() -> None:
    pager = OffsetPaginator(Pagination(kind="offset", page_size=50))
    assert pager.request({"offset": 100}, URL, {"q": 1}) == (
        URL,
        {"q": 1, "offset": 100, "limit": 50},
    )
    assert pager.next_pos({"offset": 100}, view(records=3)) == {"offset": 103}
    assert pager.next_pos({"offset": 103}, view(records=0)) is None


def test_a_cursor_is_found_at_its_path_or_a_usual_place_and_has_more_false_ends() -> None:
    usual = CursorPaginator(Pagination(kind="cursor"))
    assert usual.next_pos({}, view({"meta": {"next_cursor": "abc"}})) == {"cursor": "abc"}
    assert usual.request({"cursor": "abc"}, URL, {})[1] == {"cursor": "abc"}
    assert usual.next_pos({}, view({"has_more": False, "next_cursor": "abc"})) is None
    assert usual.next_pos({}, view({"next_cursor": ""})) is None
    configured = CursorPaginator(Pagination(kind="cursor", cursor_path="after.token"))
    assert configured.next_pos({}, view({"after": {"token": 7}, "next_cursor": "x"})) == {
        "cursor": 7
    }


def test_a_link_header_next_is_followed_and_a_url_position_is_requested_as_is() -> None:
    pager = LinkHeaderPaginator(Pagination(kind="link_header"))
    page = view(headers={"Link": '</v1/items?page=2>; rel="next"'})
    nxt = pager.next_pos({}, page)
    assert nxt == {"url": "https://api.example.com/v1/items?page=2"}
    assert nxt is not None
    assert pager.request(nxt, URL, {"ignored": 1}) == (httpx.URL(nxt["url"]), {})
    assert pager.next_pos(nxt, view()) is None


def test_a_next_url_path_found_once_is_kept_in_the_state() -> None:
    pager = NextUrlPaginator(Pagination(kind="next_url"))
    assert pager.next_pos({}, view({"paging": {"next": "?after=5"}})) == {
        "url": "https://api.example.com/v1/items?after=5"
    }
    assert pager.state() == {"mode": "next_url", "next_path": "paging.next"}
    restored = paginator_for(Pagination(kind="next_url"), pager.state())
    assert isinstance(restored, NextUrlPaginator) and restored.next_path == "paging.next"


def test_auto_detects_from_the_first_page_and_the_token_keeps_the_decision() -> None:
    auto = paginator_for(Pagination())
    assert isinstance(auto, AutoPaginator) and auto.state()["mode"] is None
    auto.next_pos({}, view(headers={"Link": '<https://api.example.com/p2>; rel="next"'}))
    assert auto.state()["mode"] == "link_header"
    resumed = paginator_for(Pagination(), auto.state())
    assert isinstance(resumed, AutoPaginator)
    assert isinstance(resumed.chosen, LinkHeaderPaginator)

    by_body = paginator_for(Pagination())
    assert by_body.next_pos({}, view({"_links": {"next": {"href": "/p2"}}})) == {
        "url": "https://api.example.com/p2"
    }
    assert by_body.state() == {"mode": "next_url", "next_path": "_links.next"}

    single = paginator_for(Pagination())
    assert single.next_pos({}, view([{"id": 1}])) is None
    assert single.state()["mode"] == "none"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"X-Total-Count": "3503"}, [], ("X-Total-Count header", 3503, None)),
        ({"X-Total": "12"}, [], ("X-Total header", 12, None)),
        ({"Content-Range": "items 0-99/3503"}, [], ("Content-Range header", 3503, None)),
        ({"Content-Range": "0-99/250"}, [], ("Content-Range header", 250, None)),
        ({"Content-Range": "items 0-99/*"}, [], None),
        (
            {},
            {"data": [], "meta": {"pagination": {"total": 9}}},
            ("'meta.pagination.total' in the body", 9, None),
        ),
        ({}, {"items": [], "total_pages": 4}, ("'total_pages' in the body", None, 4)),
        ({}, {"items": [], "total": True}, None),
        ({}, [1, 2], None),
    ],
)
def test_totals_are_read_from_headers_then_the_body(
    headers: dict[str, str], body: Any, expected: tuple[str, int | None, int | None] | None
) -> None:
    total = total_signal(view(body, headers=headers))
    if expected is None:
        assert total is None
    else:
        assert total is not None and (total.signal, total.records, total.pages) == expected


def test_detection_prefers_links_then_url_parameters_then_body_echoes() -> None:
    linked = view([], headers={"Link": '</p2>; rel="next"', "X-Total-Count": "50"})
    assert isinstance(detect(Pagination(), linked), LinkHeaderPaginator)
    in_url = detect(
        Pagination(),
        view(
            [],
            headers={"X-Total-Count": "50"},
            url=URL.copy_merge_params({"_page": 1, "_limit": 2}),
        ),
    )
    assert isinstance(in_url, PageNumberPaginator)
    assert in_url.pagination.page_param == "_page" and in_url.state()["mode"] == "page"
    echoed = detect(
        Pagination(), view({"data": [], "meta": {"pagination": {"skip": 0, "take": 2, "total": 9}}})
    )
    assert isinstance(echoed, OffsetPaginator)
    assert (echoed.pagination.offset_param, echoed.pagination.limit_param) == ("skip", "take")
    with pytest.raises(PagingError, match=r"50 records \(X-Total-Count header\)"):
        detect(Pagination(), view([], headers={"X-Total-Count": "50"}))
    assert detect(Pagination(), view({"data": [], "total": 2})).state()["mode"] == "none"
