"""The API connector's retry policy, decided without sleeping (connectors/api/retry.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from datasources.connectors.api.retry import (
    BACKOFF_CAP_SECONDS,
    MAX_ATTEMPTS,
    RetryPolicy,
    parse_retry_after,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def policy(budget: float | None = 60.0) -> RetryPolicy:
    return RetryPolicy(budget, rng=random.Random(7))


def test_retry_after_seconds_is_the_wait() -> None:
    decision = policy().decide(0, waited=0, status=429, headers={"retry-after": "3"})
    assert decision.retry and decision.wait == 3.0


def test_retry_after_http_date_is_the_time_until_then() -> None:
    when = format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    decision = policy().decide(0, waited=0, status=503, headers={"retry-after": when}, now=NOW)
    assert decision.wait == 12.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=5), usegmt=True), NOW) == 0
    assert parse_retry_after("soon", NOW) is None


def test_backoff_grows_with_equal_jitter_and_is_capped() -> None:
    rule = policy(budget=10_000)
    for attempt in range(MAX_ATTEMPTS - 1):
        wait = rule.decide(attempt, waited=0, status=500).wait
        ceiling = min(BACKOFF_CAP_SECONDS, 0.5 * 2**attempt)
        assert wait is not None and ceiling / 2 <= wait <= ceiling


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_are_never_retried(status: int) -> None:
    decision = policy().decide(0, waited=0, status=status)
    assert not decision.retry and decision.note == ""


def test_without_a_budget_nothing_is_retried() -> None:
    assert not policy(None).decide(0, waited=0, status=503).retry
    assert not policy(None).decide(0, waited=0, stage="timeout", transport_failures=1).retry


def test_transport_failures_get_two_retries_and_tls_or_dns_none() -> None:
    rule = policy()
    assert rule.decide(0, waited=0, stage="timeout", transport_failures=1).retry
    assert rule.decide(1, waited=1, stage="tcp", transport_failures=2).retry
    assert not rule.decide(2, waited=2, stage="transport", transport_failures=3).retry
    for stage in ("tls", "dns", "policy", "config"):
        assert not rule.decide(0, waited=0, stage=stage, transport_failures=1).retry


def test_the_wait_budget_bounds_the_total_and_says_so() -> None:
    decision = policy(budget=2.0).decide(3, waited=1.9, status=500)
    assert not decision.retry
    assert decision.note == " (gave up after 4 attempts, 1.9 s of waiting)"


def test_a_retry_after_beyond_the_budget_gives_up_naming_it() -> None:
    decision = policy(budget=5.0).decide(0, waited=0, status=429, headers={"retry-after": "120"})
    assert not decision.retry
    assert "asked to retry after 120 s" in decision.note
    assert "max_retry_wait_seconds=5" in decision.note


def test_no_retry_is_planned_past_the_deadline() -> None:
    decision = policy().decide(0, waited=0, status=429, headers={"retry-after": "3"}, time_left=2)
    assert not decision.retry and "no time left" in decision.note


def test_attempts_are_bounded_whatever_the_budget() -> None:
    rule = policy(budget=1e9)
    assert rule.decide(MAX_ATTEMPTS - 2, waited=0, status=500).retry
    last = rule.decide(MAX_ATTEMPTS - 1, waited=0, status=500)
    assert not last.retry and f"gave up after {MAX_ATTEMPTS} attempts" in last.note
