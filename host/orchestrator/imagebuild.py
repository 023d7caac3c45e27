"""Algorithm images built from a Dockerfile: what a stage may send, and which engines take it.

A consumer may give a Dockerfile (and a few small files for its build context) instead of an
image. Both come from strangers and travel in every StartJob, so they are bounded here, before
anything is stored: the Dockerfile's size, the number, names and total size of the files. A file
name is a plain relative path (no ``..``, no absolute path, nothing but letters, digits and
``._-``), so the build context the engine writes holds exactly these files and nothing outside it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from c2d.compute.v1 import compute_pb2
from c2d.quoting import quoted
from host.errors import invalid

MAX_DOCKERFILE_BYTES = 64 * 1024
MAX_FILES = 32
MAX_FILES_BYTES = 1024 * 1024  # all additional files together
MAX_FILE_NAME = 255
DOCKERFILE = "Dockerfile"
_NAME_COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
FILE_NAME = re.compile(rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*")


def wants_build(container: compute_pb2.AlgorithmContainer) -> bool:
    """Whether the container asks for an image built from a Dockerfile."""
    return bool(container.dockerfile or container.additional_files)


def check_build(container: compute_pb2.AlgorithmContainer, where: str) -> None:
    """INVALID_ARGUMENT unless the container is a usable Dockerfile build (and names no image)."""
    if container.image or container.tag or container.checksum:
        raise invalid(f"{where}: the algorithm container has both an image and a dockerfile: give one")
    if not container.dockerfile.strip():
        raise invalid(f"{where}: the algorithm container has additional_files but no dockerfile")
    if not container.entrypoint.strip():
        raise invalid(f'{where}: the algorithm container has no entrypoint (e.g. "python $ALGO")')
    size = len(container.dockerfile.encode())
    if size > MAX_DOCKERFILE_BYTES:
        raise invalid(f"{where}: the dockerfile is {size} bytes; at most {MAX_DOCKERFILE_BYTES} are allowed")
    if "\x00" in container.dockerfile:
        raise invalid(f"{where}: the dockerfile contains a NUL byte")
    _check_files(container.additional_files.items(), where)


def _check_files(files: Iterable[tuple[str, bytes]], where: str) -> None:
    items = list(files)
    if len(items) > MAX_FILES:
        raise invalid(f"{where}: {len(items)} additional files; at most {MAX_FILES} are allowed")
    total = 0
    for name, data in items:
        if len(name) > MAX_FILE_NAME or not FILE_NAME.fullmatch(name) or ".." in name.split("/"):
            raise invalid(
                f"{where}: additional file name {quoted(name)} is not a plain relative path "
                "(letters, digits, _ . - and /, no '..', not absolute)"
            )
        if name == DOCKERFILE:
            raise invalid(f"{where}: an additional file may not be named {DOCKERFILE}: give it as dockerfile")
        total += len(data)
    if total > MAX_FILES_BYTES:
        raise invalid(
            f"{where}: the additional files hold {total} bytes; at most {MAX_FILES_BYTES} are allowed"
        )


def check_engine_builds(engine: str, builders: frozenset[str], where: str) -> None:
    """INVALID_ARGUMENT when the stage's engine cannot build images: it would fail the stage later."""
    if engine not in builders:
        raise invalid(
            f"{where}: the {quoted(engine)} engine does not build images from a Dockerfile: "
            "give a container image, or choose an environment of an engine that builds (e.g. docker)"
        )
