"""The local stack (what `make dev` runs) in a subprocess on free loopback ports.

Shared by the end-to-end fixture and the fuzz test: they differ only in the module
that starts the stack, the JWT secret and the inline sync budget.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 90


@dataclass(frozen=True)
class StackProcess:
    root_url: str
    aws_endpoint: str
    log_path: Path


def free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@contextmanager
def running_stack(
    module: str, *, jwt_secret: str, sync_budget_seconds: int, log_prefix: str
) -> Iterator[StackProcess]:
    """Start `python -m <module>` (local.stack or a wrapper of it), wait until it answers,
    and stop it with SIGINT (its own clean shutdown) afterwards."""
    port, aws_port = free_ports(2)
    env = {
        **os.environ,
        "PORT": str(port),
        "LOCAL_AWS_PORT": str(aws_port),
        "JWT_SECRET": jwt_secret,
        "PARAMETER_OVERRIDES": f"SyncTimeBudgetSeconds={sync_budget_seconds}",
        "PYTHONUNBUFFERED": "1",
    }
    # The stack must not inherit a test's emulated-AWS settings.
    env.pop("AWS_ENDPOINT_URL", None)
    log_path = Path(tempfile.mkdtemp(prefix=log_prefix)) / "stack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        root_url = f"http://127.0.0.1:{port}"
        _wait_until_ready(process, root_url, log_path)
        yield StackProcess(root_url, f"http://127.0.0.1:{aws_port}", log_path)
    finally:
        _stop(process)


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
        except (requests.ConnectionError, requests.Timeout):
            # Not listening yet, or listening while init still imports the handlers.
            pass
        time.sleep(0.3)
    raise RuntimeError(
        f"local stack not ready in {STARTUP_TIMEOUT_SECONDS} s:\n{log_path.read_text()[-4000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
