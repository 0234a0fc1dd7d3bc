"""EventBridge Scheduler expressions: `rate(...)` and `cron(...)`, checked and stepped.

The schedule endpoint validates with this module and computes `next_run_at`; the
local stack's scheduler loop uses the same `next_run` to fire at the real times, so
what is accepted, shown and fired follows one rule.

AWS cron has six fields (minutes hours day-of-month month day-of-week year), `?` in
exactly one of the two day fields, and day-of-week numbered 1 (SUN) to 7 (SAT).
Classic cron (cronsim's) numbers SUN as 0: the day-of-week numbers are shifted and
the year field is checked here, the rest is cronsim's.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ON_UPLOAD = "on_upload"
MIN_RATE_MINUTES = 1
_RATE = re.compile(r"^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]{1,200})\)$")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}
_YEAR = re.compile(r"^(\*|\d{4}(-\d{4})?(/\d{1,3})?(,\d{4}(-\d{4})?)*)$")
# A day-of-week number not following '#' (which counts weeks) or '/' (a step).
_DOW_NUMBER = re.compile(r"(?<![#/\d])([1-7])(?!\d)")


def is_timed(config: dict[str, Any] | None) -> bool:
    """Whether a source's schedule config has a Scheduler schedule (not `on_upload`)."""
    return bool(config) and config is not None and config.get("schedule") != ON_UPLOAD


class ExpressionError(ValueError):
    """The expression is not a schedule EventBridge Scheduler would accept here."""


@dataclass(frozen=True)
class Expression:
    text: str
    rate_minutes: int | None = None
    classic_cron: str | None = None
    years: str = "*"


def parse_expression(text: str) -> Expression:
    """Check a `rate()` / `cron()` expression; raise ExpressionError with the reason."""
    rate = _RATE.match(text)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2)
        if amount < 1:
            raise ExpressionError("a rate must be at least 1")
        singular = unit.rstrip("s")
        if (amount == 1) != (unit == singular):
            raise ExpressionError(f"write rate(1 {singular}) or rate(N {singular}s)")
        minutes = amount * _UNIT_MINUTES[singular]
        if minutes < MIN_RATE_MINUTES:
            raise ExpressionError("a rate must be at least one minute")
        return Expression(text, rate_minutes=minutes)
    cron = _CRON.match(text)
    if not cron:
        raise ExpressionError(
            "schedule must be rate(N minutes|hours|days), cron(min hour dom month dow year) "
            "or on_upload"
        )
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ExpressionError(
            "cron() takes six fields: minutes hours day-of-month month day-of-week year"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ExpressionError("cron(): exactly one of day-of-month and day-of-week must be '?'")
    if not _YEAR.match(year):
        raise ExpressionError("cron(): the year field must be '*', a year, a range or a list")
    if dow != "?":
        dow = _DOW_NUMBER.sub(lambda m: str(int(m.group(1)) - 1), dow)
    classic = " ".join(
        [minute, hour, "*" if dom == "?" else dom, month, "*" if dow == "?" else dow]
    )
    from cronsim import CronSim, CronSimError

    try:
        CronSim(classic, dt.datetime(2025, 1, 1))
    except CronSimError as exc:
        raise ExpressionError(f"cron(): {exc}") from None
    return Expression(text, classic_cron=classic, years=year)


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; ExpressionError when unknown."""
    if not re.match(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$", name) or len(name) > 64:
        raise ExpressionError(f"unknown time zone '{name[:64]}'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"unknown time zone '{name}'") from None


def next_run(
    expression: Expression, timezone: str, after: dt.datetime, *, anchor: dt.datetime | None = None
) -> dt.datetime | None:
    """The first fire time strictly after `after` (UTC), or None when there is none.

    A rate schedule fires every N minutes from `anchor` (when it was set), as Scheduler
    does from its creation; a cron schedule fires at its wall-clock times in `timezone`.
    """
    if expression.rate_minutes is not None:
        start = anchor or after
        step = dt.timedelta(minutes=expression.rate_minutes)
        if start > after:
            return start
        periods = (after - start) // step + 1
        return start + periods * step
    assert expression.classic_cron is not None
    from cronsim import CronSim

    tz = zone(timezone)
    start = after.astimezone(tz).replace(microsecond=0)
    years = _years(expression.years)
    last_year = max(years) if years else 2199
    while True:
        for candidate in CronSim(expression.classic_cron, start):
            if candidate.year > last_year:
                return None
            if years is None or candidate.year in years:
                fired = candidate.astimezone(dt.UTC)
                if fired > after:
                    return fired
                continue
            # Not an allowed year: jump to the start of the next one instead of stepping
            # through every time of this one (a per-minute cron has half a million).
            following = min((y for y in years if y > candidate.year), default=None)
            if following is None:
                return None
            start = dt.datetime(following, 1, 1, tzinfo=tz) - dt.timedelta(minutes=1)
            break
        else:
            return None


def _years(field: str) -> set[int] | None:
    if field == "*":
        return None
    out: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        first, _, last = span.partition("-")
        out.update(range(int(first), int(last or first) + 1, int(step or 1)))
    return out
