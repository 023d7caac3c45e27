"""How a job ended, as the fields of its terminal event, with a message a consumer understands.

The first cause wins: a stop, then the time limit, then a lost backend (the
Docker engine, the cluster), then the memory limit, then the disk quota, then
the exit code. A failed publishing turns FINISHED into RESULTS_UPLOAD_FAILED
but never hides an earlier failure (it is added to its message instead).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from c2d.plugin.kit.jobdir import Record

SHELL_SIGNAL_BASE = 128
STOPPED = "stopped"
TIMED_OUT = "timed_out"
BACKEND_LOST = "backend_lost"  # the backend came back, the algorithm had ended with it
BACKEND_GONE = "backend_gone"  # the backend did not come back in time


@dataclass(frozen=True)
class Ending:
    """What the algorithm's end looked like, from the backend and from the job driver."""

    exit_code: int
    oom_killed: bool = False
    reason: str | None = None  # STOPPED, TIMED_OUT, BACKEND_LOST, BACKEND_GONE
    disk_full: bool = False
    file_size_limited: bool = False  # no filesystem quota: ulimit fsize stood in


def classify(
    ending: Ending, grant: Record, time_limit: int, stop_reason: str = "", backend: str = "the engine"
) -> Record:
    """The terminal event's fields for the algorithm's ending (not yet its times)."""
    outcome: Record = {"exit_code": ending.exit_code}
    if ending.reason == STOPPED:
        return {
            **outcome,
            "status": "STOPPED",
            "stopped": True,
            "message": f"stopped: {stop_reason or 'stop requested'}",
        }
    if ending.reason == TIMED_OUT:
        return {
            **outcome,
            "status": "TIMED_OUT",
            "timed_out": True,
            "message": f"the algorithm ran past its time limit of {time_limit} s and was stopped",
        }
    if ending.reason == BACKEND_LOST:
        return {
            **outcome,
            "status": "LOST",
            "message": f"{backend} restarted while the algorithm ran, which ended it; run the job again",
        }
    if ending.reason == BACKEND_GONE:
        return {
            **outcome,
            "status": "LOST",
            "message": f"{backend} stopped answering while the algorithm ran and did not come back in time",
        }
    return {**outcome, **_by_exit(ending, grant)}


def _by_exit(ending: Ending, grant: Record) -> Record:
    """Memory, then disk, then the exit code."""
    if ending.oom_killed and ending.exit_code != 0:
        return {
            "status": "OUT_OF_MEMORY",
            "oom_killed": True,
            "message": f"the algorithm used more than its {_gib(grant.get('ram_gib'))} of memory and was killed",
        }
    if ending.disk_full or (
        ending.file_size_limited and ending.exit_code == SHELL_SIGNAL_BASE + signal.SIGXFSZ
    ):
        what = "filled its disk quota" if ending.disk_full else "wrote a file larger than its disk quota"
        return {
            "status": "DISK_QUOTA_EXCEEDED",
            "disk_quota_exceeded": True,
            "message": f"the algorithm {what} of {_gib(grant.get('disk_gib'))}",
        }
    if ending.exit_code == 0:
        return {"status": "FINISHED", "message": "the algorithm exited with code 0"}
    return {"status": "ALGORITHM_FAILED", "message": f"the algorithm {exit_text(ending.exit_code)}"}


def exit_text(exit_code: int) -> str:
    if exit_code > SHELL_SIGNAL_BASE:
        try:
            name = signal.Signals(exit_code - SHELL_SIGNAL_BASE).name
        except ValueError:
            name = None
        if name:
            return f"exited with code {exit_code} (killed by {name})"
    return f"exited with code {exit_code}"


def algorithm_times(outcome: Record) -> Record:
    """The billing fields of an outcome, when the algorithm ran."""
    return {
        k: outcome[k]
        for k in ("algorithm_started", "algorithm_finished", "exit_code", "image_digest")
        if k in outcome
    }


def publishing_failed(outcome: Record, failure: str) -> Record:
    """The outcome once publishing failed: RESULTS_UPLOAD_FAILED, unless something failed before."""
    if outcome["status"] == "FINISHED":
        return {
            **outcome,
            "status": "RESULTS_UPLOAD_FAILED",
            "message": f"publishing the results failed: {failure}",
        }
    details = {**(outcome.get("details") or {}), "publishing": "failed"}
    return {**outcome, "message": f"{outcome.get('message', '')}; then {failure}", "details": details}


def _gib(value: object) -> str:
    amount = float(value) if isinstance(value, int | float) else 0.0
    return f"{amount:g} GiB"
