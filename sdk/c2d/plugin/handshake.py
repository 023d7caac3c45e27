"""The plugin handshake, compatible with HashiCorp go-plugin.

The host starts a plugin with the magic cookie, the app protocol versions it
speaks and a private socket directory in the environment. The plugin answers
with one line on stdout, ``1|<app version>|unix|<socket path>|grpc``, and
nothing else ever goes to stdout. A Go engine built on stock go-plugin
with the same cookie speaks this handshake unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAGIC_COOKIE_KEY = "C2D_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "6f1c3c0e9d5a4b0f8e2d7a1c5b9e3f70c2d-engine"
PROTOCOL_VERSIONS_ENV = "PLUGIN_PROTOCOL_VERSIONS"
SOCKET_DIR_ENV = "PLUGIN_UNIX_SOCKET_DIR"
PARENT_PID_ENV = "C2D_PLUGIN_PARENT_PID"
CORE_PROTOCOL_VERSION = 1
HEALTH_SERVICE = "plugin"

# Engine API versions the code in this package implements.
SUPPORTED_API_VERSIONS: tuple[int, ...] = (1,)


class HandshakeError(Exception):
    """The plugin's handshake line is missing, malformed or incompatible."""


@dataclass(frozen=True)
class HandshakeLine:
    core_version: int
    app_version: int
    network: str
    address: str
    protocol: str

    def render(self) -> str:
        return f"{self.core_version}|{self.app_version}|{self.network}|{self.address}|{self.protocol}"

    @property
    def grpc_target(self) -> str:
        return f"unix:{self.address}" if self.network == "unix" else self.address


def parse_handshake(line: str, offered: Iterable[int]) -> HandshakeLine:
    """Parses and checks one handshake line against the versions the host offered."""
    offered = sorted(set(offered))
    parts = line.strip().split("|")
    if len(parts) != 5:
        raise HandshakeError(
            f"expected a handshake line 'CORE|APP|NETWORK|ADDRESS|PROTOCOL', got {line.strip()[:200]!r}"
        )
    core, app, network, address, protocol = parts
    if not core.isdigit() or int(core) != CORE_PROTOCOL_VERSION:
        raise HandshakeError(
            f"plugin speaks core protocol version {core!r}; the host speaks {CORE_PROTOCOL_VERSION}"
        )
    if not app.isdigit():
        raise HandshakeError(f"plugin's app protocol version {app!r} is not a number")
    if int(app) not in offered:
        raise HandshakeError(
            f"plugin chose engine protocol version {app}; the host speaks {_versions(offered)}"
        )
    if network not in ("unix", "tcp"):
        raise HandshakeError(f"plugin listens on unsupported network {network!r} (want unix or tcp)")
    if protocol != "grpc":
        raise HandshakeError(f"plugin speaks {protocol!r}; the host only speaks grpc")
    return HandshakeLine(int(core), int(app), network, address, protocol)


def negotiate(offered: Iterable[int], supported: Iterable[int]) -> int:
    """The highest version both sides speak, or HandshakeError naming both lists."""
    common = set(offered) & set(supported)
    if not common:
        raise HandshakeError(
            f"no common engine protocol version: the host speaks {_versions(offered)}, "
            f"the plugin speaks {_versions(supported)}"
        )
    return max(common)


def parse_versions(value: str) -> list[int]:
    return [int(v) for v in value.replace(" ", "").split(",") if v.isdigit()]


def _versions(versions: Iterable[int]) -> str:
    return ", ".join(str(v) for v in sorted(set(versions))) or "none"
