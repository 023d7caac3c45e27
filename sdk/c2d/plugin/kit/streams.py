"""The parts of an engine servicer that do not depend on the engine: watching events and fingerprints.

Both streams sleep on the engine's :class:`~c2d.plugin.kit.changes.Changes`
instead of polling, waking at least every ``wake`` seconds to notice a
client that went away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import events
from c2d.plugin.kit.changes import Changes
from c2d.plugin.kit.errors import EngineError
from c2d.plugin.kit.jobdir import EventTail, JobDir, Record

WATCH_WAKE_SECONDS = 0.5
FINGERPRINT_WAKE_SECONDS = 1.0


def job_events(
    job: Any,
    after_sequence: int,
    changes: Changes,
    context: Any,
    wake: float = WATCH_WAKE_SECONDS,
    on_idle: Callable[[], None] | None = None,
) -> Iterator[engine_pb2.WatchJobResponse]:
    """WatchJob: the events after ``after_sequence``, then new ones, until the terminal one.

    ``on_idle`` runs at each wake-up that found nothing new (an engine whose events are written by
    another process checks there that the writer still lives).
    """
    tail = EventTail(job.events_path)
    while True:
        seen = changes.version
        for record in tail.read_new():
            if record["sequence"] > after_sequence:
                yield engine_pb2.WatchJobResponse(event=events.to_proto(job.job_id, record))
            if record.get("terminal"):
                return
        if not context.is_active():
            return
        if not job.exists():
            raise EngineError(grpc.StatusCode.NOT_FOUND, f"job {job.job_id!r} was destroyed")
        if on_idle is not None:
            on_idle()
        changes.wait(seen, wake)


def fingerprints(
    build: Callable[[], engine_pb2.Fingerprint],
    changes: Changes,
    context: Any,
    wake: float = FINGERPRINT_WAKE_SECONDS,
) -> Iterator[engine_pb2.WatchFingerprintResponse]:
    """WatchFingerprint: one at once, then one on each change that changes it."""
    seen: int | None = None
    sent: engine_pb2.Fingerprint | None = None
    while context.is_active():
        version = changes.version
        if version != seen:
            seen = version
            current = build()
            if current != sent:
                sent = current
                yield engine_pb2.WatchFingerprintResponse(fingerprint=current)
        changes.wait(seen, wake)


def wait_ended(job: JobDir, changes: Changes, timeout: float, wake: float = WATCH_WAKE_SECONDS) -> None:
    """Waits (bounded) until the job has its terminal event or is gone."""
    deadline = time.monotonic() + timeout
    while not job.is_ended() and job.exists():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        changes.wait(changes.version, min(remaining, wake))


def summaries(jobs: Iterable[tuple[JobDir, Record]]) -> list[engine_pb2.JobSummary]:
    """ListJobs' entries for the jobs of the store."""
    found = []
    for job, record in jobs:
        last = job.last_event() or {}
        found.append(
            engine_pb2.JobSummary(
                job_id=job.job_id,
                workflow_id=str(record.get("workflow_id", "")),
                terminal=bool(last.get("terminal", False)),
                status=events.status_of(last.get("status")),
            )
        )
    return found


def stop_wait(grace_seconds: float, slack: float, context: Any) -> float:
    """How long StopJob waits for the job to end: grace plus slack, within the call's deadline."""
    wait = grace_seconds + slack
    remaining = context.time_remaining()
    if remaining is not None:
        wait = min(wait, max(0.0, remaining - 0.5))
    return wait
