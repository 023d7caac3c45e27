"""The jobs that hold capacity right now, watched so their end is noticed with nobody watching.

A job holds its grant from StartJob until its terminal event. A background
thread polls those jobs (their events file and their shim) so that the
fingerprint's available capacity follows job ends, and a shim that died is
reported LOST even when no WatchJob stream is open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from c2d_external_stub.fingerprint import Usage
from c2d_external_stub.jobs import JobStore
from c2d_external_stub.limits import Grant

POLL_SECONDS = 0.2

log = structlog.get_logger("c2d_external_stub.active")


class ActiveJobs:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._store: JobStore | None = None
        self._jobs: dict[str, tuple[str, Grant]] = {}
        self._thread: threading.Thread | None = None

    def reset(self, store: JobStore) -> None:
        """Takes over the jobs of a (re)configured store: every one that has not ended yet."""
        running: dict[str, tuple[str, Grant]] = {}
        for job, spec in store.jobs():
            if not store.is_ended(job):
                running[job.job_id] = (
                    str(spec.get("environment_id", "")),
                    Grant.from_json(spec.get("grant")),
                )
        with self._lock:
            self._store, self._jobs = store, running
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="active-jobs", daemon=True)
                self._thread.start()

    def add(self, job_id: str, environment_id: str, grant: Grant) -> None:
        with self._lock:
            added = job_id not in self._jobs
            self._jobs[job_id] = (environment_id, grant)
        if added:
            self._on_change()

    def discard(self, job_id: str) -> None:
        with self._lock:
            removed = self._jobs.pop(job_id, None) is not None
        if removed:
            self._on_change()

    def usage(self) -> dict[str, Usage]:
        used: dict[str, Usage] = {}
        with self._lock:
            for environment_id, grant in self._jobs.values():
                used.setdefault(environment_id, Usage()).add(grant)
        return used

    def poll(self) -> None:
        """Drops the jobs that have ended (writing LOST for dead shims on the way)."""
        with self._lock:
            store, job_ids = self._store, list(self._jobs)
        if store is None:
            return
        for job_id in job_ids:
            found = store.lookup(job_id)
            if found is None or store.is_ended(found[0]):
                self.discard(job_id)

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            try:
                self.poll()
            except Exception:
                log.exception("polling running jobs failed")
