"""What consumers read about their jobs: a job's status view, the stages behind it, free-tier usage.

Every function here runs on the database thread (:func:`host.store.runner.run`, or inside a
unit that does). The status view is built for any number of jobs from four queries in all
(stages; then the status events, the complete results and the payments of all of them, each
with one ``IN`` over the same stages), never one query per job: an owner's 1,000 jobs cost
what one did before.

:class:`JobView` is the one account of what a job's status holds; the services turn it into
the wire's ``JobInfo``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host import statuses
from host.payments import states
from host.store.models import Payment, Result, Stage, StageResource, StatusEvent, Workflow, database_proxy

S = common_pb2.JobStatus

# The Stage columns a status view reads (not the spec, the handle or the pod key).
_VIEW_COLUMNS = (
    Stage.job_id,
    Stage.workflow,
    Stage.index,
    Stage.owner,
    Stage.environment_id,
    Stage.status,
    Stage.status_text,
    Stage.terminal,
    Stage.run_after,
    Stage.granted,
    Stage.resources,
    Stage.max_duration_seconds,
    Stage.algorithm_image,
    Stage.created_at,
    Stage.algorithm_started_at,
    Stage.finished_at,
    Stage.results_expire_at,
    Stage.exit_code,
    Stage.queue_limit_seconds,
    Stage.oom_killed,
    Stage.algorithm_finished_at,
    Workflow.metadata,
    Workflow.finished_at,
)


@dataclass(frozen=True, slots=True)
class EventView:
    """One entry of a job's status history."""

    status: common_pb2.JobStatus
    message: str
    time: float


@dataclass(frozen=True, slots=True)
class ResultView:
    """A complete result file of a job (an upload still under way is not one)."""

    index: int
    name: str
    kind: compute_pb2.ResultKind
    size: int
    sha256: str
    archive: bool = False


@dataclass(slots=True)
class JobView:
    """A job's status as consumers see it: the stage, its history, its results, its workflow's payment.

    ``resources`` are the granted ones while the stage holds capacity, else the requested ones.
    ``payment`` is the workflow's payment row, None for a free workflow. ``status`` is
    SETTLING_PAYMENT while the paid workflow has ended and its payment is not settled yet
    (:func:`settling`); the stage keeps its own end, which it reads again once it is.
    """

    job_id: str
    workflow_id: str
    stage_index: int
    owner: str
    environment_id: str
    status: common_pb2.JobStatus
    status_text: str
    terminal: bool
    run_after: list[str]
    resources: list[StageResource]
    max_duration_seconds: int
    algorithm_image: str
    created_at: float
    started_at: float | None  # the algorithm's start
    finished_at: float | None
    results_expire_at: float | None
    exit_code: int | None
    queue_limit_seconds: int | None  # None: queued before stages kept their limit
    oom_killed: bool = False
    algorithm_finished_at: float | None = None
    metadata: dict[str, Any] | None = None  # the start request's (host.metadata)
    workflow_ended: bool = False
    history: list[EventView] = field(default_factory=list)
    results: list[ResultView] = field(default_factory=list)
    payment: Payment | None = None


# -- status views -------------------------------------------------------------------------


def owner_views(owner: str, limit: int) -> list[JobView]:
    """The owner's latest ``limit`` jobs, newest first."""
    chosen = (
        Stage.select(Stage.job_id).where(Stage.owner == owner).order_by(Stage.created_at.desc()).limit(limit)
    )
    query = _select().where(Stage.owner == owner).order_by(Stage.created_at.desc()).limit(limit)
    return _views(query, chosen)


def workflow_views(workflow_id: str) -> list[JobView]:
    """Every job of the workflow, by stage index."""
    chosen = Stage.select(Stage.job_id).where(Stage.workflow == workflow_id)
    query = _select().where(Stage.workflow == workflow_id).order_by(Stage.index)
    return _views(query, chosen)


def active_views(owner: str | None, limit: int) -> list[JobView]:
    """Stages not yet ended (running, queued, waiting), oldest first: everyone's when ``owner`` is None."""
    where = Stage.terminal == False
    if owner is not None:
        where &= Stage.owner == owner
    chosen = Stage.select(Stage.job_id).where(where).order_by(Stage.created_at).limit(limit)
    return _views(_select().where(where).order_by(Stage.created_at).limit(limit), chosen)


def job_views(job_ids: Sequence[str]) -> list[JobView]:
    """The jobs named (those that exist), in the order given."""
    ids = list(dict.fromkeys(job_ids))
    views = {v.job_id: v for v in _views(_select().where(Stage.job_id.in_(ids)), ids)}
    return [views[job_id] for job_id in ids if job_id in views]


def _select() -> pw.ModelSelect[Stage]:
    """The stages' view columns with their workflow's (one join: the metadata, whether it ended)."""
    return Stage.select(*_VIEW_COLUMNS).join(Workflow)


def settling(view: JobView) -> bool:
    """Whether the job's paid workflow has ended and its escrow payment is still to be settled
    (about to be claimed, or its claim in flight): what Ocean's status 71 says."""
    return (
        view.terminal
        and view.workflow_ended
        and view.payment is not None
        and view.payment.status in (states.LOCKED, states.CLAIMING)
    )


def _rows(query: pw.BaseQuery) -> list[tuple[Any, ...]]:
    """The query's rows as the driver returns them: no per-value conversion by peewee, which is
    most of the cost of a long listing (JSON columns and booleans are converted here, by hand)."""
    return database_proxy.execute(query).fetchall()


def _views(query: pw.ModelSelect[Stage], chosen: pw.ModelSelect[Stage] | list[str]) -> list[JobView]:
    """Views of the stages ``query`` selects (``_VIEW_COLUMNS``); ``chosen`` selects the same job ids,
    as a subquery (or a short list), so the three batched reads need no bound parameter per job."""
    views: list[JobView] = []
    by_id: dict[str, JobView] = {}
    loads = json.loads
    for row in _rows(query):
        (job_id, workflow_id, index, owner, env_id, status, status_text, terminal, run_after,
         granted, resources, max_duration, image, created, started, finished, expire, exit_code,
         queue_limit, oom_killed, algorithm_finished, metadata, workflow_finished) = row  # fmt: skip
        view = JobView(
            job_id, workflow_id, index, owner, env_id, status, status_text, bool(terminal), loads(run_after),
            (loads(granted) if granted else None) or loads(resources), max_duration, image, created, started, finished, expire, exit_code,
            queue_limit, bool(oom_killed), algorithm_finished, loads(metadata) if metadata is not None else None, workflow_finished is not None,
        )  # fmt: skip
        views.append(view)
        by_id[job_id] = view
    if not views:
        return views
    events = (
        StatusEvent.select(StatusEvent.stage, StatusEvent.status, StatusEvent.message, StatusEvent.time)
        .where(StatusEvent.stage.in_(chosen))
        .order_by(StatusEvent.id)
    )
    for job_id, status, message, time in _rows(events):
        by_id[job_id].history.append(EventView(status, message, time))
    for job_id, result in _complete_results(chosen):
        by_id[job_id].results.append(result)
    paid = Payment.select().where(
        Payment.workflow_id.in_(Stage.select(Stage.workflow).where(Stage.job_id.in_(chosen)))
    )
    payments = {p.workflow_id: p for p in paid}
    if payments:
        for view in views:
            view.payment = payments.get(view.workflow_id)
            if settling(view):
                view.status, view.status_text = (
                    S.JOB_STATUS_SETTLING_PAYMENT,
                    statuses.name(S.JOB_STATUS_SETTLING_PAYMENT),
                )
    return views


def _complete_results(chosen: pw.ModelSelect[Stage] | list[str]) -> list[tuple[str, ResultView]]:
    query = (
        Result.select(
            Result.stage, Result.index, Result.name, Result.kind, Result.size, Result.sha256, Result.archive
        )
        .where(Result.stage.in_(chosen) & (Result.complete == True))
        .order_by(Result.stage, Result.index)
    )
    return [
        (job_id, ResultView(index, name, kind, size, sha, bool(archive)))
        for job_id, index, name, kind, size, sha, archive in _rows(query)
    ]


def complete_results(job_id: str) -> list[ResultView]:
    """The job's complete results, by index (what a later stage is given of an earlier one)."""
    return [result for _, result in _complete_results([job_id])]


# -- stages and workflows ---------------------------------------------------------------------


def stage(job_id: str) -> Stage | None:
    """The whole stage row, or None."""
    return Stage.get_or_none(Stage.job_id == job_id) if job_id else None


def stage_with_workflow(job_id: str) -> Stage | None:
    """The stage with ``stage.workflow`` loaded (its id, owner, viewers and free flag) in the same query,
    so that reading who may see it never loads the workflow lazily."""
    if not job_id:
        return None
    query = (
        Stage.select(Stage, Workflow.id, Workflow.owner, Workflow.viewers, Workflow.free)
        .join(Workflow)
        .where(Stage.job_id == job_id)
    )
    return query.get_or_none()


def workflow(workflow_id: str) -> Workflow | None:
    """The workflow (without its request), or None."""
    if not workflow_id:
        return None
    query = Workflow.select(
        Workflow.id, Workflow.owner, Workflow.environment_id, Workflow.free, Workflow.viewers,
        Workflow.created_at, Workflow.finished_at,
    ).where(Workflow.id == workflow_id)  # fmt: skip
    return query.get_or_none()


def recent_workflows(owner: str | None, limit: int) -> list[Workflow]:
    """The latest ``limit`` workflows (without their requests), newest first: everyone's when
    ``owner`` is None."""
    query = Workflow.select(
        Workflow.id, Workflow.owner, Workflow.environment_id, Workflow.free, Workflow.viewers,
        Workflow.created_at, Workflow.finished_at,
    )  # fmt: skip
    if owner is not None:
        query = query.where(Workflow.owner == owner)
    return list(query.order_by(Workflow.created_at.desc()).limit(limit))


def workflow_stages(workflow_id: str) -> list[Stage]:
    """The workflow's stages, by index."""
    return list(Stage.select().where(Stage.workflow == workflow_id).order_by(Stage.index))


# -- the free tier ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FreeUsage:
    """Free jobs running or queued in one environment: the consumer's, and everyone's."""

    mine: int
    everyone: int


def free_usage(environment_id: str, owner: str, *, besides: str = "") -> FreeUsage:
    """Free jobs not ended in ``environment_id``, the owner's and everyone's; ``besides`` names a
    workflow not to count (the one being stored, checked in its own transaction). An empty
    ``owner`` (an unsigned caller) has none of its own."""
    active = (
        Stage.select(
            pw.fn.COUNT(Stage.job_id),
            pw.fn.SUM(pw.Case(None, [(Stage.owner == owner, 1)], 0)),
        )
        .join(Workflow)
        .where((Stage.terminal == False) & (Stage.environment_id == environment_id) & (Workflow.free == True))
    )
    if besides:
        active = active.where(Stage.workflow != besides)
    # One row of two aggregates (SUM is NULL when no row matches).
    counts: tuple[int, int | None] = active.scalar(as_tuple=True)
    everyone, mine = counts
    return FreeUsage(mine=int(mine or 0) if owner else 0, everyone=int(everyone or 0))
