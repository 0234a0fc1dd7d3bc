"""The installed `datasources` console script, run in a subprocess against the local stack."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeApi, LocalStack, fake_api

SCRIPT = Path(sys.executable).parent / "datasources"
PLANTED_KEY = "sk-planted-0123456789abcdef"


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    assert SCRIPT.is_file(), f"the console script is not installed next to {sys.executable}"


@pytest.fixture
def env(local_stack: LocalStack, workspace: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATASOURCES_URL": local_stack.base_url,
        "DATASOURCES_TOKEN": local_stack.token(),
        "DATASOURCES_WORKSPACE": workspace,
    }


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def api_data(local_stack: LocalStack, env: dict[str, str], path: str, **params: str) -> Any:
    response = httpx.get(
        f"{local_stack.base_url}/data/{env['DATASOURCES_WORKSPACE']}/{path}",
        params=params,
        headers={"Authorization": f"Bearer {env['DATASOURCES_TOKEN']}"},
    )
    return response.json()["data"]


def write_sources(tmp_path: Path, api: Any, *, name: str = "orders_api") -> Path:
    """A sources file whose API key comes from the environment, never the file."""
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        f"  - type: api\n"
        f"    name: {name}\n"
        f"    connection_config:\n"
        f"      base_url: {api.url}/orders\n"
        "      api_key: ${ORDERS_API_KEY}\n"
    )
    return path


def connect_one(env: dict[str, str], path: Path) -> str:
    result = run(env, "connect", "-f", str(path), "-o", "json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["connected_sources"][0]["id"])


# ---------------------------------------------------------------------- sources


def test_connect_list_schema_preview_cleanup_in_both_formats(
    local_stack: LocalStack, env: dict[str, str], tmp_path: Path, orders_api: Any
) -> None:
    env["ORDERS_API_KEY"] = orders_api.api_key
    sources = write_sources(tmp_path, orders_api)

    connected = run(env, "connect", "-f", str(sources))
    assert connected.returncode == 0, connected.stderr
    assert "orders_api" in connected.stdout and "src_" in connected.stdout
    assert orders_api.api_key not in connected.stdout + connected.stderr

    listed = run(env, "list", "-o", "json")
    assert listed.returncode == 0
    assert json.loads(listed.stdout) == api_data(local_stack, env, "list", scope="user")
    (source,) = json.loads(listed.stdout)
    table = run(env, "list")
    assert source["id"] in table.stdout and "orders_api" in table.stdout

    schema_json = run(env, "schema", source["id"], "-o", "json")
    assert json.loads(schema_json.stdout) == api_data(
        local_stack, env, "schema", source_id=source["id"], scope="user"
    )
    schema_table = run(env, "schema", source["id"])
    assert schema_table.returncode == 0
    assert "updated_at" in schema_table.stdout and "timestamp_tz" in schema_table.stdout

    preview_json = run(env, "preview", source["id"], "orders", "--limit", "3", "-o", "json")
    assert preview_json.returncode == 0, preview_json.stderr
    data = json.loads(preview_json.stdout)
    assert [r["id"] for r in data["rows"]] == [r["id"] for r in orders_api.records[:3]]
    preview_table = run(env, "preview", source["id"], "orders", "--limit", "3")
    assert orders_api.records[0]["name"] in preview_table.stdout
    assert "3 row(s)" in preview_table.stdout

    cleaned = run(env, "cleanup", source["id"], "-o", "json")
    assert cleaned.returncode == 0
    assert json.loads(cleaned.stdout)["deleted_source_ids"] == [source["id"]]
    assert json.loads(run(env, "list", "-o", "json").stdout) == []


def test_test_reads_the_secret_from_a_file_and_reports_reachable(
    env: dict[str, str], tmp_path: Path, orders_api: Any
) -> None:
    (tmp_path / "key.txt").write_text(orders_api.api_key + "\n")
    source = tmp_path / "source.json"
    source.write_text(
        json.dumps(
            {
                "type": "api",
                "name": "orders_api",
                "connection_config": {
                    "base_url": f"{orders_api.url}/orders",
                    "api_key": "${file:key.txt}",
                },
            }
        )
    )
    result = run(env, "test", "-f", str(source), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reachable"] is True
    table = run(env, "test", "-f", str(source))
    assert table.stdout.startswith("reachable in ")


# ---------------------------------------------------------------------- bad input


def test_bad_input_gives_one_clear_line_and_a_usage_exit_code(
    env: dict[str, str], tmp_path: Path, orders_api: Any
) -> None:
    no_token = {k: v for k, v in env.items() if k != "DATASOURCES_TOKEN"}
    result = run(no_token, "list")
    assert result.returncode == 2
    assert "DATASOURCES_TOKEN" in result.stderr and "Traceback" not in result.stderr

    no_workspace = {k: v for k, v in env.items() if k != "DATASOURCES_WORKSPACE"}
    assert "DATASOURCES_WORKSPACE" in run(no_workspace, "list").stderr

    assert run(env, "sync", "--no-such-option").returncode == 2
    assert run(env, "preview", "src_x", "s", "--limit", "101").returncode == 2
    assert run(env, "cleanup").returncode == 2  # neither ids nor --all

    broken = tmp_path / "broken.yaml"
    broken.write_text(f"sources:\n  - name: x\n    api_key: {PLANTED_KEY}\n   bad: [\n")
    result = run(env, "connect", "-f", str(broken))
    assert result.returncode == 2
    assert str(broken) in result.stderr and "not valid YAML" in result.stderr
    assert "line" in result.stderr and PLANTED_KEY not in result.stderr

    unset = write_sources(tmp_path, orders_api)
    result = run(
        {k: v for k, v in env.items() if k != "ORDERS_API_KEY"}, "connect", "-f", str(unset)
    )
    assert result.returncode == 2
    assert "ORDERS_API_KEY is not set" in result.stderr and "source 'orders_api'" in result.stderr


def test_a_source_that_fails_validation_shows_the_servers_errors_per_field(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "- type: database\n  name: customer_db\n  connection_config:\n"
        f"    host: db.example.com\n    port: 99999\n    password: {PLANTED_KEY}\n"
        "- type: file\n  name: orders_csv\n  connection_config: {}\n"
    )
    result = run(env, "connect", "-f", str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: request validation failed") and "HTTP 422" in lines[0]
    assert any(
        f"{path}: source 'customer_db': connection_config.port:" in line for line in lines
    ), result.stderr
    assert any(f"{path}: source 'orders_csv': connection_config.url:" in line for line in lines)
    assert PLANTED_KEY not in result.stderr + result.stdout


def test_an_api_error_exits_1_with_status_code_and_request_id(env: dict[str, str]) -> None:
    result = run(env, "schema", "src_" + "0" * 20)
    assert result.returncode == 1
    assert "HTTP 404, source_not_found, request id " in result.stderr
    missing = run(env, "preview", "src_" + "0" * 20, "orders")
    assert missing.returncode == 1


# ---------------------------------------------------------------------- syncs


# Enough records that the sync outlasts POST /sync's inline budget (1 s) even on a fast
# machine, so the rest goes through the queue while the CLI watches.
BIG = 20_000


@pytest.fixture
def big_api() -> Iterator[Any]:
    api = FakeApi(records=BIG).start()
    try:
        yield api
    finally:
        api.stop()


RECORDS = re.compile(r"records=(\d+)")


def test_sync_wait_shows_rising_counts_as_plain_lines_and_ends_with_the_stream_table(
    local_stack: LocalStack, env: dict[str, str], tmp_path: Path, big_api: Any
) -> None:
    env["ORDERS_API_KEY"] = big_api.api_key
    source_id = connect_one(env, write_sources(tmp_path, big_api, name="big_api"))

    result = run(
        env, "sync", source_id, "--wait", "--batch-size", "200", "--interval", "0.3", timeout=300
    )

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert "\r" not in out and "\x1b[" not in out  # not a terminal: no redraws, no colours
    progress = [line for line in lines if line.startswith("[")]
    counts = [int(RECORDS.search(line).group(1)) for line in progress]  # type: ignore[union-attr]
    assert progress[0].split()[3] in ("running", "queued")
    # It went on through the queue after the request (the stack's budget is 1 s), and
    # the watch saw the count rise more than once before the end.
    assert len(set(counts)) >= 3 and counts == sorted(counts), progress
    assert counts[0] < BIG and counts[-1] == BIG
    assert all(re.search(r"rate=\d+/s", line) for line in progress)
    # After the progress lines: the stream table, then one summary line.
    last_progress = max(i for i, line in enumerate(lines) if line.startswith("["))
    table = lines[last_progress + 1 :]
    header = next(line for line in table if "stream" in line and "records" in line)
    assert all(word in header for word in ("source", "status", "parts", "bytes", "output"))
    row = next(line for line in table if "orders" in line and "completed" in line)
    assert f"{BIG:,}" in row and "s3://" in row
    assert lines[-1].endswith(f"completed, {BIG:,} records")


def test_a_failed_sync_exits_3_and_status_follow_prints_the_apis_data(
    local_stack: LocalStack, env: dict[str, str], tmp_path: Path, orders_api: Any
) -> None:
    env["ORDERS_API_KEY"] = orders_api.api_key
    source_id = connect_one(env, write_sources(tmp_path, orders_api))
    # The first request of the sync is answered; every later one is refused (403, which
    # the connector does not retry), so the stream fails while it reads.
    answered = {"orders": 0}
    take_fault = orders_api._take_fault

    def refuse_after_the_first(path: str) -> Any:
        if path.startswith("/orders"):
            answered["orders"] += 1
            if answered["orders"] > 1:
                return fake_api._Fault(403, 1, None, {}, {"error": "revoked"})
        return take_fault(path)

    orders_api._take_fault = refuse_after_the_first

    result = run(env, "sync", source_id, "--wait", "-o", "json")

    assert result.returncode == 3, result.stdout + result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "failed"
    followed = run(env, "status", job["job_id"], "--follow", "-o", "json")
    assert followed.returncode == 3
    assert json.loads(followed.stdout) == api_data(
        local_stack, env, f"sync/{job['job_id']}", scope="user"
    )


def test_ctrl_c_stops_watching_not_the_sync(
    local_stack: LocalStack, env: dict[str, str], tmp_path: Path, big_api: Any
) -> None:
    env["ORDERS_API_KEY"] = big_api.api_key
    source_id = connect_one(env, write_sources(tmp_path, big_api, name="big_api"))
    started = run(env, "sync", source_id, "--batch-size", "100", "-o", "json")
    assert started.returncode == 5, started.stdout  # still running: not waited for
    job_id = json.loads(started.stdout)["job_id"]

    watcher = subprocess.Popen(
        [str(SCRIPT), "status", job_id, "--follow", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    first = watcher.stdout.readline()
    assert job_id in first
    watcher.send_signal(signal.SIGINT)
    _, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 130
    assert f"datasources status {job_id} -w {env['DATASOURCES_WORKSPACE']} --follow" in err

    final = run(env, "status", job_id, "--follow", "-o", "json", timeout=300)
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["records_processed"] == BIG


# ---------------------------------------------------------------------- schedules
# The schedule endpoints (issue 11) are faked here with their documented shape.


@pytest.fixture
def schedule_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, data: Any) -> None:
            raw = json.dumps({"status": "success", "message": "ok", "data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append(body)
            self._send({"schedules": [schedule(s, body) for s in body["source_ids"]]})

        def do_GET(self) -> None:
            self._send({"schedules": [schedule("src_" + "a" * 20, {"schedule": "rate(1 hour)"})]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1", bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def schedule(source_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "schedule": body.get("schedule"),
        "timezone": body.get("timezone", "UTC"),
        "sync_options": body.get("sync_options") or {},
        "enabled": body.get("enabled", True),
        "next_run_at": "2026-01-01T11:00:00Z" if body.get("schedule") else None,
        "last_run": None,
        "consecutive_failures": 0,
        "paused_reason": None,
    }


def test_schedule_set_list_remove(
    env: dict[str, str], schedule_api: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = schedule_api
    env = {**env, "DATASOURCES_URL": url}
    source_id = "src_" + "b" * 20

    result = run(
        env,
        "schedule",
        "set",
        source_id,
        "--every",
        "rate(1 hour)",
        "--timezone",
        "Europe/Rome",
        "--batch-size",
        "500",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["schedules"][0]["timezone"] == "Europe/Rome"
    assert bodies[-1] == {
        "scope": "user",
        "source_ids": [source_id],
        "schedule": "rate(1 hour)",
        "timezone": "Europe/Rome",
        "enabled": True,
        "sync_options": {"batch_size": 500},
    }

    listed = run(env, "schedule", "list")
    assert listed.returncode == 0 and "rate(1 hour)" in listed.stdout

    removed = run(env, "schedule", "remove", source_id)
    assert removed.returncode == 0 and "(none)" in removed.stdout
    assert bodies[-1]["schedule"] is None


def test_on_a_terminal_progress_is_redrawn_in_place(
    env: dict[str, str], tmp_path: Path, big_api: Any
) -> None:
    import pty

    env["ORDERS_API_KEY"] = big_api.api_key
    source_id = connect_one(env, write_sources(tmp_path, big_api, name="big_api"))
    started = run(env, "sync", source_id, "--batch-size", "200", "-o", "json")
    job_id = json.loads(started.stdout)["job_id"]

    leader, follower = pty.openpty()
    watcher = subprocess.Popen(
        [str(SCRIPT), "status", job_id, "--follow", "--interval", "0.3"],
        env={**env, "TERM": "xterm-256color", "COLUMNS": "160"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert watcher.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    # The live display moves the cursor back up to redraw, instead of adding lines...
    assert "\x1b[2K" in screen or "\x1b[1A" in screen or "\x1b[A" in screen, screen[-2000:]
    assert "records/s" in screen and "elapsed" in screen
    # ...and the stream table stays when it ends.
    assert "completed" in screen and f"{BIG:,}" in screen
