"""Finding the records in an API response body.

`records_path` is a dotted path to the list of records (`.` = the whole body). Without
it: a list body is the records; in an object body the records are the list under
`data`, `results`, `items`, `records`, ... or the only list-valued key; otherwise the
error asks for `records_path`. Scalars in the list become `{"value": x}`. The key found
on the first page is kept for the run (and in the resume token).
"""

from __future__ import annotations

import decimal
import json
from typing import Any

from datasources.limits import MAX_PAGE_RECORDS

RECORD_KEYS = ("data", "results", "items", "records", "entries", "rows", "objects", "values")


class RecordsError(ValueError):
    """The body holds no usable list of records; the message says what to set."""


class _Missing:
    pass


MISSING: Any = _Missing()


def lookup(body: Any, path: str, missing: Any = None) -> Any:
    """The value at a dotted path (`a.b.0.c`), or `missing`."""
    if isinstance(body, dict) and path in body:
        return body[path]  # keys such as "@odata.nextLink" contain a dot
    value = body
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return missing
    return value


def find_records(
    body: Any, *, records_path: str | None, records_key: str | None, resource: str, where: str
) -> tuple[list[dict[str, Any]], str | None]:
    """(the page's records, the records key to keep for the run); RecordsError."""
    path = records_path
    if path in (".", "$"):
        value = body
    elif path:
        value = lookup(body, path, missing=MISSING)
        if value is MISSING:
            raise RecordsError(
                f"records_path '{path}' was not found in the response from {where} ({shape(body)})"
            )
    elif isinstance(body, list):
        value = body
    elif isinstance(body, dict):
        if records_key is None:
            records_key = detect_records_key(body, resource, where)
        if records_key not in body:
            raise RecordsError(
                f"the response from {where} has no '{records_key}' list as the "
                f"first page had ({shape(body)}); set records_path"
            )
        value = body[records_key]
    else:
        raise RecordsError(
            f"the response from {where} is a JSON {json_type(body)}, not a list of "
            "records or an object holding one"
        )
    if value is None:
        return [], records_key
    if not isinstance(value, list):
        raise RecordsError(
            f"records_path '{path or records_key}' in the response from {where} holds "
            f"a JSON {json_type(value)}, not a list of records"
        )
    if len(value) > MAX_PAGE_RECORDS:
        raise RecordsError(
            f"the response from {where} holds {len(value)} records, over "
            f"{MAX_PAGE_RECORDS} (limit: records per page); use a smaller page size"
        )
    records = [item if isinstance(item, dict) else {"value": item} for item in value]
    return records, records_key


def detect_records_key(body: dict[str, Any], resource_name: str, where: str) -> str:
    """The key of the list that holds the records in an object body; RecordsError."""
    lists = [key for key, value in body.items() if isinstance(value, list)]
    for key in (*RECORD_KEYS, resource_name):
        if key in lists:
            return key
    if len(lists) == 1:
        return lists[0]
    if not lists:
        # An empty first page often says `"data": null`; take the usual key if present.
        for key in RECORD_KEYS:
            if key in body and body[key] is None:
                return key
        raise RecordsError(
            f"could not find a list of records in the response from {where} "
            f"({shape(body)}); set records_path"
        )
    raise RecordsError(
        f"the response from {where} has several lists ({', '.join(lists[:10])}); set "
        "records_path to the one that holds the records"
    )


def shape(body: Any) -> str:
    """A short description of a body for error messages (its top-level keys)."""
    if isinstance(body, dict):
        keys = ", ".join(list(body)[:15])
        return f"top-level keys: {keys}" if keys else "an empty object"
    return f"a JSON {json_type(body)}"


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | decimal.Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse(body: bytes) -> Any:
    """A JSON body with every non-integer number kept as the `Decimal` of its literal
    text, so an amount such as `0.10` can land exactly (`typing`)."""
    return json.loads(body, parse_float=decimal.Decimal)


def dumps(value: Any) -> str:
    """Canonical JSON text of a value (sorted keys, compact); decimals as JSON numbers."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_number
    )


def _number(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
