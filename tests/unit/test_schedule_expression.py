"""AWS Scheduler expressions: what is accepted, and when they fire."""

from __future__ import annotations

import datetime as dt

import pytest

from datasources.models.schedule_expression import ExpressionError, next_run, parse_expression

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("rate(1 minute)", 1),
        ("rate(15 minutes)", 15),
        ("rate(2 hours)", 120),
        ("rate(1 day)", 1440),
    ],
)
def test_rates_are_minutes(text: str, minutes: int) -> None:
    assert parse_expression(text).rate_minutes == minutes


@pytest.mark.parametrize(
    "text",
    [
        "rate(0 minutes)",
        "rate(30 seconds)",
        "rate(1 minutes)",
        "rate(5 minute)",
        "cron(0 3 * * *)",
        "cron(0 3 * * * *)",
        "cron(0 3 ? * ? *)",
        "cron(99 3 * * ? *)",
        "cron(0 3 ? * FUNDAY *)",
        "cron(0 3 * * ? 20x5)",
        "hourly",
    ],
)
def test_invalid_expressions_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_a_rate_fires_every_period_from_when_it_was_set() -> None:
    expression = parse_expression("rate(15 minutes)")
    anchor = at("2026-12-02T10:07:00")
    assert next_run(expression, "UTC", at("2026-12-02T10:07:00"), anchor=anchor) == at(
        "2026-12-02T10:22:00"
    )
    assert next_run(expression, "UTC", at("2026-12-02T11:00:00"), anchor=anchor) == at(
        "2026-12-02T11:07:00"
    )


def test_cron_fires_at_wall_clock_time_in_its_time_zone() -> None:
    # 03:00 in Rome is 02:00 UTC in winter and 01:00 UTC in summer.
    expression = parse_expression("cron(0 3 * * ? *)")
    assert next_run(expression, "Europe/Rome", at("2026-12-02T10:00:00")) == at(
        "2026-12-03T02:00:00"
    )
    assert next_run(expression, "Europe/Rome", at("2026-07-01T10:00:00")) == at(
        "2026-07-02T01:00:00"
    )


def test_cron_day_of_week_counts_from_sunday_as_1() -> None:
    # 2026-12-02 is a Wednesday; AWS's 2 is Monday.
    expression = parse_expression("cron(0 9 ? * 2 *)")
    assert next_run(expression, "UTC", at("2026-12-02T10:00:00")) == at("2026-12-07T09:00:00")
    named = parse_expression("cron(0 9 ? * MON *)")
    assert next_run(named, "UTC", at("2026-12-02T10:00:00")) == at("2026-12-07T09:00:00")


def test_cron_years_bound_the_schedule() -> None:
    expression = parse_expression("cron(0 0 1 1 ? 2030)")
    assert next_run(expression, "UTC", at("2026-12-02T10:00:00")) == at("2030-01-01T00:00:00")
    past = parse_expression("cron(0 0 1 1 ? 2020)")
    assert next_run(past, "UTC", at("2026-12-02T10:00:00")) is None


def test_a_cron_restricted_to_future_years_is_computed_without_stepping_through_today() -> None:
    import time

    # Every minute, but only in 2030: the first run is the first minute of 2030.
    expression = parse_expression("cron(* * * * ? 2030-2031)")
    started = time.monotonic()
    assert next_run(expression, "UTC", at("2026-12-02T10:00:00")) == at("2030-01-01T00:00:00")
    assert time.monotonic() - started < 2  # stepping minute by minute took about a minute
