"""Unpacking a zip input (a previous stage's outputs) into its input folder, safely.

An archive is data from someone else: it may hold entries named ``../x`` or
``/etc/x`` (zip-slip), symbolic links that later writes would follow, device
files, or a few kilobytes that inflate to terabytes. Every entry is checked
before anything is written, so a rejected archive leaves nothing behind, and
the bytes actually inflated are counted against a cap while writing, since an
entry's declared size may lie.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from pods.failures import SourceFailure

MAX_ENTRIES = 100_000
# The inflated total may be this many times the archive's size, and always at least the floor.
EXPANSION_RATIO = 10
EXPANSION_FLOOR_BYTES = 1 << 30
CHUNK_BYTES = 1 << 20
ALLOWED_TYPES = (0, stat.S_IFREG, stat.S_IFDIR)


def unpacked_limit(archive_bytes: int) -> int:
    return max(EXPANSION_RATIO * archive_bytes, EXPANSION_FLOOR_BYTES)


def unpack(archive: Path, folder: Path, limit: int, label: str) -> None:
    """Unpacks ``archive`` into ``folder``; SourceFailure (naming ``label`` only) when it is unsafe."""
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = checked_entries(zf, folder, limit, label)
            written = 0
            for info, relative in entries:
                written = extract(zf, info, folder / relative, written, limit, label)
    except zipfile.BadZipFile as exc:
        raise SourceFailure(f"{label}: not a valid zip archive", f"{label}: {exc}") from None


def checked_entries(
    zf: zipfile.ZipFile, folder: Path, limit: int, label: str
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every entry with its relative path, after checking them all."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise SourceFailure(f"{label}: the archive has more than {MAX_ENTRIES} entries")
    if sum(info.file_size for info in infos) > limit:
        raise SourceFailure(f"{label}: the archive unpacks to more than {limit} bytes")
    root = folder.resolve()
    entries = [(info, entry_path(info, root, label)) for info in infos]
    return [(info, path) for info, path in entries if path.parts]  # "./" names the folder itself


def entry_path(info: zipfile.ZipInfo, root: Path, label: str) -> PurePosixPath:
    """The entry's path inside the folder; SourceFailure for a link, a device, or a path leaving it."""
    unsafe = SourceFailure(
        f"{label}: the archive holds an unsafe entry (absolute path, '..', link or special file)",
        f"{label}: unsafe archive entry {info.filename!r}",
    )
    kind = stat.S_IFMT(info.external_attr >> 16)
    name = info.filename
    if kind not in ALLOWED_TYPES or "\x00" in name or "\\" in name:
        raise unsafe
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or _has_drive(name) or not (path.parts or info.is_dir()):
        raise unsafe
    if not (root / path).resolve().is_relative_to(root):
        raise unsafe
    return path


def _has_drive(name: str) -> bool:
    """``C:evil`` is relative on POSIX but not where the archive was made; refuse it."""
    return len(name) >= 2 and name[1] == ":"


def extract(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, limit: int, label: str
) -> int:
    """Writes one entry (files 0644, folders 0755, whatever the archive says); the running total."""
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        return written
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with zf.open(info) as source, os.fdopen(os.open(target, flags, 0o644), "wb") as sink:
        while chunk := source.read(CHUNK_BYTES):
            written += len(chunk)
            if written > limit:
                raise SourceFailure(f"{label}: the archive unpacks to more than {limit} bytes")
            sink.write(chunk)
    return written
