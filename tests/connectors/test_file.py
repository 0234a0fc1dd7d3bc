"""The file connector against S3 emulated in-process by moto, and a loopback HTTP server.

Every fixture file is generated here, uploaded to a fresh bucket, and read back through
the connector, so each test proves the behaviour end to end: listing, streaming,
parsing, typing, batching, resumption and incremental filtering.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import http.server
import io
import json
import ssl
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from datasources.config import Settings
from datasources.connectors.base import Batch, ConnectorContext, StreamState
from datasources.connectors.file import FileConnector
from datasources.connectors.registry import get_connector
from datasources.errors import ConnectionFailed, SourceReadError, ValidationFailed
from datasources.models.connection import FileConfig

BUCKET = "source-files"
REGION = "us-east-1"


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials so boto3 never looks for real ones (moto answers every call)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def context(s3: Any) -> ConnectorContext:
    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("region_name", REGION)
        return boto3.client("s3", **kwargs)

    return ConnectorContext(settings=Settings(), s3_client_factory=factory)


def put(s3: Any, key: str, body: bytes | str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)


def connector(context: ConnectorContext, url: str, **options: Any) -> FileConnector:
    return FileConnector(FileConfig(url=url, **options), context)


def read_all(
    conn: FileConnector, batch_size: int = 10_000, state: StreamState | None = None
) -> list[Batch]:
    return list(conn.read(conn.stream_name, state or StreamState(), batch_size))


def rows_of(batches: list[Batch]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for batch in batches:
        assert isinstance(batch.records, pa.Table)
        out.extend(batch.records.to_pylist())
    return out


def column_types(conn: FileConnector) -> dict[str, str]:
    (table,) = conn.discover()
    return {c.name: c.type for c in table.columns}


def csv_text(header: list[str], rows: list[list[Any]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


MIXED_CSV = (
    "id,Unit Price,active,day,seen_at,updated_at,name,note\n"
    "1,9.5,true,2024-01-02,2024-01-02 03:04:05,2024-01-02T03:04:05Z,Zoë,\n"
    '2,,false,2024-02-03,2024-02-03 10:00:00,2024-02-03T10:00:00+02:00,"東京, Japan",\n'
    "3,0.25,true,2024-03-04,2024-03-04 23:59:59,2024-03-04T00:00:00Z,plain,\n"
)


# ---------------------------------------------------------------------- formats and types


def test_csv_with_header_infers_types_and_keeps_header_names(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "exports/orders.csv", MIXED_CSV)
    conn = connector(context, f"s3://{BUCKET}/exports/orders.csv")

    (table,) = conn.discover()
    assert table.name == "orders"
    assert {c.name: c.type for c in table.columns} == {
        "id": "integer",
        "Unit Price": "decimal",  # 9.5, 0.25: exact amounts, not floats
        "active": "boolean",
        "day": "date",
        "seen_at": "timestamp",
        "updated_at": "timestamp_tz",
        "name": "string",
        "note": "string",  # empty everywhere: null values, typed as string
    }
    assert table.primary_key == []
    assert table.cursor_candidates == ["updated_at", "id"]
    assert table.row_count_estimate is None
    assert {c.name: c.native_type for c in table.columns}["id"] == "int64"

    rows = rows_of(read_all(conn))
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert rows[0]["Unit Price"] == 9.5 and rows[1]["Unit Price"] is None
    assert rows[0]["active"] is True and rows[1]["active"] is False
    assert rows[1]["day"] == dt.date(2024, 2, 3)
    assert rows[0]["seen_at"] == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert rows[1]["updated_at"] == dt.datetime(2024, 2, 3, 8, 0, tzinfo=dt.UTC)
    assert [r["name"] for r in rows] == ["Zoë", "東京, Japan", "plain"]
    assert all(r["note"] is None for r in rows)


def test_tsv_is_read_with_tab_delimiter(s3: Any, context: ConnectorContext) -> None:
    put(s3, "t/people.tsv", csv_text(["id", "name"], [[1, "a, b"], [2, "c"]], delimiter="\t"))
    conn = connector(context, f"s3://{BUCKET}/t/people.tsv")
    assert column_types(conn) == {"id": "integer", "name": "string"}
    assert rows_of(read_all(conn)) == [{"id": 1, "name": "a, b"}, {"id": 2, "name": "c"}]


def test_csv_options_delimiter_nulls_encoding_and_no_header(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "o/latin.txt", "1;café;NA\n2;NA;x\n".encode("latin-1"))
    conn = connector(
        context,
        f"s3://{BUCKET}/o/latin.txt",
        format="csv",
        csv={"delimiter": ";", "has_header": False, "encoding": "latin-1", "null_values": ["NA"]},
    )
    assert rows_of(read_all(conn)) == [
        {"f0": 1, "f1": "café", "f2": None},
        {"f0": 2, "f1": None, "f2": "x"},
    ]


def test_csv_quoted_newlines_are_one_value(s3: Any, context: ConnectorContext) -> None:
    put(s3, "q/notes.csv", csv_text(["id", "text"], [[1, "line one\nline two"], [2, "x"]]))
    conn = connector(context, f"s3://{BUCKET}/q/notes.csv")
    assert rows_of(read_all(conn)) == [
        {"id": 1, "text": "line one\nline two"},
        {"id": 2, "text": "x"},
    ]


JSON_RECORDS = [
    {
        "id": 1,
        "day": "2024-01-02",
        "at": "2024-01-02T03:04:05Z",
        "local": "2024-01-02 03:04:05.25",
        "tags": ["a", "b"],
        "meta": {"k": 1},
        "score": 1.5,
        "label": "2024-01-02 is not a date",
    },
    {
        "id": 2,
        "day": "2024-05-06",
        "at": "2024-05-06T07:08:09+02:00",
        "local": "2024-05-06 07:08:09",
        "tags": [],
        "meta": {"k": 2},
        "score": 2,
        "label": "x",
    },
]


def test_json_lines_types_from_values(s3: Any, context: ConnectorContext) -> None:
    put(s3, "j/events.jsonl", jsonl(JSON_RECORDS))
    conn = connector(context, f"s3://{BUCKET}/j/events.jsonl")
    assert column_types(conn) == {
        "id": "integer",
        "day": "date",
        "at": "timestamp_tz",
        "local": "timestamp",
        "tags": "array",
        "meta": "json",
        "score": "decimal",  # 1.5, 2: decimal literals
        "label": "string",
    }
    rows = rows_of(read_all(conn))
    assert rows[0]["day"] == dt.date(2024, 1, 2)
    assert rows[1]["at"] == dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.UTC)
    assert rows[0]["local"] == dt.datetime(2024, 1, 2, 3, 4, 5, 250_000)
    assert rows[0]["tags"] == ["a", "b"] and rows[1]["meta"] == {"k": 2}
    assert rows[1]["score"] == 2.0


def test_gzip_json_lines_by_extension(s3: Any, context: ConnectorContext) -> None:
    put(s3, "j/events.ndjson.gz", gzip.compress(jsonl(JSON_RECORDS).encode()))
    conn = connector(context, f"s3://{BUCKET}/j/events.ndjson.gz")
    assert conn.stream_name == "events"
    assert [r["id"] for r in rows_of(read_all(conn))] == [1, 2]
    assert conn.check().details["format"] == "jsonl"


def test_gzip_csv_by_extension(s3: Any, context: ConnectorContext) -> None:
    put(s3, "c/data.csv.gz", gzip.compress(csv_text(["a"], [[1], [2], [3]]).encode()))
    conn = connector(context, f"s3://{BUCKET}/c/data.csv.gz")
    assert rows_of(read_all(conn, batch_size=2)) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_json_array_and_pretty_object_sequence(s3: Any, context: ConnectorContext) -> None:
    put(s3, "a/list.json", json.dumps(JSON_RECORDS, indent=2))
    put(s3, "a/seq.json", "\n".join(json.dumps(r, indent=2) for r in JSON_RECORDS))
    array = connector(context, f"s3://{BUCKET}/a/list.json")
    sequence = connector(context, f"s3://{BUCKET}/a/seq.json")
    assert column_types(array)["at"] == "timestamp_tz"
    expected = rows_of(read_all(connector(context, f"s3://{BUCKET}/a/list.json")))
    assert [r["id"] for r in expected] == [1, 2]
    assert rows_of(read_all(sequence)) == expected
    assert rows_of(read_all(array, batch_size=1)) == expected


def test_parquet_types_row_count_and_row_groups(s3: Any, context: ConnectorContext) -> None:
    table = pa.table(
        {
            "id": pa.array(range(10), pa.int32()),
            "amount": pa.array([f"{i}.10" for i in range(10)]).cast(pa.decimal128(10, 2)),
            "at": pa.array(
                [dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 10, pa.timestamp("ms", "UTC")
            ),
            "blob": pa.array([b"x"] * 10),
        }
    )
    put(s3, "p/facts.parquet", parquet_bytes(table, row_group_size=3))
    conn = connector(context, f"s3://{BUCKET}/p/facts.parquet")
    (discovered,) = conn.discover()
    assert {c.name: c.type for c in discovered.columns} == {
        "id": "integer",
        "amount": "decimal",
        "at": "timestamp_tz",
        "blob": "binary",
    }
    assert discovered.row_count_estimate == 10
    batches = read_all(conn, batch_size=4)
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert [r["id"] for r in rows_of(batches)] == list(range(10))
    assert rows_of(batches)[3]["amount"] == pa.scalar("3.10").cast(pa.decimal128(10, 2)).as_py()

    # Resuming inside the third row group skips the first two without reading them.
    token = dict(batches[1].resume_token or {}, row=7)
    resumed = read_all(conn, 4, StreamState(resume_token=token))
    assert [r["id"] for r in rows_of(resumed)] == [7, 8, 9]


def test_large_json_array_and_lines_parse_across_buffer_boundaries(
    s3: Any, context: ConnectorContext
) -> None:
    # ~3 MB each: elements and multi-byte characters straddle the 1 MiB read buffers.
    records = [{"id": i, "text": "é" * (i % 97) + "x" * 50} for i in range(20_000)]
    put(s3, "big/list.json", json.dumps(records))
    put(s3, "big/lines.jsonl", jsonl(records))
    for key in ("big/list.json", "big/lines.jsonl"):
        conn = connector(context, f"s3://{BUCKET}/{key}")
        assert column_types(conn) == {"id": "integer", "text": "string"}
        batches = read_all(conn, batch_size=7_000)
        assert [b.num_rows for b in batches] == [7_000, 7_000, 6_000]
        got = rows_of(batches)
        assert [r["id"] for r in got] == list(range(20_000))
        assert got[12_345] == records[12_345]


# ---------------------------------------------------------------------- prefixes


def seed_prefix(s3: Any) -> None:
    put(s3, "logs/2024/b.jsonl.gz", gzip.compress(jsonl([{"id": 3}, {"id": 4}]).encode()))
    put(s3, "logs/2024/a.jsonl.gz", gzip.compress(jsonl([{"id": 1}, {"id": 2}]).encode()))
    put(s3, "logs/2024/c.jsonl.gz", gzip.compress(jsonl([{"id": 5}]).encode()))
    put(s3, "logs/2024/deep/d.jsonl.gz", gzip.compress(jsonl([{"id": 6}]).encode()))
    put(s3, "logs/2023/z.jsonl.gz", gzip.compress(jsonl([{"id": 0}]).encode()))
    put(s3, "logs/2024/readme.txt", "not data")


def test_prefix_with_glob_reads_matching_files_in_key_order(
    s3: Any, context: ConnectorContext
) -> None:
    seed_prefix(s3)
    conn = connector(context, f"s3://{BUCKET}/logs/", pattern="2024/*.jsonl.gz")
    assert conn.stream_name == "logs"
    result = conn.check()
    assert result.reachable and result.details["objects"] == 3
    assert result.details["format"] == "jsonl" and result.details["bytes"] > 0
    assert [r["id"] for r in rows_of(read_all(conn))] == [1, 2, 3, 4, 5]

    recursive = connector(context, f"s3://{BUCKET}/logs/", pattern="**/*.jsonl.gz")
    assert [r["id"] for r in rows_of(read_all(recursive))] == [0, 1, 2, 3, 4, 5, 6]


def test_prefix_without_pattern_skips_markers_and_non_data(
    s3: Any, context: ConnectorContext
) -> None:
    seed_prefix(s3)
    put(s3, "logs/2024/_SUCCESS", "")
    conn = connector(context, f"s3://{BUCKET}/logs/2024/")
    assert conn.stream_name == "2024"
    assert [r["id"] for r in rows_of(read_all(conn))] == [1, 2, 3, 4, 5, 6]


def test_small_batches_across_files_hold_exact_rows(s3: Any, context: ConnectorContext) -> None:
    for part in range(3):
        ids = range(part * 7, part * 7 + 7)
        put(s3, f"parts/p{part}.csv", csv_text(["id", "v"], [[i, f"v{i}"] for i in ids]))
    conn = connector(context, f"s3://{BUCKET}/parts/", pattern="*.csv")
    batches = read_all(conn, batch_size=5)
    assert [b.num_rows for b in batches] == [5, 5, 5, 5, 1]
    assert [r["id"] for r in rows_of(batches)] == list(range(21))
    # A batch spanning two files resumes in the second one.
    token = batches[1].resume_token
    assert token is not None
    assert token == {"file": "parts/p1.csv", "etag": token["etag"], "row": 3}
    assert all(b.cursor_state is None for b in batches)


def test_resume_from_every_token_yields_exactly_the_rest(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "r/a.csv", csv_text(["id"], [[i] for i in range(0, 6)]))
    put(s3, "r/b.csv", "")  # empty file in the middle: zero rows, no crash
    put(s3, "r/c.jsonl", "")
    put(s3, "r/d.csv", csv_text(["id"], [[i] for i in range(6, 13)]))
    url = f"s3://{BUCKET}/r/"
    full = read_all(connector(context, url, pattern="*.csv"), batch_size=4)
    all_ids = [r["id"] for r in rows_of(full)]
    assert all_ids == list(range(13))
    for index, batch in enumerate(full):
        # A fresh connector, as in a continuation in another Lambda invocation.
        token = json.loads(json.dumps(batch.resume_token))
        rest = read_all(
            connector(context, url, pattern="*.csv"), 4, StreamState(resume_token=token)
        )
        done = sum(b.num_rows for b in full[: index + 1])
        assert [r["id"] for r in rows_of(rest)] == all_ids[done:]


def test_resume_refuses_a_file_that_changed(s3: Any, context: ConnectorContext) -> None:
    put(s3, "chg/a.csv", csv_text(["id"], [[1], [2], [3]]))
    conn = connector(context, f"s3://{BUCKET}/chg/a.csv")
    first = read_all(conn, batch_size=2)[0]
    put(s3, "chg/a.csv", csv_text(["id"], [[9], [8], [7], [6]]))
    again = connector(context, f"s3://{BUCKET}/chg/a.csv")
    with pytest.raises(SourceReadError, match="changed while this sync"):
        read_all(again, 2, StreamState(resume_token=first.resume_token))


def test_large_csv_streams_in_bounded_batches(s3: Any, context: ConnectorContext) -> None:
    lines = ["id,name,amount,updated_at"]
    lines += [f"{i},name-{i},{i * 0.5},2024-01-01T00:00:{i % 60:02d}Z" for i in range(50_000)]
    put(s3, "big/rows.csv", "\n".join(lines) + "\n")
    conn = connector(context, f"s3://{BUCKET}/big/rows.csv")
    count = 0
    expected_next = 0
    sizes = []
    for batch in conn.read(conn.stream_name, StreamState(), 5_000):
        assert isinstance(batch.records, pa.Table)
        sizes.append(batch.num_rows)
        ids = batch.records.column("id").to_pylist()
        assert ids == list(range(expected_next, expected_next + len(ids)))
        expected_next += len(ids)
        count += batch.num_rows
        assert batch.resume_token is not None and batch.resume_token["row"] == count
    assert sizes == [5_000] * 10
    assert count == 50_000


# ---------------------------------------------------------------------- incremental


def test_incremental_keeps_rows_above_the_committed_cursor(
    s3: Any, context: ConnectorContext
) -> None:
    # Files are not in cursor order: the newest row sits in the first file.
    put(
        s3,
        "inc/a.csv",
        csv_text(["id", "updated_at"], [[1, "2024-03-01T00:00:00Z"], [2, "2024-01-01T00:00:00Z"]]),
    )
    put(
        s3,
        "inc/b.csv",
        csv_text(["id", "updated_at"], [[3, "2024-02-01T00:00:00Z"], [4, "2023-12-31T00:00:00Z"]]),
    )
    url = f"s3://{BUCKET}/inc/"
    first = read_all(
        connector(context, url, pattern="*.csv"),
        batch_size=1,
        state=StreamState(cursor_field="updated_at"),
    )
    assert [r["id"] for r in rows_of(first)] == [1, 2, 3, 4]
    assert first[-1].cursor_state == {"value": "2024-03-01T00:00:00+00:00"}
    assert all(b.cursor_state == {"value": "2024-03-01T00:00:00+00:00"} for b in first)

    committed = {"value": "2024-01-15T00:00:00+00:00"}
    later = read_all(
        connector(context, url, pattern="*.csv"),
        batch_size=1,
        state=StreamState(cursor_field="updated_at", cursor_state=committed),
    )
    assert [r["id"] for r in rows_of(later)] == [1, 3]
    assert later[-1].cursor_state == {"value": "2024-03-01T00:00:00+00:00"}

    # A continuation keeps the running max from the token, even if its own rows are older.
    resumed = read_all(
        connector(context, url, pattern="*.csv"),
        batch_size=1,
        state=StreamState(
            cursor_field="updated_at", cursor_state=committed, resume_token=later[0].resume_token
        ),
    )
    assert [r["id"] for r in rows_of(resumed)] == [3]
    assert resumed[-1].cursor_state == {"value": "2024-03-01T00:00:00+00:00"}

    nothing_new = read_all(
        connector(context, url, pattern="*.csv"),
        state=StreamState(
            cursor_field="updated_at", cursor_state={"value": "2025-01-01T00:00:00Z"}
        ),
    )
    assert nothing_new == []


def test_null_cursor_rows_land_first_and_a_later_run_counts_what_it_left_out(
    s3: Any, context: ConnectorContext
) -> None:
    rows = [[1, "2024-01-01T00:00:00Z"], [2, ""], [3, "2024-02-01T00:00:00Z"], [4, ""]]
    put(s3, "nulls/a.csv", csv_text(["id", "updated_at"], rows[:2]))
    put(s3, "nulls/b.csv", csv_text(["id", "updated_at"], rows[2:]))
    url = f"s3://{BUCKET}/nulls/"
    first = read_all(
        connector(context, url, pattern="*.csv"), state=StreamState(cursor_field="updated_at")
    )
    assert sorted(r["id"] for r in rows_of(first)) == [1, 2, 3, 4]  # a first run reads all
    assert not any(b.notes for b in first)

    committed = {"value": "2024-01-15T00:00:00+00:00"}
    later = read_all(
        connector(context, url, pattern="*.csv"),
        batch_size=1,
        state=StreamState(cursor_field="updated_at", cursor_state=committed),
    )
    assert [r["id"] for r in rows_of(later)] == [3]
    notes = [n for b in later for n in b.notes]
    assert len(notes) == 1 and notes[0].startswith("2 row(s) with a null 'updated_at'"), notes
    assert later[-1].cursor_state == {"value": "2024-02-01T00:00:00+00:00"}

    # A continuation carries the count it had so far in its token.
    resumed = read_all(
        connector(context, url, pattern="*.csv"),
        state=StreamState(
            cursor_field="updated_at", cursor_state=committed, resume_token=later[0].resume_token
        ),
    )
    resumed_notes = [n for b in resumed for n in b.notes]
    assert len(resumed_notes) == 1 and resumed_notes[0].startswith("2 row(s)"), resumed_notes


def test_incremental_on_integer_cursor_and_unknown_cursor(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "ids/x.jsonl", jsonl([{"id": i, "v": str(i)} for i in (5, 1, 9, 7)]))
    conn = connector(context, f"s3://{BUCKET}/ids/x.jsonl")
    batches = read_all(conn, state=StreamState(cursor_field="id", cursor_state={"value": 5}))
    assert [r["id"] for r in rows_of(batches)] == [9, 7]
    assert batches[-1].cursor_state == {"value": 9}
    with pytest.raises(ValidationFailed, match="cursor field 'nope'"):
        read_all(conn, state=StreamState(cursor_field="nope"))


def test_cursor_candidates_follow_the_shared_name_rules_with_id_last(
    s3: Any, context: ConnectorContext
) -> None:
    # Given update columns spelled in other cases and separators, a creation column and an
    # integer id: the update columns come first, best first, and `id` stays last.
    put(
        s3,
        "cur/x.csv",
        "id,created_at,LastUpdated,Modified-At,name\n"
        "1,2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,2024-01-03T00:00:00Z,a\n",
    )
    (table,) = connector(context, f"s3://{BUCKET}/cur/x.csv").discover()
    assert table.cursor_candidates == ["Modified-At", "LastUpdated", "created_at", "id"]


# ---------------------------------------------------------------------- checks and errors


def test_check_reports_objects_format_and_bytes(s3: Any, context: ConnectorContext) -> None:
    put(s3, "k/one.csv", MIXED_CSV)
    result = connector(context, f"s3://{BUCKET}/k/one.csv").check()
    assert result.reachable is True and result.latency_ms >= 0
    assert result.details == {
        "objects": 1,
        "format": "csv",
        "bytes": len(MIXED_CSV.encode()),
        "columns": 8,
    }


def test_check_missing_object_bucket_and_empty_match(s3: Any, context: ConnectorContext) -> None:
    put(s3, "k/one.csv", MIXED_CSV)
    with pytest.raises(ConnectionFailed, match=r"object 'k/missing\.csv' does not exist") as exc:
        connector(context, f"s3://{BUCKET}/k/missing.csv").check()
    assert exc.value.stage == "read"
    with pytest.raises(ConnectionFailed, match="bucket 'no-such-bucket' does not exist") as exc:
        connector(context, "s3://no-such-bucket/k/one.csv").check()
    assert exc.value.stage == "read"
    with pytest.raises(ConnectionFailed, match=r"no objects match .*'\*\.parquet'") as exc:
        connector(context, f"s3://{BUCKET}/k/", pattern="*.parquet").check()
    assert exc.value.stage == "read"
    with pytest.raises(ConnectionFailed, match="bucket 'no-such-bucket' does not exist"):
        connector(context, "s3://no-such-bucket/k/", pattern="*.csv", format="csv").discover()


def test_access_denied_is_a_permission_failure(aws_env: None) -> None:
    client = boto3.client("s3", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("head_object", service_error_code="AccessDenied", http_status_code=403)
    stubber.add_client_error(
        "list_objects_v2", service_error_code="InvalidAccessKeyId", http_status_code=403
    )
    seen: list[dict[str, Any]] = []

    def factory(**kwargs: Any) -> Any:
        seen.append(kwargs)
        return client

    ctx = ConnectorContext(settings=Settings(), s3_client_factory=factory)
    creds = {"aws_access_key_id": "AKIAFOREIGN", "aws_secret_access_key": "s3cr3t-value"}
    with stubber:
        with pytest.raises(ConnectionFailed) as denied:
            connector(ctx, "s3://theirs/data.csv", credentials=creds).check()
        with pytest.raises(ConnectionFailed) as bad_key:
            connector(ctx, "s3://theirs/data/", format="csv", credentials=creds).check()
    assert denied.value.stage == "permission" and "denied" in denied.value.message
    assert bad_key.value.stage == "auth"
    # Foreign keys go to the client factory, and never into a message.
    assert seen[0]["aws_secret_access_key"] == "s3cr3t-value"
    assert "s3cr3t" not in denied.value.message + bad_key.value.message


def test_unknown_extension_needs_a_format(s3: Any, context: ConnectorContext) -> None:
    put(s3, "u/export.dat", "a,b\n1,2\n")
    with pytest.raises(ValidationFailed, match="set 'format'"):
        connector(context, f"s3://{BUCKET}/u/export.dat")
    put(s3, "u2/part-0000", "a,b\n1,2\n")
    with pytest.raises(ValidationFailed, match="set 'format'"):
        connector(context, f"s3://{BUCKET}/u2/", pattern="part-*").check()
    conn = connector(context, f"s3://{BUCKET}/u/export.dat", format="csv")
    assert rows_of(read_all(conn)) == [{"a": 1, "b": 2}]


def test_malformed_csv_names_the_file(s3: Any, context: ConnectorContext) -> None:
    put(s3, "bad/rows.csv", "a,b\n1,2\n3,4,5\n")
    conn = connector(context, f"s3://{BUCKET}/bad/rows.csv")
    with pytest.raises(SourceReadError, match=r"'bad/rows\.csv' as csv.*Expected 2 columns"):
        read_all(conn)
    # Discovery samples the first file only: a bad second file fails while reading it.
    put(s3, "bad2/a.csv", "a,b\n1,2\n")
    put(s3, "bad2/b.csv", "a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(SourceReadError, match=r"'bad2/b\.csv' as csv.*Expected 2 columns, got 3"):
        read_all(connector(context, f"s3://{BUCKET}/bad2/"))
    with pytest.raises(ConnectionFailed, match=r"bad/rows\.csv") as exc:
        connector(context, f"s3://{BUCKET}/bad/rows.csv").check()
    assert exc.value.stage == "read"


def test_malformed_json_line_and_array_name_the_file(s3: Any, context: ConnectorContext) -> None:
    good = jsonl([{"id": i} for i in range(3)])
    put(s3, "bad/events.jsonl", good + '{"id": 3,\n{"id": 4}\n')
    with pytest.raises(SourceReadError, match=r"'bad/events\.jsonl' as jsonl.*in row 3"):
        read_all(connector(context, f"s3://{BUCKET}/bad/events.jsonl"))
    put(s3, "bad3/a.jsonl", good)
    put(s3, "bad3/b.jsonl", good + "not json\n")
    with pytest.raises(SourceReadError, match=r"'bad3/b\.jsonl' as jsonl \(after row 0\)"):
        read_all(connector(context, f"s3://{BUCKET}/bad3/"))
    put(s3, "bad/list.json", '[{"id": 1}, {"id": 2} {"id": 3}]')
    with pytest.raises(SourceReadError, match=r"'bad/list\.json' as json.*after element 2"):
        read_all(connector(context, f"s3://{BUCKET}/bad/list.json", format="json"))
    put(s3, "bad/scalars.json", "[1, 2]")
    with pytest.raises(ConnectionFailed, match="not a JSON object"):
        connector(context, f"s3://{BUCKET}/bad/scalars.json").discover()


def test_value_that_cannot_be_cast_names_file_and_column(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "cast/a.csv", csv_text(["id", "qty"], [[1, 10], [2, 20]]))
    put(s3, "cast/b.csv", csv_text(["id", "qty"], [[3, 30], [4, "lots"]]))
    conn = connector(context, f"s3://{BUCKET}/cast/", pattern="*.csv")
    with pytest.raises(SourceReadError, match=r"'cast/b\.csv'.*column 'qty'.*lots"):
        read_all(conn)

    put(s3, "castj/a.jsonl", jsonl([{"id": 1, "day": "2024-01-01"}]))
    put(s3, "castj/b.jsonl", jsonl([{"id": 2, "day": "soon"}]))
    conn = connector(context, f"s3://{BUCKET}/castj/")
    with pytest.raises(SourceReadError, match=r"'castj/b\.jsonl', column 'day'"):
        read_all(conn)


def test_later_file_with_extra_column_fails_missing_column_is_null(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "ev/a.csv", csv_text(["id", "name"], [[1, "a"]]))
    put(s3, "ev/b.csv", csv_text(["id"], [[2]]))
    assert rows_of(read_all(connector(context, f"s3://{BUCKET}/ev/"))) == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": None},
    ]
    put(s3, "ev/c.csv", csv_text(["id", "name", "extra"], [[3, "c", "x"]]))
    with pytest.raises(SourceReadError, match=r"'ev/c\.csv' has columns .*: extra"):
        read_all(connector(context, f"s3://{BUCKET}/ev/"))


def test_repeated_header_names_are_refused(s3: Any, context: ConnectorContext) -> None:
    put(s3, "dup/x.csv", "a,a\n1,2\n")
    with pytest.raises(ConnectionFailed, match="repeated column names"):
        connector(context, f"s3://{BUCKET}/dup/x.csv").discover()


def test_empty_files_give_zero_rows(s3: Any, context: ConnectorContext) -> None:
    put(s3, "e/none.jsonl", "")
    put(s3, "e/header.csv", "a,b\n")
    empty = connector(context, f"s3://{BUCKET}/e/none.jsonl")
    assert read_all(empty) == []
    assert empty.discover()[0].columns == []
    header_only = connector(context, f"s3://{BUCKET}/e/header.csv")
    assert read_all(header_only) == []
    assert column_types(header_only) == {"a": "string", "b": "string"}


def test_registry_builds_the_connector_and_unknown_stream_is_refused(
    s3: Any, context: ConnectorContext
) -> None:
    put(s3, "reg/x.csv", "a\n1\n")
    conn = get_connector("file", FileConfig(url=f"s3://{BUCKET}/reg/x.csv"), context)
    assert isinstance(conn, FileConnector)
    with pytest.raises(SourceReadError, match="stream 'other'"):
        list(conn.read("other", StreamState(), 10))
    conn.close()


def test_default_client_without_factory_uses_settings(s3: Any) -> None:
    put(s3, "d/x.jsonl", jsonl([{"a": 1}]))
    ctx = ConnectorContext(settings=Settings(aws_region=REGION))
    conn = connector(ctx, f"s3://{BUCKET}/d/x.jsonl")
    assert rows_of(read_all(conn)) == [{"a": 1}]
    conn.close()


# ---------------------------------------------------------------------- http(s)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        if self.path.startswith("/moved"):
            self.send_response(302)
            self.send_header("Location", self.path.replace("/moved", "", 1))
            self.end_headers()
            return
        if self.path.startswith("/hop/"):
            _, _, hops, rest = self.path.split("/", 3)
            self.send_response(302)
            self.send_header(
                "Location", f"/hop/{int(hops) - 1}/{rest}" if int(hops) > 1 else f"/{rest}"
            )
            self.end_headers()
            return
        if self.path.startswith("/other-port"):
            port = int(str(self.headers["Host"]).rsplit(":", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port + 1}/data.csv")
            self.end_headers()
            return
        if self.path.startswith("/away"):
            port = str(self.headers["Host"]).rsplit(":", 1)[1]
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/data.csv")
            self.end_headers()
            return
        body = self.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.files = {
        "/data.csv": csv_text(["id", "name"], [[i, f"n{i}"] for i in range(5)]).encode(),
        "/facts.parquet": parquet_bytes(pa.table({"x": [1, 2, 3]})),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_url_in_local_mode_streams_one_file(http_server: str) -> None:
    ctx = ConnectorContext(settings=Settings(local_mode=True))
    conn = FileConnector(FileConfig(url=f"{http_server}/moved/data.csv?sig=abc"), ctx)
    assert conn.stream_name == "data"
    assert conn.check().details["objects"] == 1
    batches = read_all(conn, batch_size=2)
    assert [r["id"] for r in rows_of(batches)] == [0, 1, 2, 3, 4]
    assert batches[0].resume_token == {"file": "/moved/data.csv", "etag": '"v1"', "row": 2}
    rest = read_all(conn, 2, StreamState(resume_token=batches[1].resume_token))
    assert [r["id"] for r in rows_of(rest)] == [4]

    parquet = FileConnector(FileConfig(url=f"{http_server}/facts.parquet"), ctx)
    assert rows_of(read_all(parquet)) == [{"x": 1}, {"x": 2}, {"x": 3}]


def test_http_redirect_to_other_host_missing_file_and_policy(http_server: str) -> None:
    local = ConnectorContext(settings=Settings(local_mode=True))
    with pytest.raises(ConnectionFailed, match="redirected to another host") as exc:
        FileConnector(FileConfig(url=f"{http_server}/away.csv"), local).check()
    assert exc.value.stage == "http"
    # The egress redirect policy: same scheme, host and port, at most 5 hops.
    five = FileConnector(FileConfig(url=f"{http_server}/hop/5/data.csv"), local)
    assert [r["id"] for r in rows_of(read_all(five))] == [0, 1, 2, 3, 4]
    with pytest.raises(ConnectionFailed, match="redirected more than 5 times") as hops:
        FileConnector(FileConfig(url=f"{http_server}/hop/6/data.csv"), local).check()
    assert hops.value.stage == "http"
    with pytest.raises(ConnectionFailed, match="redirected to another host") as port:
        FileConnector(FileConfig(url=f"{http_server}/other-port.csv"), local).check()
    assert port.value.stage == "http"
    with pytest.raises(ConnectionFailed, match="HTTP 404") as missing:
        FileConnector(FileConfig(url=f"{http_server}/nope.csv?token=s3cr3t"), local).check()
    assert "s3cr3t" not in missing.value.message  # a signed URL's query never shows
    deployed = ConnectorContext(settings=Settings(local_mode=False))
    with pytest.raises(ConnectionFailed) as plain:
        FileConnector(FileConfig(url=f"{http_server}/data.csv"), deployed).check()
    assert plain.value.stage == "config"
    port = http_server.rsplit(":", 1)[1]
    with pytest.raises(ConnectionFailed) as guarded:
        FileConnector(FileConfig(url=f"https://127.0.0.1:{port}/data.csv"), deployed).check()
    assert guarded.value.stage == "policy"


def _tls_files(directory: Any) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for `localhost` (no IP address in it)."""
    from tests.support.tls_servers import make_pki

    pki = make_pki()
    paths = [str(directory / n) for n in ("ca.pem", "cert.pem", "key.pem")]
    for path, text in zip(paths, (pki.ca.cert, pki.server.cert, pki.server.key), strict=True):
        with open(path, "w") as f:
            f.write(text)
    return paths[0], paths[1], paths[2]


@pytest.fixture
def https_server(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    ca_path, cert_path, key_path = _tls_files(tmp_path)
    _Handler.files = {"/data.csv": csv_text(["id"], [[1], [2]]).encode()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_path, key_path)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    # The connector verifies against egress's default trust store (one context, made
    # once per process); here that store is the test CA.
    from datasources import egress

    trusted = ssl.create_default_context(cafile=ca_path)
    monkeypatch.setattr(egress, "_default_ssl_context", lambda: trusted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_https_verifies_the_certificate_for_the_url_host(https_server: int) -> None:
    ctx = ConnectorContext(settings=Settings(local_mode=True))
    conn = FileConnector(FileConfig(url=f"https://localhost:{https_server}/data.csv"), ctx)
    assert rows_of(read_all(conn)) == [{"id": 1}, {"id": 2}]
    # Same server by address: the certificate does not name 127.0.0.1, so TLS fails.
    by_ip = FileConnector(FileConfig(url=f"https://127.0.0.1:{https_server}/data.csv"), ctx)
    with pytest.raises(ConnectionFailed) as exc:
        by_ip.check()
    assert exc.value.stage == "tls"


# ---------------------------------------------------------------------- exact decimals


def test_money_in_csv_lands_as_exact_decimals_and_other_numbers_as_floats(
    s3: Any, context: ConnectorContext
) -> None:
    # Given amounts with two decimals, a measurement with many, and one in exponent form.
    put(
        s3,
        "money/prices.csv",
        "id,price,ratio,tiny\n"
        "1,0.99,0.1234567891,1.5e-3\n"
        "2,1.98,0.5,2.5e-1\n"
        "3,,1,0.5\n"
        "4,12,0.25,1\n",
    )
    conn = connector(context, f"s3://{BUCKET}/money/prices.csv")
    (table,) = conn.discover()
    columns = {c.name: c for c in table.columns}
    assert columns["price"].type == "decimal"
    # Two digits after the point; the widest integer part (12) plus 6 digits of headroom.
    assert columns["price"].native_type == "decimal128(10, 2)"
    assert columns["ratio"].type == "number" and columns["tiny"].type == "number"
    (batch,) = read_all(conn)
    assert isinstance(batch.records, pa.Table)
    assert batch.records.schema.field("price").type == pa.decimal128(10, 2)
    assert batch.records.schema.field("ratio").type == pa.float64()
    prices = [r["price"] for r in rows_of([batch])]
    assert prices == [Decimal("0.99"), Decimal("1.98"), None, Decimal("12.00")]
    assert sum(p for p in prices if p is not None) == Decimal("14.97")  # no float drift


@pytest.mark.parametrize("name", ["money.jsonl", "money.json"])
def test_money_in_json_lines_and_json_lands_as_exact_decimals(
    s3: Any, context: ConnectorContext, name: str
) -> None:
    # Written as text: json.dumps would print the floats the same, but say it plainly.
    records = [
        '{"id": 1, "price": 0.99, "score": 1e-3, "label": "a"}',
        '{"id": 2, "price": 1.98, "score": 0.25, "label": "b"}',
        '{"id": 3, "price": null, "score": 2, "label": "c"}',
    ]
    body = "\n".join(records) + "\n" if name.endswith("jsonl") else f"[{','.join(records)}]"
    put(s3, f"money/{name}", body)
    conn = connector(context, f"s3://{BUCKET}/money/{name}")
    (table,) = conn.discover()
    columns = {c.name: c for c in table.columns}
    assert columns["price"].type == "decimal"
    assert columns["price"].native_type == "decimal128(9, 2)"
    assert columns["score"].type == "number"
    rows = rows_of(read_all(conn))
    assert [r["price"] for r in rows] == [Decimal("0.99"), Decimal("1.98"), None]
    assert [r["score"] for r in rows] == [0.001, 0.25, 2.0]


@pytest.mark.parametrize(
    ("fmt", "later", "shown", "why"),
    [
        ("csv", "2.985", "'2.985'", "more than 2 digits after the point"),
        ("csv", "abc", "'abc'", "not a decimal number"),
        ("csv", "12345678901.5", "'12345678901.5'", "more than 7 digits before the point"),
        ("jsonl", "2.985", "'2.985'", "more than 2 digits after the point"),
        ("jsonl", '"abc"', "'abc'", "not a decimal number"),
        ("jsonl", "true", "True", "not a number"),
    ],
)
def test_a_later_value_that_does_not_fit_the_decimal_fails_naming_file_column_and_row(
    s3: Any, context: ConnectorContext, fmt: str, later: str, shown: str, why: str
) -> None:
    # The schema is fixed from the first file; the second file holds the misfit in row 2
    # (a blank line in JSON Lines is no row).
    if fmt == "csv":
        first, second = "id,price\n1,0.99\n2,1.98\n", f"id,price\n3,1.50\n4,{later}\n"
    else:
        first = '{"id": 1, "price": 0.99}\n{"id": 2, "price": 1.98}\n'
        second = f'{{"id": 3, "price": 1.5}}\n\n{{"id": 4, "price": {later}}}\n'
    put(s3, f"fit-{fmt}/a.{fmt}", first)
    put(s3, f"fit-{fmt}/b.{fmt}", second)
    conn = connector(context, f"s3://{BUCKET}/fit-{fmt}/")
    assert column_types(conn)["price"] == "decimal"
    with pytest.raises(SourceReadError) as exc:
        read_all(conn)
    message = exc.value.message
    assert f"file 'fit-{fmt}/b.{fmt}', column 'price', row 2" in message
    assert shown in message and why in message


def test_a_decimal_past_the_sample_of_one_csv_fails_with_its_row(
    s3: Any, context: ConnectorContext
) -> None:
    # Given more than the sampled first MiB of two-decimal amounts, then one with three.
    rows = 150_000
    body = "id,price\n" + "".join(f"{i},{i % 1000}.25\n" for i in range(rows))
    body += f"{rows},0.125\n"
    put(s3, "fit/long.csv", body)
    conn = connector(context, f"s3://{BUCKET}/fit/long.csv")
    assert column_types(conn) == {"id": "integer", "price": "decimal"}
    with pytest.raises(SourceReadError) as exc:
        read_all(conn, batch_size=50_000)
    assert f"file 'fit/long.csv', column 'price', row {rows + 1}" in exc.value.message
    assert "'0.125'" in exc.value.message and "never rounded" in exc.value.message
