"""Fixtures for the client and CLI tests.

These tests run in a virtualenv that holds only the installed client (`make
client-test`), so they import nothing of the server. The local stack they talk to is
started with the project's own interpreter (`DATASOURCES_SERVER_PYTHON`, default
`.venv/bin/python` at the repository root), exactly as `make dev` starts it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_PYTHON = os.environ.get("DATASOURCES_SERVER_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
JWT_SECRET = "client-tests-secret-0123456789abcdef"
# A sync of a few thousand records outlasts this inline budget and goes on through the
# queue and the worker, as a long sync does when deployed.
SYNC_BUDGET_SECONDS = 1


def _load_fake_api() -> ModuleType:
    # The fake API is plain standard library; loaded by path so that the server's test
    # package (and its dependencies) stay out of this virtualenv.
    spec = importlib.util.spec_from_file_location(
        "client_tests_fake_api", ROOT / "tests" / "support" / "fake_api.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fake_api = _load_fake_api()
FakeApi = fake_api.FakeApi


def free_ports(count: int) -> list[int]:
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
    root_url: str
    log_path: Path

    @property
    def base_url(self) -> str:
        """What the client takes: it ends in /api/v1, as in the published examples."""
        return f"{self.root_url}/api/v1"

    def token(self, sub: str = "user-1", org: str = "acme", role: str = "admin") -> str:
        result = subprocess.run(
            [SERVER_PYTHON, "-m", "local.tokens", "--sub", sub, "--org", org, "--role", role],
            cwd=ROOT,
            env={**os.environ, "JWT_SECRET": JWT_SECRET},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    port, aws_port = free_ports(2)
    env = {
        **os.environ,
        "PORT": str(port),
        "LOCAL_AWS_PORT": str(aws_port),
        "JWT_SECRET": JWT_SECRET,
        "PARAMETER_OVERRIDES": f"SyncTimeBudgetSeconds={SYNC_BUDGET_SECONDS}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("VIRTUAL_ENV", None)
    log_path = Path(tempfile.mkdtemp(prefix="client-tests-stack-")) / "stack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [SERVER_PYTHON, "-m", "local.stack"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    root_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"local stack exited:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{root_url}/_local/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"local stack not ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.3)
        yield LocalStack(root_url, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def workspace() -> str:
    """A workspace of its own for each test: no test sees another's sources."""
    return f"ws_client_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def orders_api() -> Iterator[object]:
    api = FakeApi(records=450).start()
    try:
        yield api
    finally:
        api.stop()


def api_source(api: object, name: str = "orders_api", api_key: str | None = None) -> dict:
    return {
        "type": "api",
        "name": name,
        "connection_config": {
            "base_url": f"{api.url}/orders",  # type: ignore[attr-defined]
            "api_key": api_key or api.api_key,  # type: ignore[attr-defined]
        },
    }
