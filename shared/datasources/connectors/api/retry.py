"""When to retry an API request, and after how long: a pure policy, tested without sleeping.

429 and 5xx are retried with exponential backoff and equal jitter, honouring
`Retry-After` (seconds or an HTTP date), while the total wait stays within the budget
(`max_retry_wait_seconds`; `discover` uses at most `DISCOVER_BUDGET_SECONDS`, `check`
none, because both answer an API Gateway request). Timeouts, refused connections and
broken transfers get `MAX_TRANSPORT_ATTEMPTS - 1` retries in the same budget. Other
4xx, TLS, DNS and policy failures are never retried. No retry is planned past the
function's deadline, and never more than `MAX_ATTEMPTS` attempts.

`RetryPolicy.decide` answers one question: given what the last attempt ended with,
wait how long, or give up with what note. The caller sleeps and counts.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_ATTEMPTS = 8  # per request, whatever the wait budget
MAX_TRANSPORT_ATTEMPTS = 3  # a timeout or refused connection is retried twice at most
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
DISCOVER_BUDGET_SECONDS = 10.0

# Failure stages of a request that another attempt may cure.
TRANSIENT_STAGES = frozenset({"timeout", "tcp", "transport"})


def retryable_status(status: int) -> bool:
    """429 and 5xx: the API may answer differently a moment later."""
    return status == 429 or 500 <= status < 600


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Decision:
    """Retry after `wait` seconds, or (`wait` None) give up; `note` ends the message."""

    wait: float | None
    note: str = ""

    @property
    def retry(self) -> bool:
        return self.wait is not None


@dataclass
class RetryPolicy:
    """Backoff within `budget_seconds` of total waiting (None: never retry)."""

    budget_seconds: float | None
    rng: random.Random = field(default_factory=random.Random)
    max_attempts: int = MAX_ATTEMPTS
    max_transport_attempts: int = MAX_TRANSPORT_ATTEMPTS

    def backoff(self, attempt: int) -> float:
        """Equal jitter: never less than half the exponential step, so retries back off."""
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def decide(
        self,
        attempt: int,
        *,
        waited: float,
        status: int | None = None,
        stage: str | None = None,
        transport_failures: int = 0,
        headers: Mapping[str, str] | None = None,
        time_left: float | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """What to do after attempt `attempt` (0-based) failed.

        `status` is the HTTP status of an answer, or `stage` the failure stage of a
        request that got none (`transport_failures` counts those, this one included).
        `waited` is the time already slept for this request; `time_left` the seconds
        until the function's deadline (None: no deadline).
        """
        if self.budget_seconds is None:
            return Decision(None)
        if status is None:
            if stage not in TRANSIENT_STAGES or transport_failures >= self.max_transport_attempts:
                return Decision(None)
        elif not retryable_status(status):
            return Decision(None)
        told = parse_retry_after((headers or {}).get("retry-after"), now) if status else None
        wait = told if told is not None else self.backoff(attempt)
        if time_left is not None and wait >= time_left:
            return Decision(None, " (no time left in this request to retry)")
        last_attempt = attempt + 1 >= self.max_attempts
        if last_attempt or waited + wait > self.budget_seconds:
            if told is not None and not last_attempt:
                return Decision(
                    None,
                    f"; the API asked to retry after {wait:.0f} s, beyond the retry "
                    f"budget (max_retry_wait_seconds={self.budget_seconds:g})",
                )
            return Decision(
                None, f" (gave up after {attempt + 1} attempts, {waited:.1f} s of waiting)"
            )
        return Decision(wait)
