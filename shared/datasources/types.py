"""The normalized column types, their Arrow mapping, and the rules for cursor columns.

Every connector describes its columns with one of the normalized types below and every
writer turns them into Arrow the same way; every connector and the engine rank cursor
candidates with the same rules, so the same table gets the same cursor on every engine.
This module is pure: no AWS, no connector, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pyarrow as pa

NormalizedType = Literal[
    "string",
    "integer",
    "number",
    "decimal",
    "boolean",
    "date",
    "time",
    "timestamp",
    "timestamp_tz",
    "json",
    "binary",
    "array",
]

# Arrow's decimal128 holds at most 38 digits.
MAX_DECIMAL_PRECISION = 38


def arrow_type(kind: str, *, precision: int | None = None, scale: int | None = None) -> pa.DataType:
    """The Arrow type values of a normalized type are written with.

    A decimal is exact only when its precision and scale are known and fit decimal128;
    otherwise it is written as its decimal text, never rounded through a float.
    `json` and `array` values are written as JSON text.
    """
    import pyarrow as pa

    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "decimal":
        if precision is not None and 0 < precision <= MAX_DECIMAL_PRECISION:
            s = scale or 0
            if 0 <= s <= precision:
                return pa.decimal128(precision, s)
        return pa.string()
    if kind == "boolean":
        return pa.bool_()
    if kind == "date":
        return pa.date32()
    if kind == "time":
        return pa.time64("us")
    if kind == "timestamp":
        return pa.timestamp("us")
    if kind == "timestamp_tz":
        return pa.timestamp("us", tz="UTC")
    if kind == "binary":
        return pa.binary()
    return pa.string()


def normalized_type(arrow: pa.DataType) -> NormalizedType:
    """The normalized type of an Arrow type (files read by pyarrow, Parquet footers)."""
    import pyarrow as pa

    t = pa.types
    if t.is_boolean(arrow):
        return "boolean"
    if t.is_integer(arrow):
        return "integer"
    if t.is_floating(arrow):
        return "number"
    if t.is_decimal(arrow):
        return "decimal"
    if t.is_date(arrow):
        return "date"
    if t.is_time(arrow):
        return "time"
    if t.is_timestamp(arrow):
        return "timestamp_tz" if arrow.tz else "timestamp"
    if t.is_binary(arrow) or t.is_large_binary(arrow) or t.is_fixed_size_binary(arrow):
        return "binary"
    if t.is_list(arrow) or t.is_large_list(arrow) or t.is_fixed_size_list(arrow):
        return "array"
    if t.is_struct(arrow) or t.is_map(arrow):
        return "json"
    return "string"


# --- Exact decimals from text ------------------------------------------------------

# A plain decimal literal: no exponent, no thousands separators, at least one digit
# after the point. Integers without a point stay integers.
_DECIMAL_LITERAL = re.compile(r"[+-]?(\d+)\.(\d+)")
# More fractional digits than this, and the column is a measurement, not an amount.
MAX_INFERRED_DECIMAL_SCALE = 9
# Headroom over the widest sampled integer part, so later rows of the same column fit.
_INFERRED_PRECISION_HEADROOM = 6


def infer_decimal(literals: Iterable[str]) -> tuple[int, int] | None:
    """(precision, scale) when every sampled literal is a decimal text, else None.

    Text formats (CSV, JSON, API bodies) carry amounts such as `0.99` that a float
    would round. A column lands as `decimal128(p, s)` when each non-empty sample is a
    plain decimal literal (integers allowed, at least one with a point) with at most
    `MAX_INFERRED_DECIMAL_SCALE` fractional digits. A later value that does not fit
    fails its batch rather than being rounded.
    """
    widest_int = 0
    scale = 0
    saw_point = False
    for text in literals:
        text = text.strip()
        if not text:
            continue
        match = _DECIMAL_LITERAL.fullmatch(text)
        if match is None:
            if re.fullmatch(r"[+-]?\d+", text) is None:
                return None
            widest_int = max(widest_int, len(text.lstrip("+-").lstrip("0")) or 1)
            continue
        saw_point = True
        integer, fraction = match.groups()
        if len(fraction) > MAX_INFERRED_DECIMAL_SCALE:
            return None
        widest_int = max(widest_int, len(integer.lstrip("0")) or 1)
        scale = max(scale, len(fraction))
    if not saw_point:
        return None
    precision = min(MAX_DECIMAL_PRECISION, widest_int + scale + _INFERRED_PRECISION_HEADROOM)
    if widest_int + scale > precision:
        return None
    return precision, scale


# --- Cursor rules --------------------------------------------------------------------

# Names that say "this row's last change", best first. Compared by `cursor_name_key`,
# so `updated_at`, `UpdatedAt`, `updated-at` and `UPDATED AT` are the same name.
# An update column sees inserted and updated rows.
UPDATE_CURSOR_NAMES = (
    "updated_at",
    "modified_at",
    "last_modified",
    "last_modified_at",
    "last_updated",
    "last_updated_at",
    "last_update",
    "updated",
    "modified",
    "updated_on",
    "modified_on",
    "update_time",
    "updated_time",
    "modified_time",
    "last_update_time",
    "date_modified",
    "modified_date",
    "date_updated",
    "updated_date",
    "changed_at",
    "last_changed",
    "mtime",
)
# Names that say "when this row was created": they see new rows only.
INSERT_CURSOR_NAMES = (
    "created_at",
    "inserted_at",
    "created",
    "created_on",
    "creation_time",
    "create_time",
    "created_time",
    "date_created",
    "created_date",
    "inserted",
    "ctime",
)
# Types whose values order the rows they belong to.
CURSOR_TYPES = frozenset({"timestamp", "timestamp_tz", "date", "integer"})

_SEPARATORS = re.compile(r"[\s_\-.]+")


def cursor_name_key(name: str) -> str:
    """A column name compared without case or separators (`Last_Updated` → `lastupdated`)."""
    return _SEPARATORS.sub("", name).lower()


_UPDATE_RANK = {cursor_name_key(n): i for i, n in enumerate(UPDATE_CURSOR_NAMES)}
_INSERT_RANK = {cursor_name_key(n): i for i, n in enumerate(INSERT_CURSOR_NAMES)}


def is_update_cursor_name(name: str) -> bool:
    """Whether a column's name says it changes on every update."""
    return cursor_name_key(name) in _UPDATE_RANK


def cursor_candidates(
    columns: Sequence[tuple[str, str]],
    primary_key: Sequence[str] = (),
    *,
    types: Iterable[str] = CURSOR_TYPES,
) -> list[str]:
    """The columns that can order a stream's rows, best first.

    `columns` are (name, normalized type) pairs in table order. The ranking: update
    columns by `UPDATE_CURSOR_NAMES`, then a single-column integer primary key, then
    an integer `id`, then creation columns by `INSERT_CURSOR_NAMES`. Only columns of
    `types` qualify. Two columns with the same key (`updated_at`, `UpdatedAt`) rank in
    table order.
    """
    allowed = set(types)
    usable = [(name, kind) for name, kind in columns if kind in allowed]
    chosen: list[str] = []

    def ranked(rank: dict[str, int]) -> list[str]:
        hits = [
            (rank[cursor_name_key(n)], i, n)
            for i, (n, _) in enumerate(usable)
            if cursor_name_key(n) in rank
        ]
        return [n for _, _, n in sorted(hits)]

    def add(name: str) -> None:
        if name not in chosen:
            chosen.append(name)

    for name in ranked(_UPDATE_RANK):
        add(name)
    integer_names = {n for n, kind in usable if kind == "integer"}
    if len(primary_key) == 1 and primary_key[0] in integer_names:
        add(primary_key[0])
    for name, kind in usable:
        if kind == "integer" and name.lower() == "id":
            add(name)
            break
    for name in ranked(_INSERT_RANK):
        add(name)
    return chosen


# Pseudo-columns an engine offers as a cursor that change on every insert and update
# (PostgreSQL's row version); no user column of that engine can have the name.
ROW_VERSION_CURSORS = frozenset({"xmin"})

IncrementalCaptures = Literal["inserts", "inserts_and_updates"]


def incremental_captures(cursor: str | None) -> IncrementalCaptures | None:
    """What an incremental sync on `cursor` sees: updated rows too, or new rows only.

    An update column or a row version moves on every update; a key or a creation time
    does not. No cursor mode sees deletes. None: no cursor, full refresh only.
    """
    if cursor is None:
        return None
    if is_update_cursor_name(cursor) or cursor in ROW_VERSION_CURSORS:
        return "inserts_and_updates"
    return "inserts"


def choose_cursor(candidates: Sequence[str], requested: str | None) -> str | None:
    """The stream's cursor: the one asked for, else the best update column, else the first."""
    if requested:
        return requested
    for name in candidates:
        if is_update_cursor_name(name):
            return name
    return candidates[0] if candidates else None
