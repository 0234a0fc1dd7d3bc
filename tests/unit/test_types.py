"""The one types module: Arrow mapping, decimal inference from text, cursor rules."""

from __future__ import annotations

import pyarrow as pa
import pytest

from datasources import types


@pytest.mark.parametrize(
    ("kind", "precision", "scale", "expected"),
    [
        ("integer", None, None, pa.int64()),
        ("number", None, None, pa.float64()),
        ("decimal", 12, 4, pa.decimal128(12, 4)),
        ("decimal", None, None, pa.string()),  # unknown scale: exact text, never a float
        ("decimal", 39, 2, pa.string()),  # wider than decimal128
        ("decimal", 5, 6, pa.string()),  # scale beyond precision: not a valid decimal
        ("timestamp_tz", None, None, pa.timestamp("us", tz="UTC")),
        ("timestamp", None, None, pa.timestamp("us")),
        ("json", None, None, pa.string()),
        ("array", None, None, pa.string()),
        ("binary", None, None, pa.binary()),
        ("time", None, None, pa.time64("us")),
    ],
)
def test_arrow_type(
    kind: str, precision: int | None, scale: int | None, expected: pa.DataType
) -> None:
    assert types.arrow_type(kind, precision=precision, scale=scale) == expected


@pytest.mark.parametrize(
    ("arrow", "expected"),
    [
        (pa.int32(), "integer"),
        (pa.float32(), "number"),
        (pa.decimal128(10, 2), "decimal"),
        (pa.timestamp("ms", tz="Europe/Paris"), "timestamp_tz"),
        (pa.timestamp("ns"), "timestamp"),
        (pa.list_(pa.int64()), "array"),
        (pa.struct([("a", pa.int64())]), "json"),
        (pa.large_string(), "string"),
        (pa.large_binary(), "binary"),
    ],
)
def test_normalized_type(arrow: pa.DataType, expected: str) -> None:
    assert types.normalized_type(arrow) == expected


def test_round_trip_of_every_simple_type() -> None:
    for kind in (
        "integer",
        "number",
        "boolean",
        "date",
        "time",
        "timestamp",
        "timestamp_tz",
        "binary",
    ):
        assert types.normalized_type(types.arrow_type(kind)) == kind


@pytest.mark.parametrize(
    ("literals", "expected"),
    [
        (["0.99", "1.98", "12.50"], (2 + 2 + 6, 2)),
        (["0.99", "3", ""], (1 + 2 + 6, 2)),  # integers and blanks fit beside amounts
        (["-1234.5", "+7.125"], (4 + 3 + 6, 3)),
        (["1", "2", "3"], None),  # no point anywhere: an integer column
        (["1e3", "0.5"], None),  # an exponent is a float literal
        (["0.1234567891"], None),  # past the maximum scale: a measurement
        (["1,000.00"], None),  # separators are not decimal text
        (["abc"], None),
        ([], None),
        (["1" * 35 + ".123"], (38, 3)),  # capped at decimal128's 38 digits
        (["1" * 36 + ".123"], None),  # 39 digits cannot be exact in decimal128
    ],
)
def test_infer_decimal(literals: list[str], expected: tuple[int, int] | None) -> None:
    assert types.infer_decimal(literals) == expected


@pytest.mark.parametrize(
    "name",
    [
        "updated_at",
        "UpdatedAt",
        "LastUpdated",
        "last_updated",
        "LAST-UPDATED",
        "Modified Date",
        "mtime",
    ],
)
def test_update_names_are_case_and_separator_insensitive(name: str) -> None:
    assert types.is_update_cursor_name(name)
    assert types.cursor_candidates([(name, "timestamp")]) == [name]


def test_ranking_updates_then_key_then_id_then_creation() -> None:
    columns = [
        ("created_at", "timestamp"),
        ("id", "integer"),
        ("row_no", "integer"),
        ("LastUpdated", "timestamp"),
        ("updated_at", "timestamp_tz"),
        ("title", "string"),
    ]
    assert types.cursor_candidates(columns, ["row_no"]) == [
        "updated_at",
        "LastUpdated",
        "row_no",
        "id",
        "created_at",
    ]


def test_only_ordering_types_qualify_unless_widened() -> None:
    columns = [("updated_at", "string"), ("modified", "boolean")]
    assert types.cursor_candidates(columns) == []
    assert types.cursor_candidates(columns, types={"string"}) == ["updated_at"]


def test_same_key_ranks_in_table_order() -> None:
    assert types.cursor_candidates([("UpdatedAt", "timestamp"), ("updated_at", "timestamp")]) == [
        "UpdatedAt",
        "updated_at",
    ]


def test_choose_cursor() -> None:
    assert types.choose_cursor(["id", "LastUpdated"], None) == "LastUpdated"
    assert types.choose_cursor(["id", "created_at"], None) == "id"
    assert types.choose_cursor(["id"], "other") == "other"
    assert types.choose_cursor([], None) is None


@pytest.mark.parametrize(
    ("cursor", "captures"),
    [
        ("updated_at", "inserts_and_updates"),
        ("LastUpdated", "inserts_and_updates"),
        ("xmin", "inserts_and_updates"),  # PostgreSQL's row version moves on every update
        ("id", "inserts"),
        ("created_at", "inserts"),
        (None, None),
    ],
)
def test_incremental_captures_says_whether_updates_are_seen(
    cursor: str | None, captures: str | None
) -> None:
    assert types.incremental_captures(cursor) == captures
