"""New ids and the current time as the API writes it: shared by services and the engine."""

from __future__ import annotations

import datetime as dt
import secrets


def now_iso() -> str:
    """Now, in UTC, to the millisecond: `2026-01-31T12:00:00.000Z`."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    """A random id such as `src_<20 hex digits>` (the patterns in models.common)."""
    return f"{prefix}_{secrets.token_hex(10)}"
