"""Column types of API records: inferred from a page, widened by later pages, written
as Arrow.

Columns are inferred from a page of records: string, integer, decimal, number,
boolean, timestamp_tz / timestamp / date for ISO-8601-looking strings, json for objects
and arrays. Bodies are parsed with every non-integer number kept as the `Decimal` of its
literal text (`records.parse`): a column whose sampled numbers are all plain decimal
literals (`0.99`, `12.50`, integers beside them) is `decimal(p, s)` by
`datasources.types.infer_decimal` and lands as Arrow `decimal128(p, s)`, exactly; other
numbers are float64. Batches are pyarrow Tables typed that way
(`datasources.types.arrow_type`): timestamps are parsed (tz-aware ones to UTC,
microseconds), objects and arrays are JSON text. A later value that does not fit its
column widens the column (integer -> number -> string), except a decimal column: a
value that does not fit it fails the batch (`DecimalMismatch`, naming the column and
the kind of value) rather than being rounded or turned into text. A new key adds a
column; changes are noted on the batch. Cursor candidates are the update columns ranked
by `datasources.types`, the rule every connector shares.

Inside a read, a column's kind is a string: a normalized type, or `decimal(p,s)`.
"""

from __future__ import annotations

import decimal
import functools
import re
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from datasources.connectors.api.records import dumps, json_type, lookup
from datasources.connectors.base import Column
from datasources.models.connection import ApiResource
from datasources.types import (
    NormalizedType,
    arrow_type,
    cursor_candidates,
    infer_decimal,
    is_update_cursor_name,
)

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# Every inferred kind but these can order records (strings too: APIs send ids as text).
_NOT_CURSORS = frozenset({"json", "boolean"})
_DECIMAL_KIND = re.compile(r"^decimal\((\d+),(\d+)\)$")
_NATIVE = {
    "boolean": "boolean",
    "integer": "integer",
    "number": "number",
    "string": "string",
    "timestamp_tz": "string(date-time)",
    "timestamp": "string(date-time)",
    "date": "string(date)",
}


def value_kind(value: Any) -> str | None:
    """The column kind one JSON value suggests (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if -(2**63) <= value < 2**63 else "string"
    if isinstance(value, float | decimal.Decimal):
        return "number"
    if isinstance(value, str):
        return _string_kind(value)
    return "json"


class DecimalMismatch(ValueError):
    """A value that a decimal column cannot hold exactly; the message names both."""


@functools.cache  # a handful of kinds, looked up for every value
def decimal_of(kind: str) -> tuple[int, int] | None:
    """(precision, scale) of a `decimal(p,s)` kind, else None."""
    matched = _DECIMAL_KIND.match(kind)
    return (int(matched.group(1)), int(matched.group(2))) if matched else None


def column_kind(values: list[Any]) -> str:
    """The kind that holds every value: numbers that are all decimal literals make
    `decimal(p,s)`, other numbers `number`."""
    kind = merge_kinds({k for k in (value_kind(v) for v in values) if k is not None})
    if kind != "number":
        return kind
    literals = [str(v) for v in values if v is not None]
    inferred = infer_decimal(literals)
    return f"decimal({inferred[0]},{inferred[1]})" if inferred else kind


def normalized(kind: str) -> NormalizedType:
    """The normalized type of a kind."""
    return "decimal" if decimal_of(kind) else kind  # type: ignore[return-value]


def _string_kind(value: str) -> str:
    if _DATE_RE.match(value):
        return "date" if _parse_date(value) is not None else "string"
    match = _TIMESTAMP_RE.match(value)
    if match and _parse_timestamp(value) is not None:
        return "timestamp_tz" if match.group(4) else "timestamp"
    return "string"


def merge_kinds(kinds: set[str]) -> str:
    """One kind that holds values of all `kinds`."""
    if not kinds:
        return "string"
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"integer", "number"}:
        return "number"
    return "string"


def infer_kinds(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each key's kind over the records, in first-seen order."""
    values: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.items():
            values.setdefault(key, []).append(value)
    return {key: column_kind(found) for key, found in values.items()}


def infer_columns(records: list[dict[str, Any]]) -> list[Column]:
    """Columns over the union of the records' keys, in first-seen order."""
    natives: dict[str, set[str]] = {}
    for record in records:
        for key, value in record.items():
            kind = value_kind(value)
            found = natives.setdefault(key, set())
            if kind is not None:
                found.add(_NATIVE.get(kind) or json_type(value))
    # API fields are never guaranteed present: every column is nullable.
    return [
        Column(
            name=key,
            type=normalized(kind),
            native_type="|".join(sorted(natives[key])) or "null",
            nullable=True,
        )
        for key, kind in infer_kinds(records).items()
    ]


def primary_key(resource: ApiResource, records: list[dict[str, Any]]) -> list[str]:
    """The configured key, else `id` when it is present and unique over the sample."""
    if resource.primary_key:
        return list(resource.primary_key)
    # `id`, present and unique over the whole sample, is the primary key of nearly every API.
    ids = [record.get("id") for record in records]
    hashable = [v for v in ids if isinstance(v, str | int) and not isinstance(v, bool)]
    if records and len(hashable) == len(ids) and len(set(hashable)) == len(ids):
        return ["id"]
    return []


def resource_cursor_candidates(resource: ApiResource, columns: list[Column]) -> list[str]:
    """The configured incremental cursor, else the update columns, best first.

    Only update columns are offered: an API resource is re-read from its first page,
    so an insertion key would add nothing a full read does not already give.
    """
    if resource.incremental is not None:
        return [resource.incremental.cursor_field]
    kinds = {c.type for c in columns} - _NOT_CURSORS
    ranked = cursor_candidates([(c.name, c.type) for c in columns], types=kinds)
    return [name for name in ranked if is_update_cursor_name(name)]


def cursor_key(value: Any) -> tuple[int, Any]:
    """An order over cursor values: numbers, then timestamps, then other strings."""
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, str):
        parsed = _parse_timestamp(value) if _TIMESTAMP_RE.match(value) else None
        if parsed is None and _DATE_RE.match(value):
            day = _parse_date(value)
            parsed = datetime(day.year, day.month, day.day) if day else None
        if parsed is not None:
            aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            return (1, aware.timestamp())
        return (2, value)
    return (3, dumps(value))


def max_cursor(records: list[dict[str, Any]], field: str, current: Any) -> Any:
    """The greatest value of `field` over `records` and `current` (JSON-ready: a decimal
    cursor is kept as the JSON number it was)."""
    for record in records:
        value = lookup(record, field)
        if value is not None and (current is None or cursor_key(value) > cursor_key(current)):
            current = float(value) if isinstance(value, decimal.Decimal) else value
    return current


def at_or_after(records: list[dict[str, Any]], field: str, floor: Any) -> list[dict[str, Any]]:
    """The records whose `field` is at least `floor` (`>=`: boundary records repeat)."""
    bound = cursor_key(floor)
    return [r for r in records if (v := lookup(r, field)) is not None and cursor_key(v) >= bound]


def _parse_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _parse_timestamp(value: str) -> datetime | None:
    match = _TIMESTAMP_RE.match(value)
    if not match:
        return None
    day, clock, fraction, zone = match.groups()
    text = f"{day}T{clock}"
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")
    if zone:
        text += "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _fits(kind: str, value: Any) -> bool:
    if value is None or kind in ("string", "json"):
        return True
    found = value_kind(value)
    if kind == "number":
        return found in ("integer", "number")
    return found == kind


def _misfit(value: Any, precision: int, scale: int) -> str | None:
    """What keeps `value` out of decimal(precision, scale), or None when it fits."""
    if isinstance(value, decimal.Decimal):
        exact = value
    elif isinstance(value, int) and not isinstance(value, bool):
        exact = decimal.Decimal(value)
    else:
        return f"a JSON {json_type(value)}"
    if not exact.is_finite():
        return "a non-finite number"
    _, digits, exponent = exact.as_tuple()
    places = max(0, -int(exponent))
    whole = max(0, len(digits) + int(exponent))
    if places > scale:
        return f"a number with {places} decimal places"
    if whole > precision - scale:
        return f"a number with {whole} integer digits"
    return None


def _check_decimal(key: str, kind: str, precision: int, scale: int, value: Any) -> None:
    """DecimalMismatch unless `value` fits decimal(precision, scale) exactly."""
    what = None if value is None else _misfit(value, precision, scale)
    if what is not None:
        raise DecimalMismatch(
            f"column '{key}' was inferred as {kind} (exact amounts) from the first page, "
            f"but a later record holds {what}; the batch fails rather than rounding it"
        )


def widen(columns: dict[str, str], records: list[dict[str, Any]]) -> list[str]:
    """Make `columns` hold every value of `records` (in place); say what changed.

    DecimalMismatch for a value a decimal column cannot hold exactly.
    """
    notes: list[str] = []
    new_keys: dict[str, list[Any]] = {}
    for record in records:
        for key, value in record.items():
            kind = columns.get(key)
            if kind is None:
                new_keys.setdefault(key, []).append(value)
            elif (exact := decimal_of(kind)) is not None:
                _check_decimal(key, kind, exact[0], exact[1], value)
            elif not _fits(kind, value):
                wider = "number" if kind == "integer" and _fits("number", value) else "string"
                columns[key] = wider
                notes.append(f"column '{key}' widened from {kind} to {wider}")
    for key, values in new_keys.items():
        columns[key] = column_kind(values)
        notes.append(f"new column '{key}' ({columns[key]})")
    return notes


def _convert(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else dumps(value)
    if kind == "json":
        return dumps(value)
    if kind == "number":
        return float(value)
    if kind.startswith("decimal("):
        return value if isinstance(value, decimal.Decimal) else decimal.Decimal(value)
    if kind == "timestamp_tz":
        parsed = _parse_timestamp(value)
        return parsed.astimezone(UTC) if parsed else None
    if kind == "timestamp":
        return _parse_timestamp(value)
    if kind == "date":
        return _parse_date(value)
    return value


def to_arrow(columns: dict[str, str], records: list[dict[str, Any]]) -> pa.Table | None:
    """A pyarrow Table with one typed column per known key, or None without columns."""
    if not columns:
        return None
    arrays = []
    fields = []
    for name, kind in columns.items():
        values = [_convert(kind, record.get(name)) for record in records]
        exact = decimal_of(kind)
        if exact is not None:
            column_type = arrow_type("decimal", precision=exact[0], scale=exact[1])
        else:
            column_type = arrow_type(kind)
        arrays.append(pa.array(values, type=column_type))
        fields.append(pa.field(name, column_type, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
