"""The few Docker API calls the image build needs, through the ``docker`` package (imported lazily)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pods.image.errors import ImageBuildError

Log = Callable[[str], None]


def _errors() -> Any:
    import docker.errors

    return docker.errors


def image_exists(client: Any, name: str) -> bool:
    try:
        client.images.get(name)
    except _errors().ImageNotFound:
        return False
    return True


def image_labels(client: Any, name: str) -> dict[str, str]:
    return client.images.get(name).attrs.get("Config", {}).get("Labels") or {}


def import_rootfs(client: Any, tar: Path, name: str, changes: list[str]) -> None:
    """``docker import``: one layer from a root filesystem tarball, with Dockerfile-style ``changes``."""
    repository, _, tag = name.rpartition(":")
    try:
        answer = client.api.import_image(src=str(tar), repository=repository, tag=tag, changes=changes)
    except _errors().APIError as exc:
        raise ImageBuildError(f"docker import of {name} failed: {exc}") from exc
    for line in str(answer).splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise ImageBuildError(f"docker import of {name} failed: {message['error']}")
    if not image_exists(client, name):
        raise ImageBuildError(f"docker import of {name} reported success but the image is not there")


def build(
    client: Any,
    context: IO[bytes],
    dockerfile: str,
    name: str,
    log: Log,
    labels: dict[str, str] | None = None,
    buildargs: dict[str, str] | None = None,
) -> None:
    """``docker build`` of an in-memory context; its error and last lines of output on a failure."""
    tail: list[str] = []
    try:
        for chunk in client.api.build(
            fileobj=context,
            custom_context=True,
            dockerfile=dockerfile,
            tag=name,
            rm=True,
            forcerm=True,
            decode=True,
            labels=labels,
            buildargs=buildargs,
        ):
            text = str(chunk.get("stream") or chunk.get("status") or "").rstrip()
            if text:
                tail = [*tail[-19:], text]
                if text.startswith("Step "):
                    log(f"  {text}")
            if "error" in chunk or "errorDetail" in chunk:
                error = chunk.get("error") or chunk["errorDetail"].get("message", chunk["errorDetail"])
                raise ImageBuildError(f"docker build of {name} failed: {str(error).strip()}", tail)
    except _errors().APIError as exc:
        raise ImageBuildError(f"docker build of {name} failed: {exc}", tail) from exc
    if not image_exists(client, name):
        raise ImageBuildError(f"docker build of {name} ended but the image is not there", tail)


def remove_image(client: Any, name: str) -> bool:
    try:
        client.images.remove(name, noprune=False)
    except _errors().ImageNotFound:
        return False
    except _errors().APIError:
        return False  # in use by a container
    return True


def tags_of(client: Any, repository: str) -> list[str]:
    """Every ``repository:tag`` present locally."""
    found = []
    for image in client.images.list(name=repository):
        found += [t for t in image.tags if t.rpartition(":")[0] == repository]
    return sorted(found)
