"""The SSRF guard against the IANA special-purpose registries and Python's `is_global` (D10).

REGISTRY is transcribed from the IANA IPv4 and IPv6 Special-Purpose Address Registries
(name, and IANA's "globally reachable" column), independently of the guard's own table.
Every block is refused at its first, middle and last address. The guard is then compared
with `ipaddress.ip_address(x).is_global` over every registry sample and a sweep of the
whole address space; each disagreement must be one of DIFFERENCES, which says why.
No resolver or socket is used: the guard is called on address objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from datasources import netguard

# (block, IANA name, globally reachable per IANA: True, False or None for N/A)
REGISTRY: list[tuple[str, str, bool | None]] = [
    ("0.0.0.0/8", "This network", False),
    ("0.0.0.0/32", "This host on this network", False),
    ("10.0.0.0/8", "Private-Use", False),
    ("100.64.0.0/10", "Shared Address Space", False),
    ("127.0.0.0/8", "Loopback", False),
    ("169.254.0.0/16", "Link Local", False),
    ("172.16.0.0/12", "Private-Use", False),
    ("192.0.0.0/24", "IETF Protocol Assignments", False),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", False),
    ("192.0.0.8/32", "IPv4 dummy address", False),
    ("192.0.0.9/32", "Port Control Protocol Anycast", True),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", True),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", False),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", False),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", False),
    ("192.31.196.0/24", "AS112-v4", True),
    ("192.52.193.0/24", "AMT", True),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", None),
    ("192.168.0.0/16", "Private-Use", False),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", True),
    ("198.18.0.0/15", "Benchmarking", False),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", False),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", False),
    ("240.0.0.0/4", "Reserved", False),
    ("255.255.255.255/32", "Limited Broadcast", False),
    ("::1/128", "Loopback Address", False),
    ("::/128", "Unspecified Address", False),
    ("::ffff:0:0/96", "IPv4-mapped Address", False),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", True),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat.", False),
    ("100::/64", "Discard-Only Address Block", False),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", False),
    ("2001::/23", "IETF Protocol Assignments", False),
    ("2001::/32", "TEREDO", None),
    ("2001:1::1/128", "Port Control Protocol Anycast", True),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", True),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", True),
    ("2001:2::/48", "Benchmarking", False),
    ("2001:3::/32", "AMT", True),
    ("2001:4:112::/48", "AS112-v6", True),
    ("2001:10::/28", "Deprecated (previously ORCHID)", None),
    ("2001:20::/28", "ORCHIDv2", True),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", True),
    ("2001:db8::/32", "Documentation", False),
    ("2002::/16", "6to4", None),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", True),
    ("3fff::/20", "Documentation", False),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", False),
    ("fc00::/7", "Unique-Local", False),
    ("fe80::/10", "Link-Local Unicast", False),
]
# Outside the special-purpose registries, and refused too.
OTHER_SPECIAL: list[tuple[str, str]] = [
    ("224.0.0.0/4", "IPv4 multicast"),
    ("ff00::/8", "IPv6 multicast"),
    ("fec0::/10", "site-local, deprecated by RFC 3879 (D10)"),
    ("::/96", "IPv4-compatible IPv6, deprecated by RFC 4291"),
    ("3ffe::/16", "6bone, returned to IANA (RFC 3701)"),
    ("4000::/2", "IPv6 outside 2000::/3: not allocated for unicast"),
    ("8000::/1", "IPv6 outside 2000::/3: not allocated for unicast"),
    ("fe00::/9", "IPv6 outside 2000::/3: not allocated for unicast"),
    ("::/3", "IPv6 outside 2000::/3: not allocated for unicast"),
]
# Prefixes whose IPv4 inside is what gets reached: judged by that IPv4, not refused whole.
CARRIES_IPV4 = {"::ffff:0:0/96", "64:ff9b::/96"}
PUBLIC_V4 = "93.184.216.34"

# Where the guard and `is_global` disagree, and why. Keys are the blocks an address
# must fall in for the disagreement to be explained.
DIFFERENCES: dict[str, str] = {
    # is_global True, refused by the guard:
    "224.0.0.0/4": "multicast: is_global ignores it (it only checks the private list)",
    "ff00::/8": "multicast, same",
    "fec0::/10": "site-local: deprecated, but still routed inside some networks",
    "::/96": "IPv4-compatible: deprecated; a stack may still deliver it to the IPv4 inside",
    "3ffe::/16": "6bone: returned to IANA, never to be a public host again",
    "192.88.99.0/24": "6to4 relay anycast: deprecated; a relay carries traffic elsewhere",
    "2002::/16": "6to4: the relay, not the guard, would pick the IPv4 host reached",
    "192.0.0.9/32": "PCP anycast: globally reachable per IANA, but never a data source",
    "192.0.0.10/32": "TURN anycast: a relay, never a data source",
    "192.31.196.0/24": "AS112 DNS sink",
    "192.52.193.0/24": "AMT relays",
    "192.175.48.0/24": "AS112 direct delegation",
    "2620:4f:8000::/48": "AS112 direct delegation (IPv6)",
    "2001::/23": "IETF protocol assignments (anycast, AMT, AS112, ORCHID, DETs)",
    "3fff::/20": "documentation (RFC 9637, newer than Python's copy of the registry)",
    "5f00::/16": "SRv6 SIDs (RFC 9602), newer than Python's copy",
    "100:0:0:1::/64": "dummy prefix (RFC 9780), newer than Python's copy",
    "::/3": "IPv6 outside 2000::/3 is not allocated for unicast; is_global only knows the "
    "special blocks (IPv4-mapped and NAT64 addresses in it are judged by their IPv4)",
    "4000::/2": "not allocated for unicast, same",
    "8000::/1": "not allocated for unicast, same",
    "192.0.0.0/24": "IETF protocol assignments: Python 3.11's copy of the registry lists "
    "only parts of it (the guard refuses the whole /24, PCP and TURN anycast included)",
    "64:ff9b:1::/48": "local-use NAT64 (RFC 8215): not in Python 3.11's copy",
    # refused whole or judged by the IPv4 inside, where is_global says otherwise:
    "64:ff9b::/96": "NAT64 is globally reachable, but the IPv4 inside is judged",
    "::ffff:0:0/96": "IPv4-mapped: judged by the IPv4 inside, whatever is_global says",
}


def samples(cidr: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    network = ipaddress.ip_network(cidr)
    first, last = int(network.network_address), int(network.broadcast_address)
    return [ipaddress.ip_address(n) for n in sorted({first, (first + last) // 2, last})]


def refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return netguard.check_address(address, local_mode=False, allowed_cidrs=()) is not None


ROWS = [(cidr, name) for cidr, name, _ in REGISTRY if cidr not in CARRIES_IPV4] + OTHER_SPECIAL


@pytest.mark.parametrize(("cidr", "name"), ROWS, ids=[f"{c} {n}" for c, n in ROWS])
def test_every_special_purpose_block_is_refused(cidr: str, name: str) -> None:
    for address in samples(cidr):
        assert refused(address), f"{address} ({name}) is let through"


@pytest.mark.parametrize("prefix", sorted(CARRIES_IPV4))
def test_prefixes_carrying_ipv4_are_judged_by_the_ipv4_inside(prefix: str) -> None:
    base = int(ipaddress.ip_network(prefix).network_address)
    for inside in ("10.0.0.1", "127.0.0.1", "169.254.169.254", "100.64.0.1", "192.0.0.9"):
        assert refused(ipaddress.IPv6Address(base | int(ipaddress.IPv4Address(inside))))
    assert not refused(ipaddress.IPv6Address(base | int(ipaddress.IPv4Address(PUBLIC_V4))))


def test_site_local_fec0_is_refused_as_deprecated() -> None:
    reason = netguard.refusal_reason(ipaddress.ip_address("fec0::1"))
    assert reason == "deprecated"


def test_public_addresses_pass() -> None:
    for text in (PUBLIC_V4, "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1"):
        assert not refused(ipaddress.ip_address(text)), text


def sweep() -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    for cidr, _, _ in REGISTRY:
        yield from samples(cidr)
    for cidr, _ in OTHER_SPECIAL:
        yield from samples(cidr)
    for octet in range(256):  # every IPv4 /8, three addresses each
        yield from samples(f"{octet}.0.0.0/8")
    for top in range(0, 0x10000, 0x100):  # every IPv6 /8
        yield from samples(f"{top:x}::/8")
    for top in range(0x2000, 0x4000, 0x40):  # 2000::/3 in /10 steps
        yield from samples(f"{top:x}::/10")


def explained(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(
        address.version == ipaddress.ip_network(cidr).version
        and address in ipaddress.ip_network(cidr)
        for cidr in DIFFERENCES
    )


def test_every_difference_from_is_global_is_explained() -> None:
    unexplained = [
        f"{address}: guard {'refuses' if refused(address) else 'allows'}, "
        f"is_global={address.is_global}"
        for address in sweep()
        if refused(address) == address.is_global and not explained(address)
    ]
    assert not unexplained, "\n".join(unexplained)


def test_the_guard_never_allows_what_is_global_refuses_outside_the_explained_prefixes() -> None:
    allowed_but_not_global = [
        a for a in sweep() if not a.is_global and not refused(a) and not explained(a)
    ]
    assert allowed_but_not_global == []
