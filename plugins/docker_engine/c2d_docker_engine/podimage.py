"""Whether the pod image is on the daemon: without it no stage with pods can run.

Checked at most every few seconds (fingerprints are rebuilt every second)
and reported in the health description, so the operator sees at once what
is missing and how to make it.
"""

from __future__ import annotations

import threading
import time

import docker

RECHECK_SECONDS = 10.0
BUILD_HINT = "build it with: python -m pods.image build"


class PodImageCheck:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[float, bool]] = {}

    def missing_note(self, client: docker.DockerClient, image: str | None) -> str | None:
        """A sentence for the health description when ``image`` is absent, else None."""
        if not image or self._present(client, image):
            return None
        return f"pod image {image} is missing, so stages with inputs cannot run; {BUILD_HINT}"

    def _present(self, client: docker.DockerClient, image: str) -> bool:
        with self._lock:
            checked_at, present = self._checked.get(image, (0.0, False))
            if time.monotonic() - checked_at < RECHECK_SECONDS:
                return present
        try:
            client.images.get(image)
            present = True
        except docker.errors.ImageNotFound:
            present = False
        except Exception:  # the daemon is away: its own health says so
            present = True
        with self._lock:
            self._checked[image] = (time.monotonic(), present)
        return present
