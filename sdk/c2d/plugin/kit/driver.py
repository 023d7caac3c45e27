"""What every job driver thread does alike: write events, honour stop requests, outlast backend outages.

A driver carries one job from wherever it is to its terminal event; engines
subclass :class:`JobDriverBase` with their steps (:meth:`drive`) and say how
their backend fails and comes back. A driver that dies of a bug still ends
its job (LOST, with a message), so no job ever hangs.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import structlog

from c2d.plugin.kit.grant import Grant
from c2d.plugin.kit.jobdir import JobDir, Record

DEFAULT_STOP_GRACE_SECONDS = 10.0
# How many times a driver starts over after its backend went away and came back.
MAX_BACKEND_RETRIES = 5
ENDED = "ended"
OUTCOME = "outcome"


class JobGone(Exception):
    """The job was destroyed under its driver: nobody is left to report to."""


class JobDriverBase:
    """Drives one job; subclasses implement :meth:`drive` and the backend hooks."""

    engine = "the engine plugin"  # for messages: "internal error in <engine>"
    backend_wait_key = "backend_wait_seconds"  # the job's limits key: how long to wait for the backend

    def __init__(self, job: JobDir, record: Record, changed: Any, log_name: str) -> None:
        self.job = job
        self.record = record
        self.limits: Record = record["limits"]
        self.grant = Grant.from_json(record["grant"])
        self.changed = changed
        self.cancelled = threading.Event()
        # Set once the terminal event is written: the job no longer holds its grant.
        self.ended = False
        self.log = structlog.get_logger(log_name).bind(job_id=job.job_id)

    # Events ------------------------------------------------------------------------

    def emit(self, fields: Record) -> Record:
        if self.cancelled.is_set() or not self.job.exists():
            raise JobGone
        record = self.job.append_event(fields)
        self.changed()
        return record

    def emit_once(self, status: str, message: str, **fields: Any) -> None:
        """An event for a step that a resumed driver must not report twice."""
        if not self.job.has_status(status):
            self.emit({"status": status, "message": message, **fields})

    def end(self, **fields: Any) -> None:
        self.ended = True
        record = self.emit({**fields, "terminal": True})
        self.log.info("job ended", status=record.get("status"), detail=record.get("message"))

    def settle(self, step: str, outcome: Record) -> Record:
        """Records a step's end and the job's outcome, before anything depends on them."""
        self.job.record_step(step, {"state": ENDED, "status": outcome.get("status")})
        self.job.record_step(OUTCOME, outcome)
        return outcome

    # The thread --------------------------------------------------------------------

    def run(self) -> None:
        """The thread's body: drive, start over after a backend outage, never die silently."""
        try:
            self.run_with_retries()
        except JobGone:
            self.log.info("job destroyed while its driver ran")
        except Exception as exc:
            self.log.exception("job driver failed")
            with contextlib.suppress(JobGone, OSError):
                self.end(
                    status="LOST",
                    message=f"internal error in {self.engine} ({type(exc).__name__}); see its log",
                )

    def run_with_retries(self) -> None:
        for attempt in range(MAX_BACKEND_RETRIES + 1):
            try:
                self.drive()
                return
            except Exception as exc:
                if not self.unreachable(exc):
                    raise
                self.log.warning("the backend went away", reason=self.describe(exc), attempt=attempt)
                wait = float(self.limits.get(self.backend_wait_key, 120))
                if attempt == MAX_BACKEND_RETRIES or not self.wait_for_backend(wait):
                    if self.cancelled.is_set():
                        raise JobGone from None
                    self.end(status="LOST", message=self.lost_message(exc))
                    return

    def drive(self) -> None:
        raise NotImplementedError

    def unreachable(self, exc: Exception) -> bool:
        """Whether ``exc`` says the backend could not be reached (a wait and a retry may help)."""
        return False

    def describe(self, exc: Exception) -> str:
        return str(exc)

    def wait_for_backend(self, timeout: float) -> bool:
        """Waits (bounded, and no longer once cancelled) for the backend; whether it answers again."""
        return False

    def lost_message(self, exc: Exception) -> str:
        return f"the backend stopped answering ({self.describe(exc)}) and the job could not be carried on"

    # Stop requests -----------------------------------------------------------------

    def stopping(self) -> bool:
        """Whether StopJob (or DestroyJob) asked the job to stop; a plugin shutting down is no such request."""
        return self.job.stop_requested()

    def stop_grace(self) -> float:
        request = self.job.stop_request() or {}
        grace = request.get("grace_seconds", DEFAULT_STOP_GRACE_SECONDS)
        return float(grace) if isinstance(grace, int | float) and grace >= 0 else DEFAULT_STOP_GRACE_SECONDS

    def stop_reason(self) -> str:
        return str((self.job.stop_request() or {}).get("reason") or "stop requested")

    def stopped(self, when: str) -> Record:
        return {"status": "STOPPED", "stopped": True, "message": f"stopped {when}: {self.stop_reason()}"}

    def stopped_before_start(self) -> Record | None:
        """The outcome of a job stopped before any step began, else None."""
        if self.stopping() and not self.job.steps():
            return {
                "status": "STOPPED",
                "stopped": True,
                "message": f"stopped before it started: {self.stop_reason()}",
            }
        return None
