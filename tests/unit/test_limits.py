"""The JSON shape scanner and the inflate guard of datasources.limits."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from datasources.limits import (
    MAX_INFLATE_RATIO,
    MAX_JSON_DEPTH,
    DeadlineExceeded,
    InflateGuard,
    LimitExceeded,
    check_json,
    json_shape,
    seconds_left,
)

_TRICKY = ['"', "\\", "[", "]", "{", "}", ",", "\\\\", '\\"', "é", "\u2028", "x", " "]


def _random_value(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return rng.choice(
            [
                None,
                True,
                rng.randint(-5, 5),
                1.5,
                "".join(rng.choice(_TRICKY) for _ in range(rng.randint(0, 6))),
            ]
        )
    if roll < 0.65:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {
        "".join(rng.choice(_TRICKY) for _ in range(rng.randint(0, 4))): _random_value(
            rng, depth - 1
        )
        for _ in range(rng.randint(0, 3))
    }


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@pytest.mark.parametrize("seed", range(40))
def test_given_well_formed_json_with_tricky_strings_then_the_depth_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    values = [_random_value(rng, rng.randint(0, 9)) for _ in range(20)]
    for value in values:
        for ensure_ascii in (True, False):
            text = json.dumps(value, ensure_ascii=ensure_ascii).encode()
            assert json_shape(text).depth == _depth(value), text
    # As JSON Lines, the deepest line decides.
    lines = b"\n".join(json.dumps(v, ensure_ascii=False).encode() for v in values)
    assert json_shape(lines).depth == max(_depth(v) for v in values)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (b"[" * 100_000, True),  # the D2 line: never closed
        (b"[" * 100_000 + b"]" * 100_000, True),
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a":"' + b"[" * 1000 + b'"}', False),  # brackets inside a string do not nest
        (b'["\\"' + b"[" * 1000 + b'"]', False),  # nor after an escaped quote
        (b'["\\\\"' + b"[" * 1000, True),  # an escaped backslash ends the string
        (b'"]]]]\n' + b"[" * 1000, True),  # a stray quote cannot hide the next line
        (b"]" * 1000 + b"[" * 1000, True),  # closers first cannot cancel later openers
        (b"\\[" * 1000, True),  # nor can an escape outside a string hide a bracket
    ],
)
def test_given_hostile_nesting_then_the_depth_bound_holds(text: bytes, refused: bool) -> None:
    if refused:
        with pytest.raises(LimitExceeded, match="JSON nesting depth"):
            check_json(text, "the body")
    else:
        check_json(text, "the body")


def test_given_a_page_of_empty_objects_then_the_value_count_refuses_it() -> None:
    bomb = b"[" + b"{}," * 1_000_000 + b"{}]"
    assert json_shape(bomb).values > 1_000_000
    with pytest.raises(LimitExceeded, match="values per document"):
        check_json(bomb, "the response")
    check_json(b"[" + b"{}," * 1000 + b"{}]", "the response")


def test_given_a_quadratic_looking_input_then_the_scan_stays_linear() -> None:
    hostile = b'"' + b'\\"' * 500_000 + b"\n" + b'"x\\' * 300_000 + b"[]," * 300_000
    started = time.perf_counter()
    json_shape(hostile)
    assert time.perf_counter() - started < 2.0


def test_the_inflate_guard_allows_the_free_bytes_then_the_ratio_then_the_cap() -> None:
    guard = InflateGuard("x.csv.gz")
    read = guard.counting(lambda n: b"z" * n)
    read(1000)
    guard.add(16 << 20)  # under the free allowance whatever the ratio
    read((17 << 20) // MAX_INFLATE_RATIO)
    guard.add(1 << 20)
    with pytest.raises(LimitExceeded, match="compression ratio"):
        guard.add(1 << 20)


def test_a_passed_deadline_raises_and_none_means_no_deadline() -> None:
    assert seconds_left(None, "x") is None
    left = seconds_left(time.monotonic() + 10, "x")
    assert left is not None and 9 < left <= 10
    with pytest.raises(DeadlineExceeded, match="remaining time"):
        seconds_left(time.monotonic() - 0.001, "reading x")


def test_a_connector_opened_within_a_deadline_carries_it_and_none_outside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datasources.connectors import registry
    from datasources.lake import LakeAllowance
    from datasources.limits import deadline_from
    from datasources.models.connection import FileConfig

    contexts: list[Any] = []
    monkeypatch.setattr(registry, "get_connector", lambda _type, _config, c: contexts.append(c))
    config = FileConfig.model_validate({"url": "https://files.example.com/orders.csv"})
    registry.open_connector("file", config, LakeAllowance(()))
    assert contexts[-1].deadline is None
    with deadline_from(30_000) as deadline:
        registry.open_connector("file", config, LakeAllowance(()))
    assert contexts[-1].deadline == deadline
    assert 27.5 < deadline - time.monotonic() <= 28.0  # 30 s less the 2 s margin
    with deadline_from(1_000) as short:
        assert 0.85 < short - time.monotonic() <= 0.9  # a tenth of a short remaining time
