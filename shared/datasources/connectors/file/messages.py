"""How a file source words what went wrong: short, and never a raw upstream dump."""

from __future__ import annotations

from datasources.errors import ConnectionFailed
from datasources.limits import DeadlineExceeded

_MESSAGE_CHARS = 300


def timeout_error(exc: DeadlineExceeded) -> ConnectionFailed:
    return ConnectionFailed(str(exc), stage="timeout")


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
