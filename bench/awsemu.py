"""Emulated AWS for the bench: a moto server in its own process, provisioned from template.yaml.

A separate process (not in-process `mock_aws`) so that the memory moto spends on the
landing bucket's objects is never counted in a measured leg's peak RSS, and so that a
cold start pays a real HTTP round trip as it would against AWS.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import JWT_SECRET, ROOT, log

if TYPE_CHECKING:
    from local.provision import LocalResources


@dataclass
class Emulator:
    endpoint_url: str
    template: dict[str, object]
    resources: LocalResources

    def function_env(self, function_dir: str, **overrides: str) -> dict[str, str]:
        """The environment Lambda would give the function, pointed at the emulator."""
        from bench.common import FUNCTIONS
        from local.functions import function_environment

        env = function_environment(
            self.template,
            self.resources,
            FUNCTIONS[function_dir],
            overrides={
                "JWT_SECRET": JWT_SECRET,
                "LOCAL_MODE": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
                **overrides,
            },
        )
        # A clean environment plus what a Lambda process has: nothing of this shell
        # (no AWS profile, no proxy settings) reaches the legs.
        base = {
            key: os.environ[key]
            for key in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
            if key in os.environ
        }
        return {**base, **env}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the moto server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the moto server did not answer within 60 s")


@contextlib.contextmanager
def moto_server(log_path: Path) -> Iterator[Emulator]:
    """Start a moto server on a free loopback port, provision the template, stop it after."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "false"},
        )
    try:
        _wait_until_up(url, proc)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        from local.cfn import load_template
        from local.provision import provision

        template_path = ROOT / "template.yaml"
        template = load_template(template_path)
        resources = provision(template_path=template_path, endpoint_url=url)
        log(f"moto server up on {url} (pid {proc.pid}), template provisioned")
        yield Emulator(url, template, resources)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
