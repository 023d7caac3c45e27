"""One resumable upload to the node: GetUploadOffset, then a PublishResult stream from there.

The header names the whole file's size and SHA-256, so the node can tell a
complete upload from a partial one and refuse a corrupted one; after a
transient error (a node restart mid-upload) the next attempt asks the node
how much it kept and sends only the rest. The file is read with
``O_NOFOLLOW``: it was written by the algorithm, which may have swapped it for
a link.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from c2d.bulkio import keep_freed_buffers
from c2d.pod.v1 import pod_pb2
from pods.client import PodClient
from pods.failures import PodFailure

# One PublishResult message: 1 MiB moved fastest on loopback (the node sends its downloads so too);
# the node accepts messages up to its [limits] max_message_bytes (8 MiB unless its operator lowers it).
CHUNK_BYTES = 1024 * 1024
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Upload:
    path: Path
    name: str
    kind: pod_pb2.UploadKind
    archive: bool = False


def measure(path: Path) -> tuple[int, str]:
    """Size and SHA-256 (hex) of the file, read once."""
    digest = hashlib.sha256()
    size = 0
    for chunk in read_chunks(path, 0, 1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def read_chunks(
    path: Path, offset: int, chunk_bytes: int = CHUNK_BYTES, limit: int | None = None
) -> Iterator[bytes]:
    """The file's bytes from ``offset`` (up to ``limit`` in all), in chunks."""
    with os.fdopen(os.open(path, READ_FLAGS), "rb") as f:
        f.seek(offset)
        left = limit - offset if limit is not None else None
        while left is None or left > 0:
            chunk = f.read(chunk_bytes if left is None else min(chunk_bytes, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def upload(client: PodClient, item: Upload) -> pod_pb2.PublishResultResponse:
    """Uploads ``item`` completely, resuming after transient errors; PodFailure when the node refuses it."""
    keep_freed_buffers()  # every chunk is a fresh MiB buffer: keep them in the heap (c2d.bulkio)
    size, sha256 = measure(item.path)
    kept = [0]

    def attempt() -> pod_pb2.PublishResultResponse:
        offset = client.get_upload_offset(item.name, item.kind, retry=False)
        if offset > size:
            offset = 0  # the node holds something else under this name: start over
        kept[0] = max(kept[0], offset)
        header = pod_pb2.UploadHeader(
            name=item.name, kind=item.kind, size=size, sha256=sha256, offset=offset, archive=item.archive
        )
        return client.publish(header, read_chunks(item.path, offset, limit=size))

    reply = client.backoff.run(attempt, progress=lambda: kept[0], on_retry=client.on_retry)
    if not reply.complete:
        raise PodFailure(
            f"{item.name}: the node did not confirm the upload ({reply.received} of {size} bytes)"
        )
    return reply
