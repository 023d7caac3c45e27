"""Fetching one FileSource to a file: inline ``data``, an http(s) ``url``, or a ``node`` file.

Downloads go to a hidden part file next to the target and are renamed into
place only once complete and, when the source names one, checked against its
``sha256:`` checksum, so a failed or tampered download never looks like an
input. Failures are SourceFailures whose public text says what went wrong but
never where: no URL, header or path.

A consumer's URL (``origin`` consumer or unspecified) is fetched through
:mod:`pods.netguard`: public addresses only (unless the operator allows the host
or network), checked after resolution and on every redirect, no proxy. An
operator's URL may name an internal host, and may go through the pod's proxy.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import grpc

from c2d.netpolicy import IPAddress, Reach
from c2d.pod.v1 import pod_pb2
from pods.client import PodClient
from pods.failures import SourceFailure, describe_rpc_error
from pods.netguard import DestinationRefused, GuardedHTTPHandler, GuardedHTTPSHandler
from pods.retry import Backoff, TransientError

CHUNK_BYTES = 1 << 20
URL_TIMEOUT_SECONDS = 60.0
URL_SCHEMES = ("http", "https")
# HTTP statuses worth another try: the server is busy or restarting.
RETRY_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
URL_BACKOFF = Backoff(budget=20.0, first=1.0, longest=5.0)


def fetch(
    source: pod_pb2.FileSource,
    target: Path,
    client: PodClient,
    label: str,
    own_addresses: frozenset[IPAddress] = frozenset(),
) -> None:
    """Writes ``source`` to ``target`` (checked, atomically); SourceFailure naming ``label`` only.

    ``own_addresses`` are the node's: a consumer's URL may never lead there.
    """
    part = target.with_name(f".{target.name}.part")
    try:
        write_source(source, part, client, label, own_addresses)
        verify_checksum(part, source.checksum, label)
        os.replace(part, target)
    except OSError as exc:
        raise SourceFailure(
            f"{label}: could not be written ({exc.strerror or 'I/O error'})", str(exc)
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def write_source(
    source: pod_pb2.FileSource,
    part: Path,
    client: PodClient,
    label: str,
    own_addresses: frozenset[IPAddress] = frozenset(),
) -> None:
    kind = source.type or ("data" if source.data else "url")
    if kind == "data":
        part.write_bytes(source.data)
    elif kind == "url":
        fetch_url(source, part, label, reach_of(source, own_addresses))
    elif kind == "node":
        fetch_node(source.url, part, client, label)
    else:
        raise SourceFailure(f"{label}: unsupported source type {kind[:20]!r}")


def verify_checksum(path: Path, checksum: str, label: str) -> None:
    """Checks a ``sha256:<hex>`` checksum; other algorithms are refused rather than silently skipped."""
    if not checksum:
        return
    algorithm, _, expected = checksum.partition(":")
    if algorithm.lower() != "sha256" or not expected:
        raise SourceFailure(f"{label}: unsupported checksum (only sha256:<hex> is)")
    if file_sha256(path) != expected.strip().lower():
        raise SourceFailure(f"{label}: checksum mismatch: the file is not the one the asset describes")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# url ------------------------------------------------------------------------------------


class SameOriginHeaders(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but sends the source's headers (credentials, often) to its own origin only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(newurl) != origin(req.full_url):
            new.headers = {}
            new.unredirected_hdrs = {}
        return new


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def is_operator_source(source: pod_pb2.FileSource) -> bool:
    """Only a source the node marks as the operator's may reach internal hosts; unspecified counts as a consumer's."""
    return source.origin == pod_pb2.SOURCE_ORIGIN_OPERATOR


def reach_of(source: pod_pb2.FileSource, own_addresses: frozenset[IPAddress]) -> Reach | None:
    """Where ``source`` may connect: None (anywhere) for an operator's source, else public addresses
    and the operator's exceptions, never the node's own addresses (those the node lists in the
    source, its interfaces', and ``own_addresses``, what the pod sees of the node). An exception
    list the pod cannot read allows nothing more."""
    if is_operator_source(source):
        return None
    deny = own_addresses | node_listed(source.deny_addresses)
    try:
        return Reach.from_lists(source.allow_hosts, source.allow_networks, deny)
    except ValueError:
        return Reach(deny=deny)


def node_listed(addresses: Iterable[str]) -> frozenset[IPAddress]:
    """The addresses the node says are its own; one that does not parse is skipped (it names nothing)."""
    found = set()
    for text in addresses:
        with contextlib.suppress(ValueError):
            found.add(ipaddress.ip_address(text))
    return frozenset(found)


def url_opener(reach: Reach | None = None) -> urllib.request.OpenerDirector:
    """http and https only, redirects included: no file:, ftp: or data: URLs, even via a redirect.

    With a ``reach`` (a consumer's URL) every connection, redirects included, is
    checked against it, and no proxy is used (see :mod:`pods.netguard`).
    """
    opener = urllib.request.OpenerDirector()
    transport: tuple[urllib.request.BaseHandler, ...]
    if reach is None:
        transport = (
            urllib.request.ProxyHandler(),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(),
        )
    else:
        transport = (GuardedHTTPHandler(reach), GuardedHTTPSHandler(reach))
    for handler in (
        *transport,
        SameOriginHeaders(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        opener.add_handler(handler)
    return opener


def fetch_url(source: pod_pb2.FileSource, part: Path, label: str, reach: Reach | None = None) -> None:
    scheme = source.url.partition(":")[0].lower()
    if scheme not in URL_SCHEMES:
        raise SourceFailure(
            f"{label}: only http and https URLs can be downloaded", f"{label}: scheme {scheme!r}"
        )
    try:
        URL_BACKOFF.run(lambda: download_once(source, part, label, reach))
    except TransientError as exc:
        raise SourceFailure(f"{label}: download failed ({exc})", f"{label}: {source.url}: {exc}") from None


def download_once(source: pod_pb2.FileSource, part: Path, label: str, reach: Reach | None = None) -> None:
    """One GET (or the source's method), streamed to ``part``; TransientError for what may pass."""
    request = urllib.request.Request(source.url, method=(source.method or "GET").upper())
    for name, value in source.headers.items():
        request.add_header(name, value)
    try:
        with (
            url_opener(reach).open(request, timeout=URL_TIMEOUT_SECONDS) as response,
            open(part, "wb") as sink,
        ):
            copy(response, sink)
    except DestinationRefused as refused:
        raise SourceFailure(f"{label}: {refused.public}", f"{label}: {refused.detail}") from None
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in RETRY_HTTP_STATUSES:
            raise TransientError(f"HTTP status {exc.code}") from None
        raise SourceFailure(f"{label}: download failed (HTTP status {exc.code})", f"{label}: {exc}") from None
    except TimeoutError:
        raise TransientError("timed out") from None
    except urllib.error.URLError as exc:
        if str(exc.reason).startswith("unknown url type"):
            raise SourceFailure(f"{label}: redirected to a URL that is neither http nor https") from None
        raise TransientError(connection_problem(exc)) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise TransientError(connection_problem(exc)) from None


def connection_problem(exc: BaseException) -> str:
    """A few words on a failed connection, without the host name the error text may hold."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return "host name not resolved"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, http.client.HTTPException | ConnectionError):
        return "connection dropped"
    return "connection failed"


def copy(source: BinaryIO, sink: BinaryIO) -> int:
    total = 0
    while chunk := source.read(CHUNK_BYTES):
        sink.write(chunk)
        total += len(chunk)
    return total


# node -----------------------------------------------------------------------------------


def fetch_node(token: str, part: Path, client: PodClient, label: str) -> None:
    """Streams a file the node serves, resuming from what is on disk after a transient error."""
    part.write_bytes(b"")
    size = [0]

    def attempt() -> None:
        with open(part, "r+b") as sink:
            sink.truncate(size[0])
            sink.seek(size[0])
            for reply in client.fetch(token, size[0]):
                if reply.offset != size[0]:
                    raise SourceFailure(f"{label}: the node sent data out of order")
                sink.write(reply.data)
                size[0] += len(reply.data)

    try:
        client.backoff.run(attempt, progress=lambda: size[0], on_retry=client.on_retry)
    except grpc.RpcError as exc:
        raise SourceFailure(f"{label}: {describe_rpc_error(exc)} while downloading it") from None
