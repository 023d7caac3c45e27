"""The ``localDirectory`` (and ``local``) input source of a compute node, with its allow list.

As v1.9's ``pkg/storage/local``: a node serves only paths matched by an entry of
``Compute.AllowListedLocalPaths`` (doublestar globs: ``/data/**`` matches everything under
``/data``; a plain ``/data`` only itself), each ``:rw`` or read-only (``:ro``, the default). A path
outside the list, or ReadWrite on a read-only entry, fails the bid with "volume <p> is not
allowlisted" / "is not granted write access". A missing path is created only for ReadWrite with
``CreateAs`` ``dir`` or ``file`` (default ``noCreate``). Unlike v1.9, which matches the raw string,
the double matches the normalised path, so ``/data/../etc`` is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .spec import InputSource

ALLOW_HINT = "Verify Compute.AllowListedLocalPaths configuration property"
CREATE_STRATEGIES = {"": "noCreate", "nocreate": "noCreate", "dir": "dir", "file": "file"}


@dataclass(frozen=True)
class AllowedPath:
    pattern: str
    read_write: bool = False

    @staticmethod
    def parse(entry: str) -> AllowedPath:
        """``/data/**:rw``, ``/data/**:ro`` or ``/data/**`` (read-only)."""
        path, _, mode = entry.rpartition(":") if entry.endswith((":rw", ":ro")) else (entry, "", "ro")
        return AllowedPath(path, mode == "rw")

    def matches(self, path: str) -> bool:
        return _glob(self.pattern).fullmatch(path) is not None


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and (i + 3 == len(pattern) or pattern[i + 3] == "/"):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


class VolumeError(Exception):
    """A local volume the node refuses; ``hint`` and ``code`` as the bacerror carries them."""

    def __init__(self, message: str, hint: str = "", code: str = "") -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


@dataclass(frozen=True)
class Volume:
    source: str
    target: str
    read_only: bool
    create_as: str


def check(source: InputSource, allowed: tuple[AllowedPath, ...]) -> Volume:
    """``DecodeSpec`` + ``GetVolumeSize``: the bind mount, or VolumeError as the bidder would fail."""
    spec = source.source
    if spec.type.lower() not in ("localdirectory", "local"):
        raise VolumeError(f"no storage provider for {spec.type}")
    raw_path = spec.param("SourcePath")
    if not isinstance(raw_path, str) or not raw_path.startswith("/"):
        raise VolumeError(f"invalid local SourcePath {raw_path!r}: an absolute path is required")
    read_write = spec.param("ReadWrite", False)
    read_write = read_write == "true" if isinstance(read_write, str) else bool(read_write)
    create_raw = spec.param("CreateAs", "")
    create_as = CREATE_STRATEGIES.get(str(create_raw).lower())
    if create_as is None:
        raise VolumeError(
            f"invalid CreateAs value {create_raw}", "CreateAs must be one of [dir, file, noCreate]"
        )
    path = os.path.normpath(raw_path)
    traversal = ".." in raw_path.split("/")
    insufficient = False
    for entry in allowed:
        if not traversal and entry.matches(path):
            if read_write and not entry.read_write:
                insufficient = True
                continue
            break
    else:
        what = "is not granted write access" if insufficient else "is not allowlisted"
        raise VolumeError(f"volume {raw_path} {what}", ALLOW_HINT, "ConfigurationError")
    if not os.path.exists(path) and not (read_write and create_as != "noCreate"):
        raise VolumeError(
            f"volume {raw_path} does not exist and creation is not allowed",
            "If you want the job to create the volume, set ReadWrite to true and CreateAs to one of [dir, file]",
        )
    return Volume(path, source.target, not read_write, create_as)


def prepare(volume: Volume) -> None:
    """``createVolumeIfNotExists`` at run time (the bid already checked the rules)."""
    target = Path(volume.source)
    if target.exists():
        return
    if volume.create_as == "dir":
        target.mkdir(mode=0o700, parents=True)
    else:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.touch(mode=0o700, exist_ok=False)
