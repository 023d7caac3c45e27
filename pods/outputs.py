"""What pod-publishing uploads from ``$C2D_DATA/outputs``: one file as is, or everything zipped.

The outputs were written by the algorithm, which may have planted a symbolic
link to ``/etc/passwd`` or a FIFO hoping the pod reads it. So the folder is
walked through directory file descriptors without following any link (not
even in a parent folder), only regular files and folders count, and each file
is opened with ``O_NOFOLLOW`` and checked to be regular after opening.
"""

from __future__ import annotations

import os
import stat
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ARCHIVE_NAME = "outputs.zip"
CHUNK_BYTES = 1 << 20
ZIP64_FROM_BYTES = 1 << 31
EARLIEST_ZIP_TIME = time.mktime((1980, 1, 1, 0, 0, 0, 0, 0, -1))
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """A regular file or a folder under outputs, by its path relative to outputs."""

    relative: str
    is_dir: bool
    dir_fd: int  # of its parent, valid only while the walk is at it
    name: str


@dataclass(frozen=True)
class OutputFile:
    """What to upload for the outputs: a path, its upload name, and whether it is our zip."""

    path: Path
    name: str
    archive: bool


def walk(folder: Path) -> Iterator[Entry]:
    """Folders and regular files under ``folder``, parents first, sorted; links and the rest skipped."""
    try:
        top = os.open(folder, DIR_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        yield from _walk_fd(top, "")
    finally:
        os.close(top)


def _walk_fd(dir_fd: int, prefix: str) -> Iterator[Entry]:
    with os.scandir(dir_fd) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        relative = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield Entry(relative, True, dir_fd, entry.name)
            try:
                child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # replaced by a link or removed since the scan
            try:
                yield from _walk_fd(child, relative + "/")
            finally:
                os.close(child)
        elif entry.is_file(follow_symlinks=False):
            yield Entry(relative, False, dir_fd, entry.name)


def open_regular(dir_fd: int, name: str) -> int | None:
    """A read-only descriptor of the regular file ``name``, or None when it is anything else now."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd


def plan(outputs: Path, workdir: Path) -> OutputFile | None:
    """None for no outputs, the file itself when it is the only one, else a zip of them all in ``workdir``."""
    entries = [(e.relative, e.is_dir) for e in walk(outputs)]
    if not entries:
        return None
    if len(entries) == 1 and not entries[0][1]:
        return OutputFile(outputs / entries[0][0], entries[0][0], archive=False)
    workdir.mkdir(parents=True, exist_ok=True)
    archive = workdir / ARCHIVE_NAME
    zip_folder(outputs, archive)
    return OutputFile(archive, ARCHIVE_NAME, archive=True)


def zip_folder(folder: Path, archive: Path) -> int:
    """Zips ``folder``'s folders and regular files into ``archive``; how many entries it holds."""
    count = 0
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for entry in walk(folder):
            if entry.is_dir:
                info = zipfile.ZipInfo(entry.relative + "/")
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
                count += 1
            elif add_file(zf, entry):
                count += 1
    return count


def add_file(zf: zipfile.ZipFile, entry: Entry) -> bool:
    fd = open_regular(entry.dir_fd, entry.name)
    if fd is None:
        return False
    with os.fdopen(fd, "rb") as source:
        status = os.fstat(source.fileno())
        info = zipfile.ZipInfo(entry.relative, date_time=zip_time(status.st_mtime))
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=status.st_size >= ZIP64_FROM_BYTES) as sink:
            while chunk := source.read(CHUNK_BYTES):
                sink.write(chunk)
    return True


def zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """Zip stores local time from 1980 on."""
    year, month, day, hour, minute, second = time.localtime(max(mtime, EARLIEST_ZIP_TIME))[:6]
    return (year, month, day, hour, minute, second)
