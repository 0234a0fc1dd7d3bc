"""Fuzzing (OWASP API8/API9): schemathesis drives openapi.yaml against the local stack over
HTTP with a valid token. No request may end in a 5xx, and every response must match the
documented status codes, content type and schema.

The stack runs as `make dev` runs it (template.yaml on moto, the HTTP gateway, the
worker loop), started through tests/security/loopback_only.py so that the sources the
fuzzer invents can only ever reach loopback. Examples are bounded (FUZZ_EXAMPLES per
operation, fixed seed) to keep the run near a minute on two cores.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local.tokens import mint_token

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "fuzzing-local-stack-secret-0123456789abcdef"
FUZZ_EXAMPLES = 25
FUZZ_SEED = 20261127
STARTUP_TIMEOUT_SECONDS = 90
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[str]:
    """The local stack on free loopback ports, outbound traffic confined to loopback."""
    port, aws_port = _free_port(), _free_port()
    while aws_port == port:
        aws_port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "LOCAL_AWS_PORT": str(aws_port),
        "JWT_SECRET": JWT_SECRET,
        "PARAMETER_OVERRIDES": "SyncTimeBudgetSeconds=2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    log_path = Path(tempfile.mkdtemp(prefix="fuzz-stack-")) / "stack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.security.loopback_only"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    root_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the local stack exited:\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{root_url}/_local/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the local stack did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield root_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_fuzzing_openapi_finds_no_5xx_and_no_undocumented_response(
    fuzz_stack: str, tmp_path: Path
) -> None:
    token = mint_token("fuzzer", "fuzz-org", "admin", secret=JWT_SECRET, ttl_seconds=3600)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(ROOT / "openapi.yaml"),
        "--url",
        fuzz_stack,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--seed",
        str(FUZZ_SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(  # the CLI exits non-zero on any failed check
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    # Every operation of openapi.yaml was exercised (a silent no-op run proves nothing).
    assert "Tested: 7" in output, output[-4000:]
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > 7 * FUZZ_EXAMPLES, output[-4000:]
