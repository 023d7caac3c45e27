"""The escrow payments' rows (``Payment``), and what settling one reads of its workflow.

Run on the database thread (:func:`host.store.runner.run`, or inside a unit that does);
:class:`host.payments.service.Payments` owns the steps, this module only the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from host.store.models import Payment, Stage, StatusEvent, Workflow, database_proxy


def payment(workflow_id: str) -> Payment | None:
    return Payment.get_or_none(Payment.workflow_id == workflow_id)


def create(**fields: Any) -> Payment:
    """A new row (the intent to lock, stored before the lock is sent)."""
    return Payment.create(**fields)


def update(workflow_id: str, fields: dict[str, Any]) -> None:
    Payment.update(**fields).where(Payment.workflow_id == workflow_id).execute()


def recent(payer: str | None, limit: int) -> list[Payment]:
    """The latest ``limit`` payments, newest first: everyone's when ``payer`` is None."""
    query = Payment.select()
    if payer is not None:
        query = query.where(Payment.payer == payer)
    return list(query.order_by(Payment.created_at.desc()).limit(limit))


def settle(workflow_id: str, fields: dict[str, Any], message: str, now: float) -> None:
    """Writes a settled payment's ``fields`` and, in the same transaction, gives each stage of its
    workflow its own end again in its history, with ``message`` (how the payment settled): their
    status read SETTLING_PAYMENT until now (host.store.jobs), and this says it ended, once."""
    with database_proxy.atomic():
        update(workflow_id, fields)
        ended = Stage.select(Stage.job_id, Stage.status).where(Stage.workflow == workflow_id)
        events = [{"stage": s.job_id, "status": s.status, "message": message, "time": now} for s in ended]
        if events:
            StatusEvent.insert_many(events).execute()


def due(statuses: Sequence[str], now: float) -> list[Payment]:
    """Rows in ``statuses`` whose next attempt is due."""
    return list(Payment.select().where(Payment.status.in_(list(statuses)) & (Payment.next_attempt_at <= now)))


@dataclass(frozen=True)
class WorkflowState:
    """What settling a payment reads of its workflow: whether it is still running, and its stages."""

    running: bool  # the workflow exists and has not finished
    stages: list[Stage]


def workflow_state(workflow_id: str) -> WorkflowState:
    """The workflow's state; its stages only once it has ended (or never existed), when they are billed."""
    workflow = (
        Workflow.select(Workflow.id, Workflow.finished_at).where(Workflow.id == workflow_id).get_or_none()
    )
    if workflow is not None and workflow.finished_at is None:
        return WorkflowState(running=True, stages=[])
    return WorkflowState(running=False, stages=list(Stage.select().where(Stage.workflow == workflow_id)))


def statuses_by_lock(lock_ids: Sequence[str]) -> dict[str, str]:
    """The status of each row owning one of ``lock_ids`` (decimal escrow job ids); absent: none owns it."""
    ids = list(lock_ids)
    if not ids:
        return {}
    rows = Payment.select(Payment.lock_id, Payment.status).where(Payment.lock_id.in_(ids))
    return {row.lock_id: row.status for row in rows}
