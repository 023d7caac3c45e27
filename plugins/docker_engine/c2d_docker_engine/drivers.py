"""The job driver threads of this plugin process: at most one per job.

A job holds its grant from StartJob to its terminal event, which is exactly
while its driver runs, so the fingerprint's capacity in use and the cores
taken by pinned jobs are read from here.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import structlog

from c2d_docker_engine.driver import JobDriver, Runtime
from c2d_docker_engine.grant import Grant
from c2d_docker_engine.jobdir import JobDir, Record

log = structlog.get_logger("c2d_docker_engine.drivers")


@dataclass
class Usage:
    """What the running jobs of one environment hold."""

    jobs: int = 0
    cpu: float = 0.0
    ram_gib: float = 0.0
    disk_gib: float = 0.0
    gpus: int = 0

    def add(self, grant: Grant) -> None:
        self.jobs += 1
        self.cpu += grant.cpu
        self.ram_gib += grant.ram_gib
        self.disk_gib += grant.disk_gib
        self.gpus += len(grant.gpus)


class Drivers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drivers: dict[str, tuple[JobDriver, threading.Thread]] = {}

    def ensure(self, runtime: Runtime, job: JobDir, record: Record) -> None:
        """Starts the job's driver unless one runs already (or the job has ended)."""
        with self._lock:
            current = self._drivers.get(job.job_id)
            if current is not None and current[1].is_alive():
                return
            if job.is_ended():
                return
            driver = JobDriver(runtime, job, record)
            thread = threading.Thread(target=driver.run, name=f"job-{job.job_id[:40]}", daemon=True)
            self._drivers[job.job_id] = (driver, thread)
            thread.start()
        log.info("job driver started", job_id=job.job_id)
        runtime.changed()

    def stop_all(self) -> None:
        """Leaves every job to its containers (a new plugin picks them up); drivers write nothing more."""
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

    def active(self) -> list[JobDriver]:
        with self._lock:
            return [d for d, t in self._drivers.values() if t.is_alive() and not d.ended]

    def usage(self) -> dict[str, Usage]:
        used: dict[str, Usage] = {}
        for driver in self.active():
            used.setdefault(str(driver.record.get("environment_id")), Usage()).add(driver.grant)
        return used

    def busy_cores(self, environment_id: str) -> Counter[int]:
        """How many running jobs of the environment are pinned to each core."""
        busy: Counter[int] = Counter()
        for driver in self.active():
            if driver.record.get("environment_id") == environment_id:
                busy.update(driver.record.get("cpuset") or [])
        return busy
