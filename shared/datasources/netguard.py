"""SSRF guard: resolve a user-named host once and refuse addresses a tenant must not reach.

Connectors call `resolve_host` before opening any socket and then connect to the
returned address (not the name again), so there is no DNS-rebinding window between
the check and the connection. Local mode allows loopback so that a database on the
developer's machine can be connected; operators allowlist CIDRs to reach a VPC database.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from datasources.errors import ConnectionFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Injected by tests to prove the refusal happens before any socket opens.
Resolver = Callable[[str, int], list[str]]


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


_resolver: Resolver = _system_resolver


def set_resolver(resolver: Resolver | None) -> None:
    """Replace the DNS resolver (tests); None restores the system resolver."""
    global _resolver
    _resolver = resolver or _system_resolver


@dataclass(frozen=True)
class ResolvedHost:
    host: str
    address: str
    port: int


def parse_ip_literal(host: str) -> IPAddress | None:
    """An IP written any way a resolver would accept it (decimal, octal, hex, short forms)."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        # inet_aton accepts 2130706433, 0x7f.1, 0177.0.0.1 and friends, like libc does.
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


# IPv6 prefixes that carry an IPv4 address a translator or relay would deliver to:
# 6to4 (2002::/16) and NAT64 (64:ff9b::/96, RFC 6052; 64:ff9b:1::/48, RFC 8215, local use).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address is not reachable from a deployed stack, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # 2002:a9fe:a9fe:: reaches 169.254.169.254 through a 6to4 relay: judge the IPv4 inside.
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal_reason(embedded)
        if address in _NAT64_LOCAL:
            return "non-public"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        # Shared address space (100.64.0.0/10), documentation ranges and the like.
        return "non-public"
    return None


def check_address(
    address: IPAddress, *, local_mode: bool, allowed_cidrs: Sequence[str]
) -> str | None:
    """The refusal reason for one address under the operator's policy, or None if allowed."""
    for cidr in allowed_cidrs:
        if address in ipaddress.ip_network(cidr, strict=False):
            return None
    reason = refusal_reason(address)
    if reason == "loopback" and local_mode:
        return None
    return reason


def resolve_host(
    host: str, port: int, *, local_mode: bool, allowed_cidrs: Sequence[str] = ()
) -> ResolvedHost:
    """Resolve `host` and return the first address; ConnectionFailed(stage="dns"|"policy")."""
    literal = parse_ip_literal(host)
    if literal is not None:
        candidates = [str(literal)]
    else:
        try:
            candidates = _resolver(host, port)
        except (OSError, UnicodeError):
            raise ConnectionFailed(
                f"could not resolve host '{host}': check the host name", stage="dns"
            ) from None
        if not candidates:
            raise ConnectionFailed(f"host '{host}' has no address", stage="dns")
    # Every address must pass: a name that resolves to one public and one private
    # address is refused, since the client could pick either.
    for text in candidates:
        reason = check_address(
            ipaddress.ip_address(text), local_mode=local_mode, allowed_cidrs=allowed_cidrs
        )
        if reason is not None:
            raise ConnectionFailed(
                f"host '{host}' resolves to a {reason} address, which this service does not "
                "connect to (an operator can allowlist a network with ALLOWED_CIDRS)",
                stage="policy",
            )
    return ResolvedHost(host=host, address=candidates[0], port=port)
