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


# IPv6 prefixes that carry an IPv4 address a translator or relay would deliver to; the
# IPv4 inside is judged instead. NAT64 (64:ff9b::/96, RFC 6052) is globally reachable
# per IANA and is how an IPv6-only subnet reaches IPv4 hosts.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Only 2000::/3 is allocated for global unicast; everything else in IPv6 is reserved,
# deprecated (site-local fec0::/10, IPv4-compatible ::/96) or special below.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


@dataclass(frozen=True)
class SpecialBlock:
    """One block of the IANA special-purpose registries (or a deprecated range)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    name: str
    reason: str  # the word the refusal message uses


def _block(cidr: str, name: str, reason: str = "non-public") -> SpecialBlock:
    return SpecialBlock(ipaddress.ip_network(cidr), name, reason)


# Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries, plus the
# multicast and deprecated ranges. All are refused, also the few IANA marks "globally
# reachable" (anycast relays, AS112 sinks, ORCHID, drone ids): none is a database or an
# API, and a relay would carry the connection somewhere unchecked. The order puts the
# more telling reason first (loopback must say "loopback": local mode allows it).
SPECIAL_BLOCKS: tuple[SpecialBlock, ...] = (
    # IPv4 (RFC 6890 and updates)
    _block("127.0.0.0/8", "Loopback", "loopback"),
    _block("169.254.0.0/16", "Link Local", "link-local (cloud metadata)"),
    _block("0.0.0.0/32", "This host on this network", "unspecified"),
    _block("0.0.0.0/8", "This network"),
    _block("10.0.0.0/8", "Private-Use", "private"),
    _block("100.64.0.0/10", "Shared Address Space"),
    _block("172.16.0.0/12", "Private-Use", "private"),
    _block(
        "192.0.0.0/24", "IETF Protocol Assignments (PCP/TURN anycast, DS-Lite, NAT64 discovery)"
    ),
    _block("192.0.2.0/24", "Documentation (TEST-NET-1)"),
    _block("192.31.196.0/24", "AS112-v4"),
    _block("192.52.193.0/24", "AMT"),
    _block("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "deprecated"),
    _block("192.168.0.0/16", "Private-Use", "private"),
    _block("192.175.48.0/24", "Direct Delegation AS112 Service"),
    _block("198.18.0.0/15", "Benchmarking"),
    _block("198.51.100.0/24", "Documentation (TEST-NET-2)"),
    _block("203.0.113.0/24", "Documentation (TEST-NET-3)"),
    _block("224.0.0.0/4", "Multicast", "multicast"),
    _block("255.255.255.255/32", "Limited Broadcast", "reserved"),
    _block("240.0.0.0/4", "Reserved", "reserved"),
    # IPv6 (RFC 6890 and updates)
    _block("::1/128", "Loopback Address", "loopback"),
    _block("::/128", "Unspecified Address", "unspecified"),
    _block("::/96", "Deprecated (IPv4-compatible, RFC 4291)", "deprecated"),
    _block("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)"),
    _block("100::/64", "Discard-Only Address Block"),
    _block("100:0:0:1::/64", "Dummy IPv6 Prefix"),
    _block("2001::/32", "TEREDO (carries an obfuscated IPv4 address)"),
    _block("2001::/23", "IETF Protocol Assignments (anycast, AMT, AS112, ORCHID, DETs)"),
    _block("2001:db8::/32", "Documentation"),
    _block("2002::/16", "6to4 (relays are deprecated, RFC 7526)", "deprecated"),
    _block("2620:4f:8000::/48", "Direct Delegation AS112 Service"),
    _block("3fff::/20", "Documentation"),
    _block("3ffe::/16", "Deprecated (6bone, RFC 3701)", "deprecated"),
    _block("5f00::/16", "Segment Routing (SRv6) SIDs"),
    _block("fc00::/7", "Unique-Local", "private"),
    _block("fe80::/10", "Link-Local Unicast", "link-local (cloud metadata)"),
    _block("fec0::/10", "Deprecated (site-local, RFC 3879)", "deprecated"),
    _block("ff00::/8", "Multicast", "multicast"),
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def special_block(address: IPAddress) -> SpecialBlock | None:
    """The first special-purpose block that holds `address`, or None."""
    for block in SPECIAL_BLOCKS:
        if block.network.version == address.version and address in block.network:
            return block
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address is not reachable from a deployed stack, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:a9fe:a9fe and 64:ff9b::a9fe:a9fe deliver to 169.254.169.254: judge the IPv4.
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal_reason(embedded)
    block = special_block(address)
    if block is not None:
        return block.reason
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved"
    if not address.is_global:
        # A second opinion: a range Python's registry copy knows and this table does not.
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
