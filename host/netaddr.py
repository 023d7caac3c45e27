"""The node's addresses: where the PodService listens (an address pods can reach, and no wider
than that), and every address of this machine's interfaces (which consumer URLs may not reach)."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

import psutil

from c2d.netpolicy import IPAddress

SIOCGIFADDR = 0x8915
DOCKER_BRIDGE = "docker0"


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of a network interface, or None when it does not exist."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def resolve_listen(listen: str) -> str:
    """``auto:PORT`` becomes the Docker bridge gateway (containers reach it) or 127.0.0.1."""
    host, _, port = listen.rpartition(":")
    if host != "auto":
        return listen
    return f"{interface_ipv4(DOCKER_BRIDGE) or '127.0.0.1'}:{port}"


def own_addresses() -> frozenset[IPAddress]:
    """Every IPv4 and IPv6 address of this machine's interfaces (zone ids dropped).

    A consumer's URL at one of them would reach the node's own listeners from the
    inside: past a firewall or security group that guards them from the outside.
    """
    found: set[IPAddress] = set()
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                found.add(ipaddress.ip_address(entry.address.split("%", 1)[0]))
    return frozenset(found)
