"""Image retention: algorithm images this engine pulled, removed once no job has used them for a while.

Algorithm images pile up on a node that runs strangers' algorithms, so the
engine keeps a record of the images *it pulled* for algorithms, and when a
job last used each one, in ``<state_dir>/images.json`` (a restart keeps the
record). A check, at start and then every ``image_retention_check_seconds``,
removes those not used for ``image_retention_days`` (0: never). It never
touches:

- an image it did not pull for an algorithm (the pod image, anything the
  operator pulled or built by hand): only recorded images are candidates;
- an image a job of this engine has not finished with (pulling, running, or
  accepted and not started): every job directory that has not ended names
  its image, and such an image counts as used *now*;
- the pod image, even if it is recorded.

A removal that fails (a container the engine does not know still uses the
image) is logged and tried again at the next check; the record keeps the
image until it is gone. Finding an image for a job and the check share a
lock, so a check never removes an image between a job finding it and
recording its use.

```
<state_dir>/images.json  {"images": {reference: {"id", "pulled_at", "last_used"}}, "checks", "checked_at"}
```
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import structlog

from c2d_docker_engine.daemon import Daemon, describe
from c2d_docker_engine.jobdir import read_json, write_json_atomic

RECORD_FILE = "images.json"
DAY_SECONDS = 86400.0
CONFLICT = 409

log = structlog.get_logger("c2d_docker_engine.retention")


@dataclass(frozen=True)
class Policy:
    """How long an unused pulled image stays (0 days: for ever) and how often that is checked."""

    days: int
    check_seconds: int

    @property
    def enabled(self) -> bool:
        return self.days > 0


@dataclass(frozen=True)
class Pulled:
    """One image this engine pulled for an algorithm: the reference it pulled, its id, and times (epoch)."""

    reference: str
    image_id: str
    pulled_at: float
    last_used: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.image_id, "pulled_at": self.pulled_at, "last_used": self.last_used}

    @classmethod
    def from_json(cls, reference: str, data: Any) -> Pulled | None:
        """None for an entry that is not what this module writes (it is dropped, never acted on)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(reference, str(data.get("id", "")), float(data["pulled_at"]), float(data["last_used"]))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class CheckResult:
    """What one check did: images removed, and images whose removal failed (kept for the next check)."""

    removed: tuple[str, ...]
    failed: tuple[str, ...]


class ImageRecord:
    """``images.json``: read and written whole, under :attr:`lock`, so no update is lost."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / RECORD_FILE
        self.clock = clock
        self.lock = threading.RLock()

    def _read(self) -> dict[str, Any]:
        data = read_json(self.path)
        return data if isinstance(data, dict) else {}

    def images(self) -> dict[str, Pulled]:
        raw = self._read().get("images")
        found = (
            {ref: Pulled.from_json(ref, entry) for ref, entry in (raw or {}).items()}
            if isinstance(raw, dict)
            else {}
        )
        return {ref: pulled for ref, pulled in found.items() if pulled is not None}

    def _write(self, images: dict[str, Pulled], checked: bool = False) -> None:
        data = self._read()
        data["images"] = {ref: p.to_json() for ref, p in sorted(images.items())}
        if checked:
            data["checks"] = int(data.get("checks", 0) or 0) + 1
            data["checked_at"] = self.clock()
        write_json_atomic(self.path, data)

    def pulled(self, reference: str, image_id: str) -> None:
        """The engine pulled ``reference`` for an algorithm: it is recorded, used now."""
        with self.lock:
            now = self.clock()
            images = self.images()
            images[reference] = Pulled(reference, image_id, now, now)
            self._write(images)

    def used(self, reference: str) -> None:
        """A job uses ``reference``: its last use is now, if the engine pulled it (else nothing is recorded)."""
        with self.lock:
            images = self.images()
            known = images.get(reference)
            if known is None:
                return
            images[reference] = Pulled(reference, known.image_id, known.pulled_at, self.clock())
            self._write(images)

    def check(
        self, client: docker.DockerClient, policy: Policy, in_use: Iterable[str], pod_image: str | None
    ) -> CheckResult:
        """Removes the recorded images unused for ``policy.days``, but none in ``in_use`` nor the pod image."""
        with self.lock:
            now = self.clock()
            keep = set(in_use)
            pod_id = _image_id(client, pod_image) if pod_image else None
            images = self.images()
            removed: list[str] = []
            failed: list[str] = []
            for ref, pulled in sorted(images.items()):
                if ref in keep:
                    images[ref] = Pulled(ref, pulled.image_id, pulled.pulled_at, now)
                    continue
                if ref == pod_image or (pod_id and pulled.image_id == pod_id):
                    continue
                if now - pulled.last_used < policy.days * DAY_SECONDS:
                    continue
                outcome = _remove(client, ref)
                if outcome is None:
                    failed.append(ref)
                else:
                    del images[ref]
                    if outcome:
                        removed.append(ref)
            self._write(images, checked=True)
        return CheckResult(tuple(removed), tuple(failed))


def _image_id(client: docker.DockerClient, reference: str) -> str | None:
    try:
        return str(client.images.get(reference).id or "")
    except docker.errors.ImageNotFound:
        return None


def _remove(client: docker.DockerClient, reference: str) -> bool | None:
    """True when removed, False when it was gone already, None when it could not be removed (retried)."""
    try:
        client.images.remove(reference)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        reason = "a container uses it" if exc.status_code == CONFLICT else describe(exc)
        log.warning("unused image not removed; tried again at the next check", image=reference, reason=reason)
        return None
    log.info("unused image removed", image=reference)
    return True


class Retention:
    """The periodic check: a thread of its own, the first check at once, then every ``check_seconds``."""

    def __init__(
        self,
        record: ImageRecord,
        policy: Policy,
        daemon: Daemon,
        in_use: Callable[[], Iterable[str]],
        pod_image: str | None,
    ) -> None:
        self.record = record
        self.policy = policy
        self.daemon = daemon
        self.in_use = in_use
        self.pod_image = pod_image
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.policy.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="image-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.policy.check_seconds)

    def check_once(self) -> CheckResult | None:
        """One check; None when it could not run (the daemon is away): the next one tries again."""
        if not self.daemon.healthy:
            return None
        try:
            return self.record.check(self.daemon.client, self.policy, self.in_use(), self.pod_image)
        except Exception as exc:  # a check that fails is retried; it never ends the engine
            log.warning("image retention check failed; tried again later", reason=describe(exc))
            return None
