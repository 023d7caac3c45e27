"""The plugin handshake, compatible with HashiCorp go-plugin.

The host starts a plugin with the magic cookie, the app protocol versions it
speaks and a private socket directory in the environment. The plugin answers
with one line on stdout, ``1|<app version>|unix|<socket path>|grpc``, and
nothing else ever goes to stdout. A Go engine built on stock go-plugin
with the same cookie speaks this handshake unchanged: go-plugin adds a sixth
field (its server certificate for AutoMTLS, empty unless the client sent
``PLUGIN_CLIENT_CERT``, which this host never does) and, when the client set
``PLUGIN_MULTIPLEX_GRPC``, a seventh (whether its gRPC broker multiplexes).
Both are accepted.
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
# go-plugin ignores a sixth field this short ("unused extra data of older implementations"); longer
# is a base64 DER certificate: the plugin serves TLS, which this host does not speak.
SERVER_CERT_MIN_CHARS = 50
# strconv.ParseBool's spellings, as go-plugin writes and reads the seventh field.
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")

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
    server_cert: str = ""  # go-plugin's sixth field; empty without AutoMTLS
    multiplex: bool | None = None  # go-plugin's seventh field; None when absent

    def render(self) -> str:
        line = f"{self.core_version}|{self.app_version}|{self.network}|{self.address}|{self.protocol}"
        if self.server_cert or self.multiplex is not None:
            line += f"|{self.server_cert}"
        if self.multiplex is not None:
            line += f"|{'true' if self.multiplex else 'false'}"
        return line

    @property
    def grpc_target(self) -> str:
        return f"unix:{self.address}" if self.network == "unix" else self.address


def parse_handshake(line: str, offered: Iterable[int]) -> HandshakeLine:
    """Parses and checks one handshake line against the versions the host offered."""
    offered = sorted(set(offered))
    parts = line.strip().split("|")
    if not 5 <= len(parts) <= 7:
        raise HandshakeError(
            "expected a handshake line 'CORE|APP|NETWORK|ADDRESS|PROTOCOL[|SERVER_CERT[|MULTIPLEX]]', "
            f"got {line.strip()[:200]!r}"
        )
    core, app, network, address, protocol = parts[:5]
    server_cert = parts[5] if len(parts) > 5 else ""
    multiplex = _go_bool(parts[6]) if len(parts) > 6 else None
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
    if len(server_cert) > SERVER_CERT_MIN_CHARS:
        raise HandshakeError(
            "plugin serves TLS (it sent a server certificate in its handshake); the host speaks plaintext "
            "gRPC over its private socket and never asks for AutoMTLS: do not configure a TLSProvider"
        )
    return HandshakeLine(int(core), int(app), network, address, protocol, server_cert, multiplex)


def _go_bool(value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise HandshakeError(
        f"the handshake's seventh field (gRPC broker multiplexing) {value!r} is not a boolean"
    )


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
