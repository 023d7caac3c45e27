"""The build context of an algorithm image: the consumer's Dockerfile and additional files.

Nothing else goes in it: the tar is made in memory, so no path of the node is ever part of a
build. Its content hash names the image it builds, so an identical context is built once.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from typing import Any

from c2d.plugin.kit.jobspec import ImageRef
from c2d_docker_engine.errors import invalid

REPOSITORY = "c2d-algorithm-build"
DOCKERFILE = "Dockerfile"
MAX_DOCKERFILE_BYTES = 64 * 1024
MAX_FILES = 32
MAX_FILES_BYTES = 1024 * 1024
MAX_FILE_NAME = 255
_COMPONENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
FILE_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")


@dataclass(frozen=True)
class Context:
    """What the image is built from: the Dockerfile, the additional files (name -> bytes), and
    whether the build may use a network (part of the hash: an image built with one is never
    handed to a job whose build would have had none)."""

    dockerfile: str
    files: dict[str, bytes] = field(default_factory=dict)
    network: bool = False

    @classmethod
    def checked(cls, dockerfile: str, files: dict[str, bytes], network: bool = False) -> Context:
        """INVALID_ARGUMENT unless both are within the limits and every name is a plain relative path."""
        if not dockerfile.strip():
            raise invalid("container.dockerfile is empty")
        if len(dockerfile.encode()) > MAX_DOCKERFILE_BYTES:
            raise invalid(f"container.dockerfile is larger than {MAX_DOCKERFILE_BYTES} bytes")
        if len(files) > MAX_FILES:
            raise invalid(f"container.additional_files has more than {MAX_FILES} files")
        if sum(len(data) for data in files.values()) > MAX_FILES_BYTES:
            raise invalid(f"container.additional_files holds more than {MAX_FILES_BYTES} bytes")
        for name in files:
            if len(name) > MAX_FILE_NAME or not FILE_NAME.fullmatch(name) or ".." in name.split("/"):
                raise invalid(f"container.additional_files: {name[:100]!r} is not a plain relative path")
            if name == DOCKERFILE:
                raise invalid(f"container.additional_files may not hold a file named {DOCKERFILE}")
        return cls(dockerfile, dict(files), network)

    def content_tag(self) -> str:
        """sha256 of the network flag, the Dockerfile and the files (names and contents, length-prefixed,
        in name order)."""
        digest = hashlib.sha256(b"network\n" if self.network else b"no network\n")
        for name, data in [(DOCKERFILE, self.dockerfile.encode()), *sorted(self.files.items())]:
            for part in (name.encode(), data):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return digest.hexdigest()

    def image_ref(self) -> ImageRef:
        return ImageRef(REPOSITORY, tag=self.content_tag())

    def tar(self) -> io.BytesIO:
        """The build context as an in-memory tar: regular files owned by root, mode 0644."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in [(DOCKERFILE, self.dockerfile.encode()), *sorted(self.files.items())]:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        return buffer

    def to_json(self) -> dict[str, Any]:
        files = {name: base64.b64encode(data).decode() for name, data in sorted(self.files.items())}
        return {"dockerfile": self.dockerfile, "files": files, "network": self.network}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Context:
        files = {name: base64.b64decode(text) for name, text in (data.get("files") or {}).items()}
        return cls(str(data["dockerfile"]), files, bool(data.get("network", False)))
