"""The limits on what a parser is handed, and the checks that enforce them.

Both connectors that parse untrusted bytes (`file` and `api`) take their limits from
here, so a limit has one value and one wording. A breach raises `LimitExceeded` (a
ValueError, so the connectors' existing read-error paths turn it into a clear
`stage="read"` failure) whose message names the limit; `DeadlineExceeded` is the
time limit and maps to `stage="timeout"`.

Why each limit exists:
- Nesting depth. pyarrow's JSON reader recurses on the C stack: a line nested
  100,000 arrays deep crashes the process, and nesting in the hundreds already costs
  seconds (type inference is quadratic in depth). Python's own `json` raises
  RecursionError near 1,000. JSON is therefore scanned before any parser sees it.
- Values per document. A 60 MB `[{},{},...]` page becomes 20 million Python dicts
  (over 1.5 GB); counting structural characters first bounds that before parsing.
- Records per API page: what one page may add to a batch.
- Inflated size. A gzip stream may inflate to at most `MAX_INFLATE_RATIO` times the
  compressed bytes read so far (once past `INFLATE_FREE_BYTES`) and never past
  `MAX_INFLATED_BYTES`: a 2 MB .csv.gz that inflates to 2 GiB stops early.
- Parquet column chunks. A single 512 MiB value compresses to a few KiB; its column
  chunk's uncompressed size in the footer says so before any page is read.
- Time. Every read checks the deadline of the function it runs in (its remaining
  time less `DEADLINE_MARGIN_SECONDS`), so a slow upstream or a slow parse ends as a
  `timeout` failure the caller sees, not as a killed function or a gateway 504.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

# Records per batch of a sync when its options do not say.
DEFAULT_BATCH_SIZE = 10_000

MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 1_000_000  # per API body or per element of a .json file
MAX_PAGE_RECORDS = 100_000
MAX_INFLATE_RATIO = 100
INFLATE_FREE_BYTES = 16 << 20
MAX_INFLATED_BYTES = 4 << 30
MAX_PARQUET_CHUNK_BYTES = 128 << 20
DEADLINE_MARGIN_SECONDS = 2.0

# Everything but quotes, brackets, commas and newlines is dropped before strings are found.
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{},\n')
# What is left of a string that held structural characters; it stays on one line (a raw
# newline is invalid inside a JSON string), so a stray quote cannot hide later lines.
_STRING = re.compile(rb'"[^"\n]*"')
_OPEN = b"("
_PARENS = bytes.maketrans(b"[{]}", b"(())")


class LimitExceeded(ValueError):
    """Input past one of this module's limits; the message names the limit."""


class DeadlineExceeded(LimitExceeded):
    """The read ran into the deadline of the function it runs in."""


@dataclass(frozen=True)
class JsonShape:
    depth: int  # an upper bound of the nesting depth, exact for well-formed JSON
    values: int  # containers plus separators: about the number of values


def json_shape(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> JsonShape:
    """The nesting depth and value count of JSON text, without parsing it.

    Strings are removed first (brackets inside them do not nest), then only brackets
    and commas remain: bulk byte operations, several times faster than pyarrow's parse
    of the same text (README, Security). Depth: each pass removes every innermost `()`
    pair, so well-formed text needs exactly its depth in passes; openers never closed
    add to the bound. The passes stop once `max_depth` is exceeded.
    """
    # Escaped backslashes and quotes go first, so every quote left opens or closes a
    # string. Then only structure and quotes remain; `""` (a string without structure,
    # or a close and an open with nothing structural between) keeps every other
    # quote's parity, so what remains in quotes is exactly the structure inside strings.
    if b"\\" in data:  # a one-byte search is far cheaper than the two replaces
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in kept:
        kept = _STRING.sub(b"", kept)
    values = kept.count(b"[") + kept.count(b"{") + kept.count(b",")
    nesting = kept.translate(_PARENS, b'"\n,')
    passes = 0
    while passes <= max_depth:
        reduced = nesting.replace(b"()", b"")
        if len(reduced) == len(nesting):
            break
        nesting = reduced
        passes += 1
    return JsonShape(passes + nesting.count(_OPEN), values)


def check_json(
    data: bytes,
    what: str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_values: int | None = MAX_JSON_VALUES,
) -> None:
    """Refuse JSON text nested deeper than `max_depth` or holding more than `max_values`
    values, before a parser builds anything from it."""
    shape = json_shape(data, max_depth=max_depth)
    if max_values is not None and shape.values > max_values:
        raise LimitExceeded(
            f"{what} holds more than {max_values} JSON values (limit: values per document)"
        )
    if shape.depth > max_depth:
        raise LimitExceeded(
            f"{what} is nested more than {max_depth} levels deep (limit: JSON nesting depth)"
        )


def depth_error(what: str) -> LimitExceeded:
    """The error for a document Python's own parser found too deep (RecursionError)."""
    return LimitExceeded(
        f"{what} is nested more than {MAX_JSON_DEPTH} levels deep (limit: JSON nesting depth)"
    )


# ---------------------------------------------------------------------- deadline

_DEADLINE: ContextVar[float | None] = ContextVar("datasources_read_deadline", default=None)


@contextmanager
def deadline_from(remaining_ms: int) -> Iterator[float]:
    """Within the block, `current_deadline()` is the function's end less the margin
    (a `time.monotonic()` value); handlers and the worker wrap their work in it.

    The margin is DEADLINE_MARGIN_SECONDS, or a tenth of the remaining time when that
    is shorter: enough to turn the timeout into a response or a recorded failure.
    """
    remaining = max(0.0, remaining_ms / 1000)
    deadline = time.monotonic() + remaining - min(DEADLINE_MARGIN_SECONDS, remaining / 10)
    token = _DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def current_deadline() -> float | None:
    """The deadline set by the enclosing `deadline_from`, or None outside one."""
    return _DEADLINE.get()


def seconds_left(deadline: float | None, what: str) -> float | None:
    """Seconds until `deadline` (None: no deadline); DeadlineExceeded once it passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(
            f"{what} did not finish before this function's time ran out "
            "(limit: the function's remaining time less a margin)"
        )
    return left


def shut_at_deadline(sock: socket.socket, deadline: float | None) -> threading.Timer | None:
    """Shut `sock` down when `deadline` passes, so that a blocked read returns at once.

    Socket timeouts bound each read, not their sum: an upstream sending a byte a
    second never trips them. The timer ends the connection instead; the caller sees
    the read fail, finds the deadline passed (`seconds_left`) and reports a timeout.
    Cancel the timer when the connection closes.
    """
    if deadline is None:
        return None

    def shut() -> None:
        with contextlib.suppress(OSError):  # already closed: nothing left to stop
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), shut)
    timer.daemon = True
    timer.start()
    return timer


# ---------------------------------------------------------------------- inflated size


class InflateGuard:
    """Counts compressed bytes in and inflated bytes out of one gzip stream."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.compressed = 0
        self.inflated = 0

    def counting(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        """`read` of the compressed stream, counted."""

        def counted(size: int) -> bytes:
            data = read(size)
            self.compressed += len(data)
            return data

        return counted

    def add(self, size: int) -> None:
        """Account `size` inflated bytes; LimitExceeded past the ratio or the cap."""
        self.inflated += size
        if self.inflated > MAX_INFLATED_BYTES:
            raise LimitExceeded(
                f"'{self.name}' inflates to more than {MAX_INFLATED_BYTES} bytes "
                "(limit: inflated size of a compressed file)"
            )
        if self.inflated > INFLATE_FREE_BYTES and self.inflated > MAX_INFLATE_RATIO * max(
            self.compressed, 1
        ):
            raise LimitExceeded(
                f"'{self.name}' inflates more than {MAX_INFLATE_RATIO} times its compressed "
                "size (limit: compression ratio)"
            )
