"""The pod image, ``c2d-pod:<tag>``: python3 (3.11), the pods' dependencies, and the pods and SDK sources.

The Docker engine runs ``python3 -m pods.configuration`` and ``python3 -m
pods.publishing`` in it, as the user ``c2d`` (uid 1000). The tag is a content
hash of ``pods/``, the SDK's ``c2d/`` and the dependency lock, so an image
with the expected tag is up to date, and any change to the pods builds anew.

Two routes give the same image: ``pods/Dockerfile`` (``FROM python:3.11-slim``,
for machines that reach a registry) and an offline recipe (debootstrap of
Debian bookworm, wheels from PyPI, ``docker import``); see :mod:`pods.image.offline`.

API for the engine and the tests (Docker through a ``docker.DockerClient``)::

    expected_tag() -> str          # the content tag
    image_name() -> str            # "c2d-pod:<tag>"
    ensure(client, build=True) -> str   # the image's name; built (offline) when missing

and the command line: ``python -m pods.image {tag,name,check,build,lock,prune}``.
"""

from __future__ import annotations

from pods.image.builder import REPOSITORY, build_image, ensure, image_name
from pods.image.content import expected_tag
from pods.image.errors import ImageBuildError, ImageError, ImageMissing

build = build_image

__all__ = [
    "REPOSITORY",
    "ImageBuildError",
    "ImageError",
    "ImageMissing",
    "build",
    "build_image",
    "ensure",
    "expected_tag",
    "image_name",
]
