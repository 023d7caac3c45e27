"""What goes into the pod image: the pods' and the SDK's source files, and the content hash of them.

The image's tag is a hash of exactly the files it is built from (``pods/``, the
SDK's ``c2d/`` and the dependency lock ``pods/image/requirements.txt``, which
lies under ``pods/``), so any change to the pods makes a new tag, and an image
with the expected tag is known to be up to date. The same listing feeds the
build context, so what is hashed is what is copied.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

# Bump when the recipe changes in a way the hashed files do not show.
RECIPE = "c2d-pod/1"
TAG_LENGTH = 12
# Folders and files never copied nor hashed.
SKIP_DIRS = frozenset({"__pycache__"})
SKIP_SUFFIXES = (".pyc", ".pyo")
# Every file in a build context gets this mtime, so that contexts (and Docker's COPY cache) depend
# on content only.
CONTEXT_MTIME = 1_700_000_000

PODS_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS = PODS_DIR / "image" / "requirements.txt"
REQUIREMENTS_IN = PODS_DIR / "image" / "requirements.in"
DOCKERFILE = PODS_DIR / "Dockerfile"


class ContentError(RuntimeError):
    """The sources the image is built from cannot be found."""


def sdk_dir() -> Path:
    """The ``c2d`` package's folder (``sdk/c2d`` in a checkout), found without importing it."""
    spec = importlib.util.find_spec("c2d")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ContentError(
            "the c2d package (the c2d-sdk distribution, sdk/ in the checkout) is not installed"
        )
    return Path(locations[0]).resolve()


def trees() -> list[tuple[str, Path]]:
    """(folder in the build context, folder on disk): laid out as in the checkout."""
    return [("pods", PODS_DIR), ("sdk/c2d", sdk_dir())]


def _wanted(path: Path, top: Path) -> bool:
    parts = path.relative_to(top).parts
    if any(part in SKIP_DIRS or part.startswith(".") for part in parts):
        return False
    return path.is_file() and not path.is_symlink() and not path.name.endswith(SKIP_SUFFIXES)


def source_files() -> list[tuple[str, Path]]:
    """(path in the build context, file on disk) of every file the image is built from, sorted."""
    files = []
    for prefix, top in trees():
        if not top.is_dir():
            raise ContentError(f"{top} is not a folder")
        files += [(f"{prefix}/{p.relative_to(top).as_posix()}", p) for p in top.rglob("*") if _wanted(p, top)]
    if not REQUIREMENTS.is_file():
        raise ContentError(f"{REQUIREMENTS} is missing (make it with: python -m pods.image lock)")
    return sorted(files)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_hash(files: Iterable[tuple[str, Path]] | None = None) -> str:
    """The hex sha256 of the recipe and every (context path, content) pair."""
    digest = hashlib.sha256(f"{RECIPE}\n".encode())
    for name, path in source_files() if files is None else files:
        digest.update(f"{name}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def expected_tag() -> str:
    return content_hash()[:TAG_LENGTH]


def requirements() -> bytes:
    return REQUIREMENTS.read_bytes()


def context_tar(extra: dict[str, bytes] | None = None) -> io.BytesIO:
    """A Docker build context (an uncompressed tar in memory) of the sources plus ``extra`` files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        entries = [(name, path.read_bytes(), path.stat().st_mode & 0o111) for name, path in source_files()]
        entries += [(name, data, 0) for name, data in (extra or {}).items()]
        for name, data, executable in entries:
            parts = name.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in dirs:
                    dirs.add(folder)
                    tar.addfile(_info(folder, tarfile.DIRTYPE, 0o755))
            info = _info(name, tarfile.REGTYPE, 0o755 if executable else 0o644)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = CONTEXT_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
