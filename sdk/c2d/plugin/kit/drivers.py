"""The job driver threads of a plugin process: at most one per job.

An engine whose jobs are driven from the plugin (a container engine, a
cluster) runs one thread per job that carries it from step to step. A job
holds its grant from StartJob to its terminal event, which is exactly while
its driver runs, so the fingerprint's capacity in use is read from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import structlog

from c2d.plugin.kit.fingerprint import Usage
from c2d.plugin.kit.grant import Grant
from c2d.plugin.kit.jobdir import JobDir, Record

log = structlog.get_logger("c2d.plugin.kit.drivers")


class Driver(Protocol):
    """What the registry needs of a job driver."""

    cancelled: threading.Event
    ended: bool
    record: Record
    grant: Grant

    def run(self) -> None: ...


D = TypeVar("D", bound=Driver)


class Drivers(Generic[D]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drivers: dict[str, tuple[D, threading.Thread]] = {}

    def ensure(self, job: JobDir, make: Callable[[], D], changed: Callable[[], None]) -> None:
        """Starts the job's driver (``make()``) unless one runs already (or the job has ended)."""
        with self._lock:
            current = self._drivers.get(job.job_id)
            if current is not None and current[1].is_alive():
                return
            if job.is_ended():
                return
            driver = make()
            thread = threading.Thread(target=driver.run, name=f"job-{job.job_id[:40]}", daemon=True)
            self._drivers[job.job_id] = (driver, thread)
            thread.start()
        log.info("job driver started", job_id=job.job_id)
        changed()

    def stop_all(self) -> None:
        """Leaves every job to its backend (a new plugin picks it up); drivers write nothing more."""
        with self._lock:
            for driver, _ in self._drivers.values():
                driver.cancelled.set()

    def cancel(self, job_id: str) -> threading.Thread | None:
        """Tells the job's driver to write nothing more and forgets it; its thread, to join."""
        with self._lock:
            current = self._drivers.pop(job_id, None)
        if current is None:
            return None
        driver, thread = current
        driver.cancelled.set()
        return thread

    def reset(self) -> None:
        """Forgets every driver (a Configure for another state dir or host); they write nothing more."""
        self.stop_all()
        with self._lock:
            self._drivers.clear()

    def active(self) -> list[D]:
        with self._lock:
            return [d for d, t in self._drivers.values() if t.is_alive() and not d.ended]

    def usage(self) -> dict[str, Usage]:
        used: dict[str, Usage] = {}
        for driver in self.active():
            used.setdefault(str(driver.record.get("environment_id")), Usage()).add(driver.grant)
        return used
