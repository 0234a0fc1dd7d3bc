"""The SSRF guard refuses internal addresses before any socket opens."""

from __future__ import annotations

import socket

import pytest

from datasources import netguard
from datasources.errors import ConnectionFailed


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Proof that refusals happen before connecting: any socket use fails the test.
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost.example",  # resolved below to loopback
        "2130706433",  # 127.0.0.1 in decimal
        "0x7f.0.0.1",  # hex
        "0177.0.0.1",  # octal
        "127.1",  # short form
        "169.254.169.254",  # cloud metadata
        "[fd00:ec2::254]",  # IPv6 metadata
        "::ffff:127.0.0.1",  # IPv4-mapped IPv6
        "::ffff:169.254.169.254",
        "10.0.0.5",
        "172.16.3.4",
        "192.168.1.1",
        "::1",
        "fe80::1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "100.64.0.1",  # carrier-grade NAT
    ],
)
def test_internal_addresses_are_refused_in_a_deployed_stack(host: str) -> None:
    netguard.set_resolver(lambda name, port: ["127.0.0.1"])
    try:
        with pytest.raises(ConnectionFailed) as caught:
            netguard.resolve_host(host, 5432, local_mode=False)
    finally:
        netguard.set_resolver(None)
    assert caught.value.stage == "policy"


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    netguard.set_resolver(lambda name, port: ["93.184.216.34", "10.1.2.3"])
    try:
        with pytest.raises(ConnectionFailed, match="private"):
            netguard.resolve_host("db.example.com", 5432, local_mode=False)
    finally:
        netguard.set_resolver(None)


def test_public_addresses_pass_and_the_checked_address_is_returned() -> None:
    netguard.set_resolver(lambda name, port: ["93.184.216.34"])
    try:
        resolved = netguard.resolve_host("db.example.com", 5432, local_mode=False)
    finally:
        netguard.set_resolver(None)
    assert resolved.address == "93.184.216.34"


def test_local_mode_allows_loopback_only() -> None:
    assert netguard.resolve_host("127.0.0.1", 1, local_mode=True).address == "127.0.0.1"
    with pytest.raises(ConnectionFailed):
        netguard.resolve_host("169.254.169.254", 80, local_mode=True)


def test_allowlisted_cidrs_reach_a_vpc_database() -> None:
    resolved = netguard.resolve_host(
        "10.0.12.7", 5432, local_mode=False, allowed_cidrs=["10.0.0.0/16"]
    )
    assert resolved.address == "10.0.12.7"
    with pytest.raises(ConnectionFailed):
        netguard.resolve_host("10.1.0.1", 5432, local_mode=False, allowed_cidrs=["10.0.0.0/16"])


def test_unresolvable_names_fail_at_the_dns_stage() -> None:
    def fail(name: str, port: int) -> list[str]:
        raise socket.gaierror("Name or service not known")

    netguard.set_resolver(fail)
    try:
        with pytest.raises(ConnectionFailed) as caught:
            netguard.resolve_host("no-such-host.invalid", 5432, local_mode=False)
    finally:
        netguard.set_resolver(None)
    assert caught.value.stage == "dns"
