"""The algorithm's log: collected from Docker once it ends, streamed from Docker while it runs.

Docker multiplexes stdout and stderr with 8-byte frame headers; the docker
package's ``logs`` takes them apart, so what reaches the file and the
consumer is the algorithm's bytes only. The job's own copy
(``<job_dir>/algorithm.log``) sits outside the disk quota and appears
complete in one rename; a copy goes to ``data/logs/algorithm.log`` for
pod-publishing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from docker.models.containers import Container

from c2d.plugin.kit.logs import read_from, skip
from c2d_docker_engine.jobdir import JobDir

__all__ = ["append_pod_log", "collect", "follow", "publish_copy", "read_from"]


def collect(container: Container, target: Path) -> int:
    """Writes the container's whole output to ``target`` (atomically); the number of bytes."""
    partial = target.with_name(target.name + ".partial")
    size = 0
    with open(partial, "wb") as f:
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
            f.write(chunk)
            size += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, target)
    return size


def append_pod_log(container: Container, target: Path, title: str) -> None:
    """Adds a pod's output to the operator's pods.log, under a title line."""
    with open(target, "ab") as f:
        f.write(f"--- {title} ---\n".encode())
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
            f.write(chunk)


def publish_copy(job: JobDir, uid: int, gid: int, source: Path | None = None) -> None:
    """A log (the algorithm's unless ``source``) where pod-publishing looks for it, under the same
    name; best effort (root may use the blocks kept for it)."""
    source = source or job.log_path
    target = job.data / "logs" / source.name
    with contextlib.suppress(OSError):
        shutil.copyfile(source, target)
        os.chown(target, uid, gid)


def follow(container: Container, count: int, follow_on: bool) -> Iterator[bytes]:
    """The running container's output past its first ``count`` bytes; with ``follow_on`` until it ends."""
    yield from skip(container.logs(stdout=True, stderr=True, stream=True, follow=follow_on), count)
