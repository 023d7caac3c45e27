"""How many stages each environment runs and queues, per tier: what ``GetEnvironments`` shows.

One query per listing, on the (terminal, environment_id) index; it runs on the database thread
(:func:`host.store.runner.run`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import peewee as pw

from c2d.common.v1 import common_pb2
from host.store.models import Stage, Workflow

S = common_pb2.JobStatus


@dataclass
class QueueCount:
    """The stages of one tier waiting for capacity, and when the first of them was queued."""

    queued: int = 0
    first_queued_at: float | None = None

    def add(self, count: int, first: float | None) -> None:
        self.queued += count
        if first is not None and (self.first_queued_at is None or first < self.first_queued_at):
            self.first_queued_at = first


@dataclass
class EnvironmentCounts:
    """An environment's stages that have not ended: holding capacity, and waiting for it per tier."""

    running: int = 0
    free: QueueCount = field(default_factory=QueueCount)
    paid: QueueCount = field(default_factory=QueueCount)


def environment_counts() -> dict[str, EnvironmentCounts]:
    """Per environment id: the stages holding capacity, and per tier the stages queued for it.

    A stage waiting for the stages it runs after is neither: it does not ask for capacity yet.
    A stage queued before its queue time was kept counts from its acceptance.
    """
    holding = Stage.granted.is_null(False)
    waiting = (Stage.status == S.JOB_STATUS_QUEUED) & Stage.granted.is_null(True)
    query = (
        Stage.select(
            Stage.environment_id,
            Workflow.free,
            pw.fn.SUM(pw.Case(None, [(holding, 1)], 0)),
            pw.fn.SUM(pw.Case(None, [(waiting, 1)], 0)),
            pw.fn.MIN(pw.Case(None, [(waiting, pw.fn.COALESCE(Stage.queued_at, Stage.created_at))], None)),
        )
        .join(Workflow, on=Stage.workflow == Workflow.id)
        .where(Stage.terminal == False)
        .group_by(Stage.environment_id, Workflow.free)
    )
    # Executed as tuples (what iterating the query runs); a SUM over no matching row is NULL.
    rows: Iterable[tuple[str, bool, int | None, int | None, float | None]] = query.tuples().execute()
    counted: dict[str, EnvironmentCounts] = {}
    for environment_id, free, running, queued, first in rows:
        env = counted.setdefault(environment_id, EnvironmentCounts())
        env.running += int(running or 0)
        (env.free if free else env.paid).add(int(queued or 0), first)
    return counted
