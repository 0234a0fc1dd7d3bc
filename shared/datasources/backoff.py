"""Retries of the part of a batch call that AWS left undone, with a growing, jittered wait.

DynamoDB's BatchWriteItem/BatchGetItem, SQS's SendMessageBatch and S3's DeleteObjects
succeed as a call while leaving some entries undone (throttled, or an internal error
on AWS's side). Asking again at once, in a loop, only adds load where it is already
short: each retry waits up to twice as long as the one before ("full jitter": a
random time below the growing bound, so many callers do not retry in step), and the
number of calls is bounded.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

Pending = TypeVar("Pending")


@dataclass(frozen=True)
class Backoff:
    """`attempts` calls in all; the wait before retry n (from 1) is below
    min(cap_seconds, base_seconds * 2**(n-1))."""

    attempts: int = 8
    base_seconds: float = 0.05
    cap_seconds: float = 5.0

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        return rand() * min(self.cap_seconds, self.base_seconds * 2 ** (retry - 1))


DEFAULT = Backoff()


def send_until_done(
    send: Callable[[Pending], Pending | None],
    pending: Pending,
    *,
    policy: Backoff = DEFAULT,
    sleep: Callable[[float], None] | None = None,
    rand: Callable[[], float] = random.random,
) -> Pending | None:
    """Call `send(pending)`, which returns what it left undone (empty or None: all done),
    again with what is left until nothing is or `policy.attempts` calls were made.

    Returns what is still undone after the last call (None when all went through): the
    caller decides whether that is an error. `sleep` defaults to `time.sleep`.
    """
    for retry in range(policy.attempts):
        if retry:
            (sleep or time.sleep)(policy.delay(retry, rand))
        left = send(pending)
        if not left:
            return None
        pending = left
    return pending
