"""The algorithm's log, read from its pod: collected into the job's folder once it ends, streamed while it runs.

Both read the same bytes from the kubelet (stdout and stderr as the
container wrote them, no timestamps), so the offsets StreamJobLogs hands out
while the pod runs stay valid for the file afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

CHUNK_BYTES = 64 * 1024
# A container that has not started (or a pod already gone) has no log yet.
NO_LOG_STATUSES = (400, 404)


def stream(core: Any, namespace: str, pod: str, container: str, *, follow: bool) -> Iterator[bytes]:
    """The container's output from its first byte; with ``follow`` until the container ends."""
    try:
        response = core.read_namespaced_pod_log(
            pod, namespace, container=container, follow=follow, _preload_content=False
        )
    except ApiException as exc:
        if exc.status in NO_LOG_STATUSES:
            return
        raise
    try:
        yield from response.stream(CHUNK_BYTES, decode_content=False)
    finally:
        response.release_conn()


def collect(core: Any, namespace: str, pod: str, container: str, target: Path, max_bytes: int) -> int:
    """Writes the container's output (its first ``max_bytes``) to ``target`` atomically; the byte count."""
    partial = target.with_name(target.name + ".partial")
    size = 0
    with open(partial, "wb") as f:
        for chunk in stream(core, namespace, pod, container, follow=False):
            chunk = chunk[: max(0, max_bytes - size)]
            f.write(chunk)
            size += len(chunk)
            if size >= max_bytes:
                break
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, target)
    return size


def append_pod_log(core: Any, namespace: str, pod: str, container: str, target: Path) -> None:
    """Adds a pod's output to the operator's pods.log, under a title line; best effort."""
    with contextlib.suppress(ApiException, OSError), open(target, "ab") as f:
        f.write(f"--- pod-{container} ---\n".encode())
        for chunk in stream(core, namespace, pod, container, follow=False):
            f.write(chunk)
