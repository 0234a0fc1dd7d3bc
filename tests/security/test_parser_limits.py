"""Parser bombs and slow upstreams (issue 16: D2, D3, D7 parsers, D9): every input
format and API bodies under the limits of datasources.limits, and the read deadline.

The bombs are generated here and served from a loopback HTTP server (local mode), so
the bytes take the same path as an upload or an https file: stream, inflate, check,
parse. Each row is either accepted or refused with stage `read` (or `timeout`) and a
message naming the limit; none may crash, exhaust memory or end as a 500.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import resource
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasources.config import Settings
from datasources.connectors.api import ApiConnector
from datasources.connectors.base import ConnectorContext, StreamState
from datasources.connectors.file import FileConnector
from datasources.errors import ConnectionFailed, SourceReadError
from datasources.limits import MAX_JSON_DEPTH, MAX_PAGE_RECORDS, MAX_PARQUET_CHUNK_BYTES
from datasources.models.connection import ApiConfig, FileConfig
from local.context import FakeLambdaContext
from tests.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
DEEP = 100_000


@dataclass
class Served:
    status: int = 200
    body: bytes = b""
    # Seconds between bytes of the headers ("headers") or of the body ("body").
    trickle: str | None = None


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, Served] = {}
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        served = self.routes.get(self.path.split("?")[0])
        if served is None:
            self.send_error(404)
            return
        head = (
            f"HTTP/1.1 {served.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(served.body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        try:
            if served.trickle == "headers":
                for byte in head:  # a byte every 0.2 s: no per-read timeout ever fires
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self.wfile.write(head)
            if served.trickle == "body":
                for byte in served.body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self.wfile.write(served.body)
        except OSError:
            return  # the client gave up, as it should

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def serve(path: str, body: bytes, *, status: int = 200, trickle: str | None = None) -> str:
    _Handler.routes[path] = Served(status, body, trickle)
    return path


LOCAL = ConnectorContext(settings=Settings(local_mode=True))


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


def gz_repeated(unit: bytes, total: int, head: bytes = b"") -> bytes:
    """`head` then `unit` repeated to `total` bytes, gzip'd without holding it inflated."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(head)]
    block = unit * ((1 << 20) // len(unit))
    for _ in range(total // len(block)):
        out.append(packer.compress(block))
    out.append(packer.flush())
    return b"".join(out)


def nested(depth: int) -> bytes:
    """A record whose field nests `depth` levels in all (the record itself is one)."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


ROWS = [{"id": i, "name": f"n{i}", "tags": [i, i + 1]} for i in range(50)]
CSV = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(50))
JSONL = b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)
JSON = json.dumps(ROWS).encode()


@pytest.fixture(scope="module")
def big_value_parquet() -> bytes:
    """16 KiB-ish on disk, one value just over the column chunk limit uncompressed."""
    value = "x" * (MAX_PARQUET_CHUNK_BYTES + (1 << 20))
    data = parquet(pa.table({"id": [1], "blob": [value]}))
    assert len(data) < 64 << 10
    return data


# (file name, body, None if accepted else the limit its message names)
FILE_TABLE: list[tuple[str, Any, str | None]] = [
    ("rows.csv", CSV, None),
    ("rows.tsv", CSV.replace(b",", b"\t"), None),
    ("rows.jsonl", JSONL, None),
    ("rows.json", JSON, None),
    ("rows.parquet", parquet(pa.Table.from_pylist(ROWS)), None),
    ("rows.csv.gz", gz(CSV), None),
    ("rows.tsv.gz", gz(CSV.replace(b",", b"\t")), None),
    ("rows.jsonl.gz", gz(JSONL), None),
    ("rows.json.gz", gz(JSON), None),
    # depth: at the limit, one past it, and the D2 line
    ("edge.jsonl", JSONL + nested(MAX_JSON_DEPTH) + b"\n", None),
    ("over.jsonl", JSONL + nested(MAX_JSON_DEPTH + 1) + b"\n", "JSON nesting depth"),
    ("deep.jsonl", nested(DEEP) + b"\n", "JSON nesting depth"),
    ("unclosed.jsonl", b'{"a":' + b"[" * DEEP, "JSON nesting depth"),
    ("deep.jsonl.gz", gz(nested(DEEP)), "JSON nesting depth"),
    ("edge.json", b"[" + nested(MAX_JSON_DEPTH) + b"]", None),
    ("over.json", b"[" + nested(MAX_JSON_DEPTH + 1) + b"]", "JSON nesting depth"),
    ("deep.json", b"[" + nested(DEEP) + b"]", "JSON nesting depth"),
    ("deep.json.gz", gz(b"[" + nested(DEEP) + b"]"), "JSON nesting depth"),
    # values in one .json element: what Python would build from it
    ("values.json", b'[{"a":[' + b"{}," * 1_200_000 + b"{}]}]", "values per document"),
    # inflated size: ratio (a 64 MiB inflation of a few dozen KiB)
    ("ratio.csv.gz", gz_repeated(b"1,2\n", 64 << 20, b"a,b\n"), "compression ratio"),
    ("ratio.jsonl.gz", gz_repeated(b'{"a":1}\n', 64 << 20), "compression ratio"),
    ("space.json.gz", gz_repeated(b" ", 64 << 20, b"[{}"), "compression ratio"),
    ("ratio.tsv.gz", gz_repeated(b"1\t2\n", 64 << 20, b"a\tb\n"), "compression ratio"),
    # per value: one column chunk over the limit uncompressed
    ("big.parquet", "big_value_parquet", "Parquet column chunk size"),
]


@pytest.mark.parametrize(("name", "body", "limit"), FILE_TABLE, ids=[row[0] for row in FILE_TABLE])
def test_every_file_format_is_accepted_or_refused_by_its_limit(
    server: str, request: pytest.FixtureRequest, name: str, body: Any, limit: str | None
) -> None:
    data = request.getfixturevalue(body) if isinstance(body, str) else body
    url = server + serve(f"/table/{name}", data)
    conn = FileConnector(FileConfig(url=url), LOCAL)
    if limit is None:
        assert conn.check().reachable
        batches = list(conn.read(conn.stream_name, StreamState(), 1000))
        assert sum(batch.num_rows for batch in batches) >= (1 if "edge" in name else 50)
        return
    # test-connection and schema parse a sample: a 400 with stage read naming the limit
    # when the breach is in it (a ratio bomb may inflate past the sample's end first)
    try:
        conn.check()
    except ConnectionFailed as refused:
        assert refused.stage == "read" and limit in refused.message
    else:
        assert limit == "compression ratio"
    # a sync: the stream fails at stage read, naming the limit
    with pytest.raises(SourceReadError, match=limit):
        list(FileConnector(FileConfig(url=url), LOCAL).read(conn.stream_name, StreamState(), 1000))


def test_d2_a_200_kb_jsonl_line_nested_100k_deep_no_longer_kills_the_process(
    server: str,
) -> None:
    # Before the fix this segfaulted (pyarrow's reader overflows the C stack), so the
    # test-connection runs in a child process whose exit code tells.
    url = server + serve("/d2/bomb.jsonl", nested(DEEP) + b"\n")
    script = (
        "from datasources.config import Settings\n"
        "from datasources.connectors.base import ConnectorContext\n"
        "from datasources.connectors.file import FileConnector\n"
        "from datasources.errors import ConnectionFailed\n"
        "from datasources.models.connection import FileConfig\n"
        "ctx = ConnectorContext(settings=Settings(local_mode=True))\n"
        "try:\n"
        f"    FileConnector(FileConfig(url={url!r}), ctx).check()\n"
        "except ConnectionFailed as exc:\n"
        "    print(exc.stage, exc.message)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'shared'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.startswith("read ") and "JSON nesting depth" in child.stdout


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_d3_a_parquet_value_of_hundreds_of_mib_is_refused_from_the_footer(
    server: str, big_value_parquet: bytes
) -> None:
    url = server + serve("/d3/blob.parquet", big_value_parquet)
    before = _peak_rss_mb()
    with pytest.raises(ConnectionFailed, match="Parquet column chunk size"):
        FileConnector(FileConfig(url=url), LOCAL).check()
    with pytest.raises(SourceReadError, match="Parquet column chunk size"):
        conn = FileConnector(FileConfig(url=url), LOCAL)
        list(conn.read(conn.stream_name, StreamState(), 1))  # batch_size=1, as in D3
    # Before: +3.9 GiB at batch_size=1. The footer alone costs next to nothing.
    assert _peak_rss_mb() - before < 100


def test_d3_a_csv_gz_bomb_stops_at_the_ratio_after_a_bounded_number_of_rows(
    server: str,
) -> None:
    url = server + serve("/d3/bomb.csv.gz", gz_repeated(b"1,2\n", 128 << 20, b"a,b\n"))
    conn = FileConnector(FileConfig(url=url), LOCAL)
    rows = 0
    with pytest.raises(SourceReadError, match="compression ratio"):
        for batch in conn.read(conn.stream_name, StreamState(), 100_000):
            rows += batch.num_rows
    assert rows < 8_000_000  # all 33.5M rows before; the ratio stops it near 16 MiB


def test_d3_a_json_gz_of_whitespace_no_longer_burns_cpu(server: str) -> None:
    url = server + serve("/d3/space.json.gz", gz_repeated(b" ", 128 << 20, b"[{}"))
    started = time.process_time()
    with pytest.raises(ConnectionFailed, match="compression ratio"):
        FileConnector(FileConfig(url=url), LOCAL).check()
    assert time.process_time() - started < 5  # 11 s of CPU before (22 s for 256 MiB)


# ---------------------------------------------------------------------- API bodies


def api(url: str, **extra: Any) -> ApiConnector:
    config = ApiConfig(base_url=url, api_key="k-123456", **extra)
    return ApiConnector(config, LOCAL, sleep=lambda _s: None)


API_TABLE: list[tuple[str, bytes, int, str | None, str | None]] = [
    # (name, body, status, refused at stage, limit or text in the message)
    ("page", json.dumps(ROWS).encode(), 200, None, None),
    ("edge", b"[" + nested(MAX_JSON_DEPTH - 1) + b"]", 200, None, None),
    ("over", b"[" + nested(MAX_JSON_DEPTH) + b"]", 200, "read", "JSON nesting depth"),
    ("deep", b"[" + nested(DEEP) + b"]", 200, "read", "JSON nesting depth"),
    ("deep-object", b'{"data":' + b"[" * DEEP + b"]" * DEEP + b"}", 200, "read", "depth"),
    ("error-deep", b'{"error":' + b"[" * DEEP + b"]" * DEEP + b"}", 500, "http", "HTTP 500"),
    ("error-hint", b'{"error": "quota exceeded"}', 400, "http", "quota exceeded"),
    ("values", b"[" + b"{}," * 1_200_000 + b"{}]", 200, "read", "values per document"),
    ("records-edge", b"[" + b"0," * (MAX_PAGE_RECORDS - 1) + b"0]", 200, None, None),
    ("records", b"[" + b"0," * MAX_PAGE_RECORDS + b"0]", 200, "read", "records per page"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "stage", "text"), API_TABLE, ids=[row[0] for row in API_TABLE]
)
def test_every_api_body_is_accepted_or_refused_by_its_limit(
    server: str, name: str, body: bytes, status: int, stage: str | None, text: str | None
) -> None:
    url = server + serve(f"/api/{name}", body, status=status)
    if stage is None:
        assert api(url).check().reachable
        (table,) = api(url).discover()
        assert table.name == name
        return
    with pytest.raises(ConnectionFailed) as refused:
        api(url).check()
    assert refused.value.stage == stage and text in refused.value.message
    with pytest.raises(SourceReadError, match=text) as failed:
        list(api(url).read(name, StreamState(), 1000))
    assert failed.value.details["stage"] == stage


def test_d3_a_60_mb_page_of_empty_objects_is_refused_before_it_is_parsed(server: str) -> None:
    url = server + serve("/api/d3-page", b"[" + b"{}," * 20_000_000 + b"{}]")
    before = _peak_rss_mb()
    with pytest.raises(ConnectionFailed, match="values per document"):
        api(url).check()
    # Before: +1.6 GB (20M dicts). Now: the body and the scan's copies of it.
    assert _peak_rss_mb() - before < 400


# ---------------------------------------------------------------------- deadlines (D9)


def soon(seconds: float) -> ConnectorContext:
    return ConnectorContext(settings=Settings(local_mode=True), deadline=time.monotonic() + seconds)


@pytest.mark.parametrize("trickle", ["headers", "body"])
def test_d9_a_trickling_api_ends_at_the_deadline_with_stage_timeout(
    server: str, trickle: str
) -> None:
    url = server + serve(f"/slow/api-{trickle}", json.dumps(ROWS).encode(), trickle=trickle)
    conn = ApiConnector(ApiConfig(base_url=url, timeout_seconds=20), soon(1.5))
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as exc:
        conn.check()
    assert exc.value.stage == "timeout" and "time ran out" in exc.value.message
    assert time.monotonic() - started < 3.5


@pytest.mark.parametrize("trickle", ["headers", "body"])
def test_d9_a_trickling_file_url_ends_at_the_deadline_with_stage_timeout(
    server: str, trickle: str
) -> None:
    url = server + serve(f"/slow/file-{trickle}.csv", CSV * 20, trickle=trickle)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as exc:
        FileConnector(FileConfig(url=url), soon(1.5)).check()
    assert exc.value.stage == "timeout" and "time ran out" in exc.value.message
    assert time.monotonic() - started < 3.5


def test_d9_a_read_in_a_sync_fails_with_stage_timeout(server: str) -> None:
    url = server + serve("/slow/sync.jsonl", JSONL * 40, trickle="body")
    later = FileConnector(FileConfig(url=url), soon(1.5))
    with pytest.raises(SourceReadError, match="time ran out") as exc:
        list(later.read(later.stream_name, StreamState(), 100))
    assert exc.value.details["stage"] == "timeout"


def test_d9_test_connection_through_the_handler_is_a_400_timeout_before_the_gateway_limit(
    stack: Stack, server: str
) -> None:
    url = server + serve("/slow/handler", json.dumps(ROWS).encode(), trickle="body")
    body = {"source_config": {"type": "api", "connection_config": {"base_url": url}}}
    fast = server + serve("/api/warm", json.dumps(ROWS).encode())
    warm = {"source_config": {"type": "api", "connection_config": {"base_url": fast}}}
    assert stack.call("test", body=warm).status_code == 200  # the handler is loaded
    started = time.monotonic()
    # 4 s left in the function, as if API Gateway's 29 s were nearly spent
    response = stack.call(
        "test", body=body, context=FakeLambdaContext(timeout_seconds=4, frozen=True)
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.body
    assert response.body["data"]["stage"] == "timeout"
    assert elapsed < 4.0


def test_a_parse_past_the_deadline_fails_with_stage_timeout(server: str) -> None:
    url = server + serve("/late/rows.csv", CSV)
    late = ConnectorContext(settings=Settings(local_mode=True), deadline=time.monotonic() - 1)
    with pytest.raises(ConnectionFailed) as exc:
        FileConnector(FileConfig(url=url), late).check()
    assert exc.value.stage == "timeout" and "remaining time" in exc.value.message


@pytest.mark.parametrize(
    "encoding", ["no-such-codec", "rot13", "zlib_codec", "base64", "x" * 10_000]
)
def test_d7_an_unknown_or_non_text_csv_encoding_is_a_422_not_a_500(
    stack: Stack, server: str, encoding: str
) -> None:
    url = server + serve("/enc/rows.csv", CSV)  # a file that is there: the codec is used
    config = {"url": url, "csv": {"encoding": encoding}}
    body = {"source_config": {"type": "file", "connection_config": config}}
    response = stack.call("test", body=body)
    assert response.status_code == 422, response.body
    assert "encoding" in response.body["message"]


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252", "utf-16"])
def test_text_encodings_are_accepted_and_transcoded(server: str, encoding: str) -> None:
    text = "id,name\n1,Zoë\n"
    url = server + serve(f"/enc/{encoding}.csv", text.encode(encoding))
    conn = FileConnector(FileConfig(url=url, csv={"encoding": encoding}), LOCAL)
    (batch,) = conn.read(conn.stream_name, StreamState(), 10)
    assert batch.records.to_pylist() == [{"id": 1, "name": "Zoë"}]  # type: ignore[union-attr]
