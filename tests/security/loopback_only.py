"""The local stack with every outbound connection confined to loopback (for fuzzing).

    python -m tests.security.loopback_only      (same environment as `python -m local.stack`)

A fuzzer connects and tests sources with whatever hosts it invents: `8.8.8.8`, names
that a real resolver would look up. Here the SSRF guard's own hook refuses every
address that is not loopback, and names other than `localhost` do not resolve, so no
packet and no DNS query leaves the machine, whatever the fuzzer sends.
"""

from __future__ import annotations

import runpy
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "shared"))

from datasources import netguard  # noqa: E402

_check_address = netguard.check_address


def _loopback_only(
    address: netguard.IPAddress, *, local_mode: bool, allowed_cidrs: Sequence[str]
) -> str | None:
    reason = _check_address(address, local_mode=local_mode, allowed_cidrs=allowed_cidrs)
    if reason is None and not address.is_loopback:
        return "non-loopback (the fuzzing stack reaches loopback only)"
    return reason


def _no_dns(host: str, port: int) -> list[str]:
    if host == "localhost":
        return ["127.0.0.1"]
    raise socket.gaierror(f"{host}: no DNS in the fuzzing stack")


netguard.check_address = _loopback_only  # type: ignore[assignment]
netguard.set_resolver(_no_dns)

if __name__ == "__main__":
    runpy.run_module("local.stack", run_name="__main__", alter_sys=True)
