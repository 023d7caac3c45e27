"""Building ``c2d-pod:<tag>``: the Dockerfile route, the offline route, and ``auto`` (the first, else the second).

Builds are serialised by a lock file in the cache folder, across processes (pytest-xdist workers,
an engine and a developer's shell), and an image that appeared while waiting is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from pods.image import content, dockerio, offline
from pods.image.errors import ImageBuildError, ImageMissing

Log = Callable[[str], None]

REPOSITORY = "c2d-pod"
# pods/Dockerfile's FROM; another image (a registry mirror's) through this variable.
PYTHON_IMAGE_VARIABLE = "C2D_POD_PYTHON_IMAGE"
DEFAULT_PYTHON_IMAGE = "python:3.11-slim"
ROUTES = ("auto", "offline", "dockerfile")
LABEL_TAG = "org.c2d.pod.tag"


def stderr_log(message: str) -> None:
    print(f"pod-image: {message}", file=sys.stderr, flush=True)


def image_name(tag: str | None = None) -> str:
    return f"{REPOSITORY}:{tag or content.expected_tag()}"


def how_to_build() -> str:
    return (
        "build it with: python -m pods.image build  (offline, as root: debootstrap + PyPI wheels; "
        "or --dockerfile where a registry is reachable)"
    )


@contextlib.contextmanager
def build_lock(log: Log) -> Iterator[None]:
    path = offline.cache_dir() / "build.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another build holds {path}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_dockerfile(client: Any, name: str, tag: str, log: Log) -> None:
    """``docker build -f pods/Dockerfile`` with a context of exactly the hashed sources."""
    python_image = os.environ.get(PYTHON_IMAGE_VARIABLE) or DEFAULT_PYTHON_IMAGE
    log(f"{name}: docker build -f pods/Dockerfile FROM {python_image} (pulled from a registry when missing)")
    dockerio.build(
        client,
        content.context_tar(),
        "pods/Dockerfile",
        name,
        log,
        labels={LABEL_TAG: tag, "org.c2d.pod.route": "dockerfile"},
        buildargs={"PYTHON_IMAGE": python_image, "C2D_POD_TAG": tag},
    )


def build_image(
    client: Any,
    tag: str | None = None,
    route: str = "auto",
    *,
    force: bool = False,
    refresh: bool = False,
    log: Log = stderr_log,
) -> str:
    """Builds ``c2d-pod:<tag>`` (the content tag by default) unless it is there; returns its name.

    ``route``: ``dockerfile`` (needs a registry), ``offline`` (needs root, debootstrap, the Debian
    archive and PyPI) or ``auto`` (the Dockerfile, then offline when that fails). ``force`` rebuilds
    an image that is present; ``refresh`` also ignores the cached rootfs, wheels and base image.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(ROUTES)}, not {route!r}")
    content_tag = content.expected_tag()
    name = image_name(tag or content_tag)
    with build_lock(log):
        if not (force or refresh) and dockerio.image_exists(client, name):
            log(f"{name}: present, up to date")
            return name
        started = time.monotonic()
        if route == "dockerfile":
            build_dockerfile(client, name, content_tag, log)
        elif route == "offline":
            offline.build(client, name, content_tag, log, refresh=refresh)
        else:
            try:
                build_dockerfile(client, name, content_tag, log)
            except ImageBuildError as exc:
                log(f"the Dockerfile route failed ({str(exc).splitlines()[0]}); building offline")
                offline.build(client, name, content_tag, log, refresh=refresh)
        log(f"{name}: built in {time.monotonic() - started:.1f} s")
    return name


def ensure(client: Any, build: bool = True, *, route: str = "offline", log: Log = stderr_log) -> str:
    """The pod image's name, ``c2d-pod:<content tag>``, building it (offline by default) when missing."""
    name = image_name()
    if dockerio.image_exists(client, name):
        return name
    if not build:
        raise ImageMissing(f"the pod image {name} is not in the Docker engine; {how_to_build()}")
    return build_image(client, route=route, log=log)
