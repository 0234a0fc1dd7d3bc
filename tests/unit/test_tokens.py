"""The one parser for base64url JSON from callers (JWT segments, paging tokens): every
bound is checked before `json.loads`, and every failure is a TokenError, never another
exception."""

from __future__ import annotations

import base64

import pytest

from datasources.tokens import (
    MAX_JWT_DEPTH,
    MAX_PAGE_TOKEN_CHARS,
    MAX_PAGE_TOKEN_DEPTH,
    TokenError,
    decode_segment,
    encode_segment,
    finite_number,
    nesting_depth,
)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return '{"a":' + opener * (depth - 1) + closer * (depth - 1) + "}"


# (name, JSON text, max_depth, accepted?)
DEPTH_TABLE = [
    ("flat object", '{"a":1}', 1, True),
    ("depth 2 within 2", '{"a":[1]}', 2, True),
    ("depth 2 over 1", '{"a":[1]}', 1, False),
    ("JWT limit exactly", nested(MAX_JWT_DEPTH), MAX_JWT_DEPTH, True),
    ("JWT limit + 1", nested(MAX_JWT_DEPTH + 1), MAX_JWT_DEPTH, False),
    ("2,500 arrays", nested(2_500), MAX_JWT_DEPTH, False),
    ("2,500 objects", '{"a":' + '{"a":' * 2_499 + "1" + "}" * 2_500, MAX_JWT_DEPTH, False),
    ("100k unclosed", nested(1)[:-1] + "[" * 100_000, MAX_JWT_DEPTH, False),
    ("brackets inside strings do not count", '{"a":"[[[[[[{{{{\\"[[["}', 1, True),
    ("escaped backslash ends the string", '{"a":"\\\\","b":[[1]]}', 2, False),
]


@pytest.mark.parametrize(
    ("text", "max_depth", "accepted"), [c[1:] for c in DEPTH_TABLE], ids=[c[0] for c in DEPTH_TABLE]
)
def test_given_nesting_when_decoded_then_only_within_the_depth_limit(
    text: str, max_depth: int, accepted: bool
) -> None:
    segment = b64(text)
    if accepted:
        assert isinstance(decode_segment(segment, max_chars=10**6, max_depth=max_depth), dict)
    else:
        with pytest.raises(TokenError):
            decode_segment(segment, max_chars=10**6, max_depth=max_depth)


def test_the_depth_scan_stops_early_on_a_deep_input() -> None:
    assert nesting_depth("[" * 1_000_000, stop_above=3) == 4


# (name, segment, max_chars, accepted?)
SIZE_TABLE = [
    ("at the page-token limit", b64('{"a":"' + "x" * 1_500 + '"}'), MAX_PAGE_TOKEN_CHARS, True),
    ("one over", "A" * (MAX_PAGE_TOKEN_CHARS + 1), MAX_PAGE_TOKEN_CHARS, False),
    ("a megabyte", "A" * 1_000_000, MAX_PAGE_TOKEN_CHARS, False),
    ("empty", "", MAX_PAGE_TOKEN_CHARS, False),
]


@pytest.mark.parametrize(
    ("segment", "max_chars", "accepted"),
    [c[1:] for c in SIZE_TABLE],
    ids=[c[0] for c in SIZE_TABLE],
)
def test_given_a_size_when_decoded_then_only_within_the_size_limit(
    segment: str, max_chars: int, accepted: bool
) -> None:
    if accepted:
        decode_segment(segment, max_chars=max_chars, max_depth=MAX_PAGE_TOKEN_DEPTH)
    else:
        with pytest.raises(TokenError):
            decode_segment(segment, max_chars=max_chars, max_depth=MAX_PAGE_TOKEN_DEPTH)


@pytest.mark.parametrize(
    "segment",
    [
        b64('{"exp":NaN}'),
        b64('{"exp":Infinity}'),
        b64('{"exp":-Infinity}'),
        b64('{"exp":1e400}'),
        b64('{"exp":-1e400}'),
        b64('{"exp":' + "9" * 5_000 + "}"),  # past Python's int digit limit
        b64('{"sub":"a","sub":"b"}'),  # duplicate key
        b64("[1]"),
        b64("null"),
        b64('"text"'),
        b64(b"\xff\xfe{}"),
        b64("not json"),
        b64("{}") + "\n",
        b64("{}") + "===",
        "e30.",
        "%%%",
        "ключ",
    ],
)
def test_malformed_non_finite_or_ambiguous_segments_are_a_token_error(segment: str) -> None:
    with pytest.raises(TokenError):
        decode_segment(segment, max_chars=10_000, max_depth=MAX_JWT_DEPTH)


def test_padded_and_unpadded_segments_round_trip() -> None:
    value = {"pk": "ORG#acme", "sk": "SOURCE#src_" + "0" * 20}
    segment = encode_segment(value)
    assert decode_segment(segment, max_chars=100, max_depth=1) == value
    padded = segment + "=" * (-len(segment) % 4)
    assert decode_segment(padded, max_chars=100, max_depth=1) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, 1.0),
        (1.5, 1.5),
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        (10**400, None),
        (True, None),
        ("1", None),
        (None, None),
    ],
)
def test_finite_number(value: object, expected: float | None) -> None:
    assert finite_number(value) == expected
