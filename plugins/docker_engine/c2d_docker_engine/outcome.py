"""How a job ended: the SDK kit's rules, with the Docker engine named when it took the job with it.

The first cause wins: a stop, then the time limit, then a lost Docker
engine, then the memory limit, then the disk quota, then the exit code. A
failed publishing turns FINISHED into RESULTS_UPLOAD_FAILED but never hides an
earlier failure (it is added to its message instead).
"""

from __future__ import annotations

from c2d.plugin.kit import outcome as kit
from c2d.plugin.kit.outcome import (
    SHELL_SIGNAL_BASE,
    STOPPED,
    TIMED_OUT,
    Ending,
    algorithm_times,
    exit_text,
    publishing_failed,
)
from c2d_docker_engine.jobdir import Record

DAEMON_LOST = kit.BACKEND_LOST  # the daemon came back, the container had ended with it
DAEMON_GONE = kit.BACKEND_GONE  # the daemon did not come back in time
BACKEND = "the Docker engine"

__all__ = [
    "DAEMON_GONE",
    "DAEMON_LOST",
    "SHELL_SIGNAL_BASE",
    "STOPPED",
    "TIMED_OUT",
    "Ending",
    "algorithm_times",
    "classify",
    "exit_text",
    "publishing_failed",
]


def classify(ending: Ending, grant: Record, time_limit: int, stop_reason: str = "") -> Record:
    """The terminal event's fields for the algorithm's ending (not yet its times)."""
    return kit.classify(ending, grant, time_limit, stop_reason, backend=BACKEND)
