"""The local stack (`python -m local.stack`, what `make dev` runs) as a test fixture.

It runs in a subprocess on free loopback ports, exactly as a developer starts it, so
the end-to-end tests drive the same gateway, worker loop and emulated AWS over HTTP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from local.provision import DEFAULT_STACK_NAME
from local.tokens import mint_token

ROOT = Path(__file__).resolve().parents[2]
E2E_JWT_SECRET = "e2e-local-stack-secret-0123456789abcdef"
# Small enough that a few thousand rows outlast POST /sync's inline budget and the
# rest goes through the queue to the worker, as a long sync does when deployed.
E2E_SYNC_BUDGET_SECONDS = 1
STARTUP_TIMEOUT_SECONDS = 90


def _free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@dataclass
class LocalStack:
    """A running local stack: its URLs, a token factory and an S3 client at its endpoint."""

    base_url: str
    root_url: str
    aws_endpoint: str
    bucket: str
    s3: Any
    log_path: Path

    def token(
        self, role: str = "admin", sub: str = "user-1", org: str = "acme", ttl_seconds: int = 600
    ) -> str:
        return mint_token(sub, org, role, secret=E2E_JWT_SECRET, ttl_seconds=ttl_seconds)

    def headers(
        self, role: str = "admin", sub: str = "user-1", org: str = "acme"
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role=role, sub=sub, org=org)}"}

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _wait_until_ready(process: subprocess.Popen[bytes], root_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"local stack exited with {process.returncode}:\n{log_path.read_text()[-4000:]}"
            )
        try:
            if requests.get(f"{root_url}/_local/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"local stack not ready in {STARTUP_TIMEOUT_SECONDS} s:\n{log_path.read_text()[-4000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # SIGINT is Ctrl-C: the stack's own clean shutdown path.
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    port, aws_port = _free_ports(2)
    env = {
        **os.environ,
        "PORT": str(port),
        "LOCAL_AWS_PORT": str(aws_port),
        "JWT_SECRET": E2E_JWT_SECRET,
        "PARAMETER_OVERRIDES": f"SyncTimeBudgetSeconds={E2E_SYNC_BUDGET_SECONDS}",
        "PYTHONUNBUFFERED": "1",
    }
    # The stack must not inherit a test's emulated-AWS settings.
    env.pop("AWS_ENDPOINT_URL", None)
    log_dir = Path(tempfile.mkdtemp(prefix="local-stack-"))
    log_path = log_dir / "stack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.stack"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        root_url = f"http://127.0.0.1:{port}"
        _wait_until_ready(process, root_url, log_path)
        aws_endpoint = f"http://127.0.0.1:{aws_port}"
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=aws_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield LocalStack(
            base_url=f"{root_url}/api/v1/data",
            root_url=root_url,
            aws_endpoint=aws_endpoint,
            bucket=f"{DEFAULT_STACK_NAME}-landingbucket",
            s3=s3,
            log_path=log_path,
        )
    finally:
        _stop(process)
