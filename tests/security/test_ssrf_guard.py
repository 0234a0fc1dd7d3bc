"""SSRF (OWASP API7) through POST /test-connection, for database, api and file (https)
sources, in a deployed configuration (LOCAL_MODE false).

Sockets and drivers are stubbed: a refused host must never reach `socket.connect`,
`socket.create_connection`, `psycopg.connect` or `pymysql.connect` (libpq opens its
sockets in C, so its entry point is the one to guard). Names are answered by a stub
resolver, so no DNS query leaves the machine and no packet goes anywhere.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql
import pytest

from datasources import netguard
from tests.conftest import Stack
from tests.connectors import db_fixtures as fx
from tests.support.fake_api import FakeApi

PUBLIC = "93.184.216.34"  # answered by the stub resolver; never contacted (sockets stubbed)

# Names the stub resolver knows, and what they resolve to.
NAMES = {
    "metadata.example.com": ["169.254.169.254"],
    "v6-metadata.example.com": ["fd00:ec2::254"],
    "internal.example.com": ["10.20.30.40"],
    "loopback.example.com": ["127.0.0.1", "::1"],
    "half-private.example.com": [PUBLIC, "192.168.0.10"],
    "public.example.com": [PUBLIC],
}

# Every spelling of an internal address a deployed stack must refuse.
REFUSED_HOSTS = [
    "127.0.0.1",
    "127.8.9.10",
    "2130706433",  # 127.0.0.1, decimal
    "0x7f000001",  # hex
    "0x7f.0.0.1",  # dotted hex
    "0177.0.0.1",  # octal
    "127.1",  # short form
    "169.254.169.254",  # cloud metadata
    "2852039166",  # 169.254.169.254, decimal
    "0xa9.0xfe.0xa9.0xfe",
    "fd00:ec2::254",  # the IPv6 metadata address
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "::ffff:a9fe:a9fe",  # 169.254.169.254, mapped
    "64:ff9b::a9fe:a9fe",  # 169.254.169.254 through NAT64
    "2002:a9fe:a9fe::1",  # 169.254.169.254 through 6to4
    "64:ff9b::a00:1",  # 10.0.0.1 through NAT64
    "fe80::1",  # IPv6 link-local
    "fec0::1",  # IPv6 site-local, deprecated (D10)
    "192.88.99.1",  # 6to4 relay anycast, deprecated
    "192.0.0.9",  # PCP anycast: IANA special-purpose, never a data source
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "fc00::1",  # IPv6 unique local
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # unspecified
    "::",
    "224.0.0.1",  # multicast
    "ff02::1",
    *NAMES.keys() - {"public.example.com"},
]


# httpx does not parse an octal IPv4 host at all (libc would): a 422, before any lookup.
UNPARSABLE_URLS = {("api", "0177.0.0.1")}


@dataclass
class Wire:
    """What tried to leave the machine: every connect attempt, by address."""

    attempts: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    refuse_all: bool = True


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> Iterator[Wire]:
    """A deployed stack's settings, a stub resolver and stubbed sockets and drivers."""
    stack.configure(LOCAL_MODE="false", ALLOWED_CIDRS="")
    record = Wire()

    def resolver(host: str, port: int) -> list[str]:
        record.resolved.append(host)
        if host not in NAMES:
            raise socket.gaierror("Name or service not known")
        return list(NAMES[host])

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        record.attempts.append(str(address[0]))
        raise ConnectionRefusedError(111, "Connection refused (stubbed)")

    def connect(self: socket.socket, address: Any) -> None:
        record.attempts.append(str(address[0] if isinstance(address, tuple) else address))
        raise ConnectionRefusedError(111, "Connection refused (stubbed)")

    def pg_connect(*args: Any, **kwargs: Any) -> Any:
        record.attempts.append(str(kwargs.get("hostaddr") or kwargs.get("host")))
        raise psycopg.OperationalError("connection refused (stubbed)")

    def my_connect(*args: Any, **kwargs: Any) -> Any:
        record.attempts.append(str(kwargs.get("host")))
        raise pymysql.err.OperationalError(2003, "Can't connect (stubbed)")

    netguard.set_resolver(resolver)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(psycopg, "connect", pg_connect)
    monkeypatch.setattr(pymysql, "connect", my_connect)
    try:
        yield record
    finally:
        netguard.set_resolver(None)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


CONFIGS: dict[str, Callable[[str], dict[str, Any]]] = {
    "postgresql": lambda host: {
        "type": "database",
        "connection_config": {
            "host": host,
            "port": 5432,
            "database": "d",
            "username": "u",
            "password": "p",
        },
    },
    "mysql": lambda host: {
        "type": "database",
        "connection_config": {
            "host": host,
            "port": 3306,
            "database": "d",
            "username": "u",
            "password": "p",
        },
    },
    "api": lambda host: {
        "type": "api",
        "connection_config": {"base_url": f"https://{url_host(host)}/v1/items", "api_key": "k"},
    },
    "file": lambda host: {
        "type": "file",
        "connection_config": {"url": f"https://{url_host(host)}/exports/data.csv"},
    },
}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_internal_hosts_are_refused_before_any_socket_opens(
    stack: Stack, wire: Wire, kind: str
) -> None:
    wrong: list[str] = []
    for host in REFUSED_HOSTS:
        response = stack.call("test", body={"source_config": CONFIGS[kind](host)})
        stage = (response.data or {}).get("stage") if isinstance(response.data, dict) else None
        if (kind, host) in UNPARSABLE_URLS:
            # Refused even earlier: the URL itself is invalid (422), so nothing is resolved.
            if response.status_code != 422:
                wrong.append(f"{host}: {response.status_code} {response.body}")
        elif response.status_code != 400 or stage != "policy":
            wrong.append(f"{host}: {response.status_code} {response.body}")
        elif "ALLOWED_CIDRS" not in response.body["message"]:
            wrong.append(f"{host}: the refusal does not say how to allow it")
    assert not wrong, "\n".join(wrong)
    assert wire.attempts == [], "a refused host was connected to"


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_a_public_host_is_connected_at_the_checked_address(
    stack: Stack, wire: Wire, kind: str
) -> None:
    # The control for the test above: the same stubs do let a public address through.
    response = stack.call("test", body={"source_config": CONFIGS[kind]("public.example.com")})
    assert response.status_code == 400 and response.data["stage"] in ("tcp", "tls"), response.body
    assert wire.attempts and set(wire.attempts) == {PUBLIC}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_dns_rebinding_cannot_swap_the_checked_address(stack: Stack, wire: Wire, kind: str) -> None:
    # The name resolves to a public address first and to the metadata address afterwards:
    # whatever asks again gets the internal one. The connection must use the first.
    answers = iter([[PUBLIC]])
    rebinding = "rebind.example.com"

    def rebinding_resolver(host: str, port: int) -> list[str]:
        wire.resolved.append(host)
        return next(answers, ["169.254.169.254"])

    netguard.set_resolver(rebinding_resolver)
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        # A driver or HTTP client resolving the name itself would get the internal address.
        if host == rebinding:
            return original("169.254.169.254", *args, **kwargs)
        return original(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        response = stack.call("test", body={"source_config": CONFIGS[kind](rebinding)})
    assert response.status_code == 400, response.body
    assert wire.attempts, "nothing tried to connect"
    assert set(wire.attempts) == {PUBLIC}, wire.attempts
    assert wire.resolved == [rebinding], "the name was resolved more than once"


def test_an_allowlisted_network_is_reachable_and_nothing_else(stack: Stack, wire: Wire) -> None:
    stack.configure(ALLOWED_CIDRS="10.20.0.0/16,fd00:ec2::/64")
    allowed = stack.call("test", body={"source_config": CONFIGS["postgresql"]("10.20.30.40")})
    assert allowed.data["stage"] == "tcp", allowed.body  # got as far as the (stubbed) socket
    assert wire.attempts == ["10.20.30.40"]
    for host in ("10.21.0.1", "169.254.169.254", "127.0.0.1"):
        refused = stack.call("test", body={"source_config": CONFIGS["postgresql"](host)})
        assert refused.data["stage"] == "policy", (host, refused.body)
    assert wire.attempts == ["10.20.30.40"]


# ---------------------------------------------------------------- redirects


def test_redirects_to_internal_hosts_are_not_followed(stack: Stack) -> None:
    """A loopback API (local mode) answers 302 to the metadata address in several spellings.

    Only the API itself is ever contacted: the redirect is refused before a connection.
    """
    stack.configure(LOCAL_MODE="true")
    attempts: list[str] = []
    original = socket.create_connection

    def spy(address: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(str(address[0]))
        if address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"connected to {address}")
        return original(address, *args, **kwargs)

    targets = [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.1/",
    ]
    with FakeApi(require_auth=False) as api, pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "create_connection", spy)
        for target in targets:
            for config in (
                {
                    "type": "api",
                    "connection_config": {"base_url": f"{api.url}/redirect?to={target}"},
                },
                {
                    "type": "file",
                    "connection_config": {
                        "url": f"{api.url}/redirect?to={target}",
                        "format": "csv",
                    },
                },
            ):
                response = stack.call("test", body={"source_config": config})
                assert response.status_code == 400, (target, response.body)
                assert "redirect" in response.body["message"], response.body
    assert attempts and set(attempts) == {"127.0.0.1"}


# ---------------------------------------------------------------- local mode


@pytest.mark.postgres
def test_local_mode_allows_loopback_and_a_deployed_stack_refuses_it(stack: Stack) -> None:
    config = {
        "type": "database",
        "connection_config": {
            "host": fx.HOST,
            "port": fx.PG_PORT,
            "engine": "postgresql",
            "database": fx.DATABASE,
            "username": fx.USER,
            "password": fx.PASSWORD,
        },
    }
    stack.configure(LOCAL_MODE="true", ALLOWED_CIDRS="")
    local = stack.call("test", body={"source_config": config})
    assert local.status_code == 200 and local.data["reachable"] is True, local.body
    stack.configure(LOCAL_MODE="false")
    deployed = stack.call("test", body={"source_config": config})
    assert deployed.status_code == 400 and deployed.data["stage"] == "policy"
    assert "loopback" in deployed.body["message"]
    # An operator's allowlist is the way in for a deployed stack.
    stack.configure(ALLOWED_CIDRS="127.0.0.0/8")
    allowed = stack.call("test", body={"source_config": config})
    assert allowed.status_code == 200, allowed.body


def test_local_mode_says_that_it_allows_loopback() -> None:
    from local.stack import banner

    class Resources:
        table_name = "t"
        bucket_name = "b"
        queue_url = "q"
        dlq_url = "d"

    class Running:
        resources = Resources()
        aws_endpoint = "http://127.0.0.1:4566"

    text = banner(Running(), 3000, "dev-secret")  # type: ignore[arg-type]
    assert "LOCAL MODE" in text and "loopback" in text and "ALLOWED_CIDRS" in text
