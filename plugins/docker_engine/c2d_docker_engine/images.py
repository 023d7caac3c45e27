"""Images: found locally by tag or digest, else pulled with progress and a time limit, then pinned.

A job runs the image's *id*, not its name, so the image cannot change under
the job (a re-tag, a second pull), and the job's record names it by digest
(a repo digest when the image came from a registry, else its content id).
Pulls run in a thread of their own: the Docker API gives no pull timeout,
so the job driver waits on that thread for at most ``pull_timeout_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import structlog

from c2d_docker_engine.config import RegistryAuth
from c2d_docker_engine.daemon import Daemon, describe
from c2d_docker_engine.jobspec import ImageRef

PROGRESS_EVERY_SECONDS = 2.0
MB = 1_000_000

log = structlog.get_logger("c2d_docker_engine.images")


@dataclass(frozen=True)
class ImageInfo:
    """An image present on the daemon: its id (what runs) and its digest (what the record names)."""

    id: str
    digest: str


class PullFailed(Exception):
    """The image is not on the daemon and could not be pulled; the message says why, for the consumer."""


def find(client: docker.DockerClient, ref: ImageRef) -> ImageInfo | None:
    """The image if the daemon has it (by tag or digest), else None."""
    try:
        image = client.images.get(ref.reference)
    except docker.errors.ImageNotFound:
        return None
    # docker's hints allow an image without an id; one the daemon just answered for has one.
    image_id = image.id or str(image.attrs.get("Id", ""))
    return ImageInfo(id=image_id, digest=pinned_digest(image.attrs, ref.repository))


def pinned_digest(attrs: dict[str, Any], repository: str) -> str:
    """``repo@sha256:...`` when the daemon has this repository's registry digest, else the image id.

    Another repository's digest of the same image (it was pushed or pulled elsewhere too) is not
    used: it names a registry the job never asked for, which may be gone."""
    digests = [d for d in attrs.get("RepoDigests") or [] if isinstance(d, str)]
    ours = next((d for d in digests if d.split("@", 1)[0] == repository), None)
    return ours or str(attrs.get("Id", ""))


@dataclass
class PullProgress:
    """Sums up the daemon's pull messages as "layers done, bytes downloaded"."""

    layers: dict[str, str] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def feed(self, message: dict[str, Any]) -> None:
        if message.get("error"):
            detail = message.get("errorDetail") or {}
            self.error = str(detail.get("message") or message["error"])
            return
        layer = message.get("id")
        status = str(message.get("status", ""))
        if not layer or not status or status.startswith(("Pulling from", "Digest:", "Status:")):
            return
        self.layers[layer] = status
        progress = message.get("progressDetail") or {}
        if status == "Downloading" and progress.get("total"):
            self.current[layer] = int(progress.get("current", 0))
            self.total[layer] = int(progress["total"])
        elif status in ("Download complete", "Pull complete", "Already exists") and layer in self.total:
            self.current[layer] = self.total[layer]

    def summary(self) -> str:
        done = sum(1 for status in self.layers.values() if status in ("Pull complete", "Already exists"))
        text = f"{done} of {len(self.layers)} layers"
        if self.total:
            text += f", {sum(self.current.values()) / MB:.1f} of {sum(self.total.values()) / MB:.1f} MB"
        return text


@dataclass
class _Pull:
    """One pull running in its own thread; the driver reads its progress and outcome."""

    progress: PullProgress = field(default_factory=PullProgress)
    failure: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


def pull(
    daemon: Daemon,
    ref: ImageRef,
    auth: RegistryAuth | None,
    timeout_seconds: float,
    on_progress: Callable[[str], object],
) -> ImageInfo:
    """Pulls ``ref``; PullFailed with the daemon's reason, or when it takes longer than ``timeout_seconds``."""
    state = _Pull()
    client = daemon.new_client(timeout=max(1, int(timeout_seconds)))
    thread = threading.Thread(
        target=_pull_into, args=(client, ref, auth, state), name=f"pull-{ref.reference[:40]}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout_seconds
    reported = ""
    while not state.done.wait(min(PROGRESS_EVERY_SECONDS, max(0.0, deadline - time.monotonic()))):
        summary = state.progress.summary()
        if summary != reported and state.progress.layers:
            on_progress(summary)
            reported = summary
        if time.monotonic() >= deadline:
            client.close()  # the thread ends on its own when its connection does
            raise PullFailed(f"pulling image {ref.reference} took longer than {timeout_seconds:g} s")
    client.close()
    if state.failure is not None:
        raise PullFailed(
            f"image {ref.reference} is not on this Docker engine and could not be pulled: {state.failure}"
        )
    found = find(daemon.client, ref)
    if found is None:
        raise PullFailed(f"image {ref.reference} was pulled but the Docker engine does not list it")
    return found


def _pull_into(client: docker.DockerClient, ref: ImageRef, auth: RegistryAuth | None, state: _Pull) -> None:
    try:
        stream = client.api.pull(
            ref.repository,
            tag=ref.pull_tag,
            stream=True,
            decode=True,
            auth_config=auth.as_docker() if auth else None,
        )
        for message in stream:
            if isinstance(message, dict):
                state.progress.feed(message)
        state.failure = state.progress.error
    except Exception as exc:
        state.failure = describe(exc)
    finally:
        state.done.set()
