"""The one parser for JSON that arrives base64url-encoded from a caller.

Bearer tokens (the header and claims of a JWT) and paging tokens (`next_token`) are
both caller-controlled JSON inside base64url. Both go through `decode_segment`, which
bounds the size, checks the nesting depth *before* `json.loads` (whose recursion a few
thousand brackets deep ends in a RecursionError), refuses NaN, Infinity and numbers
that overflow to infinity, refuses duplicate keys, and only returns a JSON object.
Every failure is a `TokenError` (a ValueError), which callers turn into a 401 or 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

# A JWT header or claim set nests a few levels at most (e.g. `realm_access.roles`).
MAX_JWT_DEPTH = 16
# A paging token is one flat object: {"pk": ..., "sk": ...}.
MAX_PAGE_TOKEN_DEPTH = 1
MAX_PAGE_TOKEN_CHARS = 2048

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class TokenError(ValueError):
    """A token segment that is not a bounded, finite, flat-enough JSON object."""


def encode_segment(value: dict[str, Any]) -> str:
    """The base64url (unpadded) encoding of a JSON object, compact."""
    raw = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_segment(segment: str, *, max_chars: int, max_depth: int) -> dict[str, Any]:
    """Decode one base64url segment into a JSON object, within the given bounds."""
    return parse_object(b64url_decode(segment, max_chars=max_chars), max_depth=max_depth)


def b64url_decode(segment: str, *, max_chars: int) -> bytes:
    """Strict base64url (padding optional): only the URL-safe alphabet, at most `max_chars`."""
    if len(segment) > max_chars:
        raise TokenError("token segment is too large")
    body = segment.rstrip("=")
    # fullmatch: `$` in Python's re would also match before a trailing newline.
    if _B64URL.fullmatch(body) is None or len(segment) - len(body) > 2:
        raise TokenError("token segment is not base64url")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("token segment is not base64url") from None


def parse_object(raw: bytes, *, max_depth: int) -> dict[str, Any]:
    """A JSON object from `raw`, refusing deep nesting, non-finite numbers and duplicate keys."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("token segment is not UTF-8") from None
    if nesting_depth(text, stop_above=max_depth) > max_depth:
        raise TokenError("token segment is nested too deeply")
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except TokenError:
        raise
    except ValueError:  # JSONDecodeError, and the int digit limit
        raise TokenError("token segment is not valid JSON") from None
    if not isinstance(value, dict):
        raise TokenError("token segment is not a JSON object")
    return value


def nesting_depth(text: str, *, stop_above: int) -> int:
    """How deeply arrays and objects nest in JSON `text`; stops counting past `stop_above`.

    Brackets inside strings do not count. Malformed text is left for `json.loads` to refuse.
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def finite_number(value: object) -> float | None:
    """`value` as a float when it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return number if math.isfinite(number) else None


def _refuse_constant(name: str) -> Any:
    raise TokenError(f"token segment contains {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 parses to inf
        raise TokenError("token segment contains a number out of range")
    return number


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two `sub` claims would let two parsers disagree on who the caller is.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise TokenError("token segment repeats a key")
    return result
