"""Where the PodService listens: an address pods can reach, and no wider than that."""

from __future__ import annotations

import fcntl
import socket
import struct

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
