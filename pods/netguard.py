"""HTTP(S) connections for consumers' URLs that reach public addresses only, with no DNS-rebinding window.

urllib resolves a host name inside ``socket.create_connection``, too late and
too deep to check, and a name may resolve to a public address for a check and to
``127.0.0.1`` a moment later. So :class:`GuardedHTTPConnection` resolves the
name itself, refuses the connection when any address it resolves to breaks a
rule of :class:`c2d.netpolicy.Reach`, and connects to the addresses it checked.
The request keeps the URL's name in its Host header, and HTTPS keeps it for SNI
and certificate checking. Every redirect hop opens a new connection, so every
hop is checked the same way.

No proxy is used for consumer URLs, not even one from the pod's environment: a
proxy would make the connection to its own address and reach the forbidden one
on our behalf, past every check.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import urllib.request
from typing import Any

from c2d.netpolicy import IPAddress, Reach, explain
from pods.failures import SourceFailure


class DestinationRefused(SourceFailure):
    """A consumer URL (or a redirect) leads to an address the node does not fetch from.

    Not an OSError on purpose: urllib wraps those in URLError and the pod
    would retry; a refusal is final.
    """


def checked_addresses(host: str, port: int, reach: Reach) -> list[tuple[Any, ...]]:
    """Every (family, sockaddr) ``host`` resolves to; DestinationRefused when any one breaks a rule.

    One bad address refuses the whole name: a name that resolves to both a
    public and a private address is exactly the shape of a rebinding attack.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found = []
    for family, _, _, _, sockaddr in infos:
        # A TCP address of either family: sockaddr[0] is its host string (with any %scope).
        address: IPAddress = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        rule = reach.address_refusal(host, address)
        if rule is not None:
            raise DestinationRefused(f"refused: {explain(rule)}", f"{host} -> {address}: {rule}")
        found.append((family, sockaddr))
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "no addresses")
    return found


def connect_checked(host: str, port: int, reach: Reach, timeout: Any) -> socket.socket:
    """A TCP connection to one of the checked addresses of ``host`` (tried in resolver order)."""
    last: OSError | None = None
    for family, sockaddr in checked_addresses(host, port, reach):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if isinstance(timeout, int | float):  # else urllib's "no timeout given" marker
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    assert last is not None
    raise last


class GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, reach: Reach, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reach = reach

    def connect(self) -> None:
        self.sock = connect_checked(self.host, self.port, self.reach, self.timeout)


class GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, reach: Reach, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(*args, context=context, **kwargs)
        self.reach = reach
        self.tls = context

    def connect(self) -> None:
        sock = connect_checked(self.host, self.port, self.reach, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, reach: Reach) -> None:
        super().__init__()
        self.reach = reach

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(GuardedHTTPConnection, reach=self.reach), req)


class GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, reach: Reach) -> None:
        super().__init__()
        self.reach = reach
        self.tls = ssl.create_default_context()  # certificates and host names checked

    def https_open(self, req: urllib.request.Request) -> Any:
        connection = functools.partial(GuardedHTTPSConnection, reach=self.reach, context=self.tls)
        return self.do_open(connection, req)


def node_addresses(node_http_api: str) -> set[IPAddress]:
    """The addresses of the node's PodService host and of this machine's own name: never a consumer's target."""
    host = node_http_api.rpartition(":")[0].strip("[]") or node_http_api
    found: set[IPAddress] = set()
    for name in (host, socket.gethostname()):
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue
        for *_, sockaddr in infos:
            found.add(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    return found
