"""Which network destinations a consumer's URL may reach: public addresses only, bar the operator's exceptions.

A node fetches consumers' URLs from inside its own network, so a URL naming
``127.0.0.1``, a Docker bridge gateway, a cloud metadata address or any
private host would let a stranger read what only the node can reach (server-side
request forgery). The node checks literal hosts when a request arrives; the pods
check every address a host name resolves to, and every redirect hop, right
before they connect to the address they checked. Both use this module, so the
two checks cannot drift apart.

:func:`refusal` names the rule an address breaks (``None`` for a public
address). The stdlib's ``is_global`` alone is not enough: Python 3.11 counts
``::127.0.0.1``, ``64:ff9b::7f00:1`` (NAT64) and ``2002:7f00:1::`` (6to4) as
global, so IPv6 forms that embed an IPv4 address are unwrapped and the IPv4
address is judged, and every special range is listed explicitly.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PUBLIC_ONLY = "consumer URLs may only reach public addresses"

_V4_RULES: tuple[tuple[str, str], ...] = (
    ("255.255.255.255/32", "broadcast"),
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared (CGNAT, RFC 6598)"),
    ("169.254.0.0/16", "link-local (cloud metadata included)"),
    ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "reserved for documentation"),
    ("198.51.100.0/24", "reserved for documentation"),
    ("203.0.113.0/24", "reserved for documentation"),
    ("198.18.0.0/15", "reserved for benchmarking"),
    ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6_RULES: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (reserved)"),
    ("ff00::/8", "multicast"),
    ("100::/64", "reserved (discard-only)"),
    ("2001:db8::/32", "reserved for documentation"),
    ("3fff::/20", "reserved for documentation"),
    ("64:ff9b:1::/48", "reserved (local-use NAT64)"),
    ("2001::/23", "reserved (IETF protocol assignments)"),
    ("5f00::/16", "reserved (SRv6 SIDs)"),
)
_RULES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), rule) for net, rule in _V4_RULES + _V6_RULES
)
# IPv6 forms that carry an IPv4 address in their last 32 bits: IPv4-mapped, IPv4-compatible
# (deprecated; :: and ::1 are matched above first), IPv4-translated, NAT64 well-known prefix.
_EMBEDDING = tuple(
    ipaddress.IPv6Network(net) for net in ("::ffff:0:0/96", "::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
_6TO4 = ipaddress.IPv6Network("2002::/16")
_LOCALHOST_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (IPv6 zone ids and brackets allowed), or None when it is a name."""
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    plain = ipaddress.IPv6Address(int(address))  # without a zone id
    if any(plain in net for net in _EMBEDDING) and int(plain) > 1:
        return ipaddress.IPv4Address(int(plain) & 0xFFFFFFFF)
    if plain in _6TO4:
        return ipaddress.IPv4Address((int(plain) >> 80) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress | str) -> str | None:
    """The kind of non-public address ``address`` is ("loopback", "private (RFC 1918)"...), or None."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and (rule := refusal(inner)) is not None:
            return f"{rule} (IPv4 inside IPv6)"
        ip = ipaddress.IPv6Address(int(ip))
    for network, rule in _RULES:
        if ip.version == network.version and ip in network:
            return rule
    if not ip.is_global:
        return "reserved (not globally reachable)"
    return None


def numeric_host(host: str) -> IPAddress | None:
    """An address written as a host: dotted, IPv6, and the legacy forms resolvers accept (``127.1``, ``2130706433``)."""
    address = parse_address(host)
    if address is not None:
        return address
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_localhost_name(host: str) -> bool:
    """``localhost`` and names under ``.localhost`` (RFC 6761: they always mean this machine)."""
    name = host.rstrip(".").lower()
    return name in _LOCALHOST_NAMES or name.endswith(".localhost")


def normalize_host(host: str) -> str:
    """A host as allow lists compare it: lower case, no trailing dot, addresses in canonical form."""
    address = parse_address(host)
    return str(address) if address is not None else host.rstrip(".").lower()


@dataclass(frozen=True)
class Reach:
    """Where consumer URLs may go: public addresses, plus the operator's ``allow_hosts``/``allow_networks``.

    ``deny`` holds the node's own addresses: refused even when public, since a
    URL naming the node would reach its own listeners from the inside.
    """

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    deny: frozenset[IPAddress] = field(default_factory=frozenset)

    @classmethod
    def from_lists(
        cls, hosts: Iterable[str] = (), networks: Iterable[str] = (), deny: Iterable[IPAddress] = ()
    ) -> Reach:
        """ValueError naming the entry that is not a host name or a network (CIDR)."""
        parsed = []
        for entry in networks:
            try:
                parsed.append(ipaddress.ip_network(str(entry), strict=False))
            except ValueError:
                raise ValueError(f"{str(entry)[:64]!r} is not a network (CIDR, e.g. 10.1.0.0/16)") from None
        names = set()
        for host in hosts:
            if not isinstance(host, str) or not host or any(c in host for c in "/ @"):
                raise ValueError(f"{str(host)[:64]!r} is not a host name or address")
            names.add(normalize_host(host))
        return cls(frozenset(names), tuple(parsed), frozenset(deny))

    def host_allowed(self, host: str) -> bool:
        """The operator named this host: any address it resolves to may be reached."""
        return normalize_host(host) in self.allow_hosts

    def literal_refusal(self, host: str) -> str | None:
        """The rule a URL's host breaks before any resolution (a literal address, ``localhost``), or None."""
        if self.host_allowed(host):
            return None
        if is_localhost_name(host):
            return "loopback (localhost)"
        address = numeric_host(host)
        return None if address is None else self.address_refusal(host, address)

    def address_refusal(self, host: str, address: IPAddress) -> str | None:
        """The rule connecting to ``address`` (resolved from ``host``) would break, or None."""
        if self.host_allowed(host):
            return None
        plain = ipaddress.IPv6Address(int(address)) if address.version == 6 else address  # no zone id
        inner = embedded_ipv4(plain) if isinstance(plain, ipaddress.IPv6Address) else None
        if plain in self.deny or (inner is not None and inner in self.deny):
            return "the node's own"
        if any(plain.version == net.version and plain in net for net in self.allow_networks):
            return None
        return refusal(plain)


def explain(rule: str) -> str:
    """The public text of a refusal: the rule, never the host or the address."""
    return f"the destination address is {rule}; {PUBLIC_ONLY} (or hosts and networks the operator allows)"
