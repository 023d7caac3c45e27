"""File objects (Ocean style): parsing, validation, and turning them into what a pod downloads.

A files object is ``{"files": [file, ...]}``, a list of files, or a single file.
A file is one of::

    {"type": "url", "url": "https://...", "method": "GET", "headers": {...}}
    {"type": "data", "data": "<text>", "encoding": "base64"}   # encoding optional
    {"type": "local", "path": "relative/to/assets.data_root"} # operator assets only
    {"type": "ipfs", "hash": "<cid>"}
    {"type": "arweave", "transactionId": "<id>"}

with optional ``"name"`` (the file name inside the input folder) and
``"checksum"`` (``"sha256:<hex>"``). File locations can be private (an
operator's dataset), so no error message here ever repeats a URL, a path or a
header: only the file's position and what is wrong with it.

Consumers' files (parsed with ``allow_local=False``) are also checked against a
:class:`c2d.netpolicy.Reach`: a URL whose host is a literal non-public address
or ``localhost`` is refused at once; what a name resolves to is the pod's check
(:mod:`pods.netguard`), which :func:`to_file_source` arms with ``origin`` and
the operator's exceptions.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

from google.protobuf import json_format, struct_pb2

from c2d.netpolicy import Reach, explain
from c2d.pod.v1 import pod_pb2
from host.errors import invalid, not_found, precondition

FILE_TYPES = ("url", "data", "local", "ipfs", "arweave")
URL_SCHEMES = ("http", "https")
METHODS = ("GET", "POST")
# Inline data travels in the database and in one gRPC message: keep it small.
MAX_INLINE_BYTES = 1024 * 1024
MAX_FILES = 1000
MAX_NAME = 255

_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_CID = re.compile(r"[A-Za-z0-9]{10,128}")
_ARWEAVE_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

NO_DATA_ROOT = "this node has no assets.data_root for local files"


@dataclass(frozen=True)
class FileRef:
    """One validated file. ``location`` is private: it is kept out of ``repr`` so it never lands in a log.

    ``location`` is the URL (url), the path relative to the data root (local),
    the CID (ipfs) or the transaction id (arweave); empty for data.
    """

    type: str
    location: str = field(default="", repr=False)
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    data: bytes = field(default=b"", repr=False)
    name: str = ""
    checksum: str = ""


class _Naming(TypedDict):
    """What every file type may carry besides its location: FileRef's ``name`` and ``checksum``."""

    name: str
    checksum: str


def parse_files(
    obj: Any, *, allow_local: bool, label: str = "files", reach: Reach | None = None
) -> list[FileRef]:
    """Validates a files object completely; ``label`` prefixes messages (e.g. "input 0").

    ``allow_local`` is for operators' assets alone; without it the files are a
    consumer's, and their URLs must stay within ``reach`` (public addresses and
    the operator's ``[security]`` exceptions; the strict default allows none).
    Raises INVALID_ARGUMENT naming the file's position and the problem, never its location.
    """
    items = _file_list(obj, label)
    refs = [_parse_file(item, allow_local, f"{label}: file {i}") for i, item in enumerate(items)]
    if not allow_local:
        for position, ref in enumerate(refs):
            check_reach(ref, reach or Reach(), f"{label}: file {position}")
    return refs


def check_reach(ref: FileRef, reach: Reach, where: str) -> None:
    """INVALID_ARGUMENT when a consumer's URL names a forbidden host literally; the message names the rule."""
    if ref.type != "url":
        return
    host = urlsplit(ref.location).hostname or ""
    rule = reach.literal_refusal(host)
    if rule is not None:
        raise invalid(f"{where} has a url that is refused: {explain(rule)}")


def _file_list(obj: Any, label: str) -> list[Any]:
    """Accepts the three shapes of a files object (and a protobuf Struct of any of them)."""
    if isinstance(obj, struct_pb2.Struct):
        obj = json_format.MessageToDict(obj)
    if isinstance(obj, Mapping) and "type" not in obj and "files" in obj:
        obj = obj["files"]
    if isinstance(obj, Mapping) and obj:
        obj = [obj]
    if isinstance(obj, Mapping) or obj is None:  # {} or nothing at all
        raise invalid(f"{label}: no files")
    if not isinstance(obj, list | tuple):
        raise invalid(f'{label}: expected a file, a list of files or {{"files": [...]}}')
    if not obj:
        raise invalid(f"{label}: no files")
    if len(obj) > MAX_FILES:
        raise invalid(f"{label}: more than {MAX_FILES} files")
    return list(obj)


def _parse_file(item: Any, allow_local: bool, where: str) -> FileRef:
    if not isinstance(item, Mapping):
        raise invalid(f"{where} is not an object")
    kind = item.get("type")
    if kind not in FILE_TYPES:
        raise invalid(f"{where} has type {_short(kind)}; expected one of {', '.join(FILE_TYPES)}")
    common = _Naming(name=_name(item.get("name"), where), checksum=_checksum(item.get("checksum"), where))
    if kind == "url":
        return _parse_url(item, where, common)
    if kind == "data":
        return FileRef(type="data", data=_inline_data(item, where), **common)
    if kind == "local":
        if not allow_local:
            raise invalid(f"{where}: local files are only allowed in assets the node operator registers")
        return FileRef(type="local", location=_relative_path(item.get("path"), where), **common)
    if kind == "ipfs":
        return FileRef(type="ipfs", location=_matching(item.get("hash"), _CID, where, "IPFS hash"), **common)
    txid = _matching(item.get("transactionId"), _ARWEAVE_ID, where, "Arweave transactionId")
    return FileRef(type="arweave", location=txid, **common)


def _short(value: Any) -> str:
    """A type name or a short enum-like value, safe to repeat in a message."""
    if isinstance(value, str) and len(value) <= 32 and value.isprintable():
        return repr(value)
    return "missing" if value is None else f"of an unexpected form ({type(value).__name__})"


def _name(value: Any, where: str) -> str:
    """A file name inside the input folder: one path component, printable."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise invalid(f"{where} has a name that is not a string of at most {MAX_NAME} characters")
    if "/" in value or "\\" in value or value in (".", "..") or _CONTROL.search(value):
        raise invalid(f"{where} has a name that is not a plain file name (no slashes or control characters)")
    return value


def _checksum(value: Any, where: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _CHECKSUM.fullmatch(value.lower()):
        raise invalid(f"{where} has a checksum that is not sha256:<64 hex digits>")
    return value.lower()


def _parse_url(item: Mapping[str, Any], where: str, common: _Naming) -> FileRef:
    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise invalid(f"{where} has no url")
    if _CONTROL.search(url) or " " in url:
        raise invalid(f"{where} has a url with spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise invalid(f"{where} has a url that cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise invalid(f"{where} has an unsupported URL scheme {_short(scheme)}; expected http or https")
    if not host:
        raise invalid(f"{where} has a url without a host")
    method = item.get("method") or "GET"
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise invalid(f"{where} has method {_short(method)}; expected one of {', '.join(METHODS)}")
    headers = _headers(item.get("headers"), where)
    return FileRef(type="url", location=url, method=method.upper(), headers=headers, **common)


def _headers(value: Any, where: str) -> dict[str, str]:
    """HTTP headers: token names, string values without line breaks (no header injection)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise invalid(f"{where} has headers that are not an object of strings")
    headers = {}
    for position, (name, content) in enumerate(value.items()):
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise invalid(f"{where}: header {position} has an invalid name")
        if not isinstance(content, str) or _CONTROL.search(content.replace("\t", " ")):
            raise invalid(f"{where}: header {position} has a value that is not a single-line string")
        headers[name] = content
    return headers


def _inline_data(item: Mapping[str, Any], where: str) -> bytes:
    text = item.get("data")
    if not isinstance(text, str):
        raise invalid(f"{where} has no data string")
    encoding = item.get("encoding") or "utf-8"
    if encoding == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"{where} has data that is not valid base64") from None
    elif encoding in ("utf-8", "utf8", "text"):
        data = text.encode()
    else:
        raise invalid(f"{where} has encoding {_short(encoding)}; expected base64 or none")
    if len(data) > MAX_INLINE_BYTES:
        raise invalid(f"{where} has more than {MAX_INLINE_BYTES} bytes of inline data; use a url")
    return data


def _relative_path(value: Any, where: str) -> str:
    """A lexical check of a local path; :func:`resolve_local` does the real one (symlinks)."""
    if not isinstance(value, str) or not value:
        raise invalid(f"{where} has no path")
    if "\x00" in value or value.startswith(("/", "\\")):
        raise invalid(f"{where} has a path that is not relative to the data root")
    if ".." in re.split(r"[/\\]", value):
        raise invalid(f"{where} has a path that leaves the data root")
    return value


def _matching(value: Any, pattern: re.Pattern[str], where: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise invalid(f"{where} has no valid {what}")
    return value


def resolve_local(data_root: str | os.PathLike[str] | None, relative_path: str) -> Path:
    """The real path of a local file, which must be a regular file inside the data root.

    Symlinks are resolved first, so a link pointing out of the data root is
    refused. Messages never name the path or the root.
    """
    root = _data_root(data_root)
    _relative_path(relative_path, "local file")
    try:
        real = (root / relative_path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise not_found("local file does not exist or is not a regular file") from None
    if not real.is_relative_to(root):
        raise invalid("local file has a path that leaves the data root")
    if not real.is_file():
        raise not_found("local file does not exist or is not a regular file")
    return real


def _data_root(data_root: str | os.PathLike[str] | None) -> Path:
    if not data_root:
        raise precondition(NO_DATA_ROOT)
    try:
        root = Path(data_root).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise precondition("this node's assets.data_root does not exist") from None
    if not root.is_dir():
        raise precondition("this node's assets.data_root is not a directory")
    return root


LocalToken = str | Callable[[FileRef], str] | None


def to_file_source(
    ref: FileRef,
    settings: Mapping[str, Any],
    token_for_local: LocalToken = None,
    *,
    consumer_reach: Reach | None = None,
) -> pod_pb2.FileSource:
    """What a pod downloads for ``ref``; ``settings`` is the config's ``assets`` section.

    ipfs and arweave become gateway URLs. A local file becomes a "node" source
    whose url is ``token_for_local`` (a token, or a function making one for the
    ref), which the pod hands back to FetchInput: the path never leaves the node.
    ``consumer_reach`` marks a consumer's file: the pod then fetches it from
    public addresses only, bar the operator's exceptions it carries; without
    it the file is the operator's, which may name internal hosts.
    """
    source = pod_pb2.FileSource(name=ref.name, checksum=ref.checksum)
    # ipfs and arweave go to the operator's gateway: the operator chose that destination.
    if consumer_reach is None or ref.type != "url":
        source.origin = pod_pb2.SOURCE_ORIGIN_OPERATOR
    else:
        source.origin = pod_pb2.SOURCE_ORIGIN_CONSUMER
        source.allow_hosts.extend(sorted(consumer_reach.allow_hosts))
        source.allow_networks.extend(str(net) for net in consumer_reach.allow_networks)
        source.deny_addresses.extend(sorted(str(address) for address in consumer_reach.deny))
    if ref.type == "url":
        source.type, source.url, source.method = "url", ref.location, ref.method
        source.headers.update(ref.headers)
    elif ref.type == "data":
        source.type, source.data, source.size = "data", ref.data, len(ref.data)
    elif ref.type == "ipfs":
        source.type, source.url = "url", f"{_gateway(settings, 'ipfs_gateway')}/ipfs/{ref.location}"
    elif ref.type == "arweave":
        source.type, source.url = "url", f"{_gateway(settings, 'arweave_gateway')}/{ref.location}"
    elif ref.type == "local":
        real = resolve_local(settings.get("data_root"), ref.location)
        source.type, source.url, source.size = "node", _local_token(ref, token_for_local), real.stat().st_size
    else:
        raise ValueError(f"unknown file type {ref.type!r}")
    if source.type == "url" and not source.method:
        source.method = "GET"
    return source


def _gateway(settings: Mapping[str, Any], key: str) -> str:
    gateway = str(settings.get(key) or "").rstrip("/")
    if not gateway:
        raise precondition(f"this node has no assets.{key}")
    return gateway


def _local_token(ref: FileRef, token_for_local: LocalToken) -> str:
    token = token_for_local(ref) if callable(token_for_local) else token_for_local
    if not token:
        raise ValueError("a local file needs a token for FetchInput")
    return token
