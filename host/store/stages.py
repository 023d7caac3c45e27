"""The orchestrator's database work: storing workflows, scheduling, applying engine events, ending stages.

Every public function here is one unit for :func:`host.store.runner.run`: it
runs on the database thread, in one transaction, and is atomic with respect to
every other unit (a read-modify-write never interleaves with another). The
orchestrator on the event loop only calls these and acts on what they return:
the stages to launch, the stages that ended, the workflows that closed.

The rules of a stage's life live here, in one place:

- engine events apply once, by sequence (a replay after a restart changes nothing);
- a stage ends once (the UPDATE is guarded by ``terminal = false``), with the status
  :func:`terminal_status` decides, and its capacity is freed in the same write;
- a stage that did not finish skips every stage that runs after it, transitively;
- a workflow closes when its last stage has ended.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypedDict

import peewee as pw

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from host import statuses
from host.orchestrator.capacity import Fit, Ledger, PoolKey, pool_key, pool_members
from host.store.models import Stage, StageResource, StatusEvent, Workflow, database_proxy

S = common_pb2.JobStatus
SETTLING_MESSAGE = "the workflow has ended: its escrow payment is being settled"


def terminal_status(stage: Stage, proposed: int) -> int:
    """The status a stage ends with: the engine proposes, the owner's stop and the pods' reports refine."""
    if stage.stop_requested and proposed != S.JOB_STATUS_FINISHED:
        return S.JOB_STATUS_STOPPED  # whatever the stop looked like on the engine (even a lost start)
    if stage.pod_report is not None and proposed in statuses.POD_REFINED | {S.JOB_STATUS_ALGORITHM_FAILED}:
        return stage.pod_report
    return proposed or S.JOB_STATUS_LOST


def _writing() -> AbstractContextManager[Any]:
    """A transaction that writes: on SQLite it takes the write lock up front (BEGIN IMMEDIATE), so
    that while other connections still write (code not yet on the database thread, other
    threads) it waits its turn (busy_timeout) instead of failing with "database is locked" when
    a read transaction cannot be upgraded."""
    db = database_proxy.obj
    if isinstance(db, pw.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return database_proxy.atomic()


# -- what crosses to the database thread and back ------------------------------------


@dataclass(frozen=True)
class Terms:
    """What the database thread needs to know of the environments, read on the loop before a unit.

    ``environments``: (engine, environment id) -> the environment, for every environment of
    an engine that is ready now (only these grant capacity).
    """

    environments: Mapping[tuple[str, str], common_pb2.Environment]
    default_storage_expiry_seconds: float

    def environment(self, engine: str, environment_id: str) -> common_pb2.Environment | None:
        return self.environments.get((engine, environment_id))

    def storage_expiry(self, engine: str, environment_id: str) -> float:
        """Seconds an ended stage's results are kept."""
        env = self.environments.get((engine, environment_id))
        return float((env.storage_expiry_seconds if env else 0) or self.default_storage_expiry_seconds)


@dataclass(frozen=True)
class NewStage:
    job_id: str
    index: int
    environment_id: str
    engine: str
    status: int  # queued, or waiting for the stages it runs after
    spec: Any  # the c2d.compute.v1.Stage as JSON (host.orchestrator.stagespec)
    run_after: list[str]
    resources: list[StageResource]
    max_duration_seconds: int
    queue_limit_seconds: int  # the longest it may wait for capacity once queued


@dataclass(frozen=True)
class NewWorkflow:
    id: str
    owner: str
    environment_id: str
    free: bool
    viewers: list[str]
    created_at: float
    stages: list[NewStage]
    metadata: dict[str, Any] | None = None  # the start request's (host.metadata)


@dataclass(frozen=True)
class Ended:
    """A stage that ended in a unit (with its times, for the node's metrics)."""

    job_id: str
    workflow_id: str
    status: int
    message: str
    environment_id: str = ""
    created_at: float = 0.0
    started_at: float | None = None  # granted capacity
    finished_at: float = 0.0
    algorithm_started_at: float | None = None
    algorithm_finished_at: float | None = None


@dataclass(frozen=True)
class Recorded:
    """A status change (not an end) recorded in a unit."""

    job_id: str
    workflow_id: str
    status: int
    environment_id: str = ""


@dataclass
class Changes:
    """What a unit changed that the loop acts on: log lines, the workflows to announce, a scheduler wake."""

    ended: list[Ended] = field(default_factory=list)
    recorded: list[Recorded] = field(default_factory=list)
    closed_workflows: list[str] = field(default_factory=list)


@dataclass
class Scheduled:
    """A scheduling pass: the stages granted capacity (to start on their engines), and what it ended."""

    granted: list[Stage]
    changes: Changes


@dataclass
class Applied:
    """An event burst: per event, whether its stage has ended (its follower stops); and what changed."""

    ended: list[bool]
    changes: Changes


@dataclass
class StopPlan:
    """Stages asked to stop: those on an engine (job id, engine) get StopJob; the others ended here."""

    on_engines: list[tuple[str, str]]
    changes: Changes


class _EventRow(TypedDict):
    """A StatusEvent row as the unit inserts it (``StatusEvent.insert_many``)."""

    stage: str  # the job id
    status: int
    message: str
    time: float


class _Unit:
    """One unit's working state: the status events to insert at the end, the changes, rows read."""

    def __init__(self, terms: Terms | None) -> None:
        self.terms = terms
        self.changes = Changes()
        self.events: list[_EventRow] = []
        self.rows: dict[str, Stage] = {}  # stages this unit holds in memory (kept current as it writes)

    def event(self, job_id: str, status: int, message: str, now: float) -> None:
        self.events.append({"stage": job_id, "status": status, "message": message, "time": now})

    def flush(self) -> Changes:
        if self.events:
            StatusEvent.insert_many(self.events).execute()
            self.events = []
        return self.changes

    def expiry(self, stage: Stage) -> float:
        assert self.terms is not None, "a unit that ends stages needs the environments' terms"
        return self.terms.storage_expiry(stage.engine, stage.environment_id)


# -- status changes (inside a unit) ----------------------------------------------------


def _record(unit: _Unit, stage: Stage, status: int, message: str, now: float, **fields: Any) -> None:
    Stage.update(status=status, status_text=statuses.name(status), **fields).where(
        Stage.job_id == stage.job_id
    ).execute()
    stage.status, stage.status_text = status, statuses.name(status)
    unit.event(stage.job_id, status, message, now)
    unit.changes.recorded.append(Recorded(stage.job_id, stage.workflow_id, status, stage.environment_id))


def _finish(unit: _Unit, stage: Stage, status: int, message: str, now: float, **fields: Any) -> bool:
    """Ends a stage once: records the status, frees its capacity, skips what runs after a failure."""
    values = {
        "status": status,
        "status_text": statuses.name(status),
        "terminal": True,
        "granted": None,
        "finished_at": now,
        "results_expire_at": now + unit.expiry(stage),
        **fields,
    }
    updated = (
        Stage.update({getattr(Stage, name): value for name, value in values.items()})
        .where((Stage.job_id == stage.job_id) & (Stage.terminal == False))
        .execute()
    )
    if not updated:
        stage.terminal = True  # it had ended before (this row was read earlier)
        return False
    for name, value in values.items():
        setattr(stage, name, value)
    unit.event(stage.job_id, status, message, now)
    unit.changes.ended.append(
        Ended(
            stage.job_id,
            stage.workflow_id,
            status,
            message,
            environment_id=stage.environment_id,
            created_at=stage.created_at,
            started_at=stage.started_at,
            finished_at=now,
            algorithm_started_at=stage.algorithm_started_at,
            algorithm_finished_at=stage.algorithm_finished_at,
        )
    )
    if status != S.JOB_STATUS_FINISHED:
        _skip_dependents(unit, stage, now)
    _close_workflow(unit, stage.workflow_id, now)
    return True


def _skip_dependents(unit: _Unit, stage: Stage, now: float) -> None:
    dependents = Stage.select().where((Stage.terminal == False) & (Stage.workflow == stage.workflow_id))
    for row in dependents:
        if stage.job_id in row.run_after:
            dependent = unit.rows.get(row.job_id, row)
            _finish(unit, dependent, S.JOB_STATUS_SKIPPED, f"stage {stage.index} did not finish", now)


def _close_workflow(unit: _Unit, workflow_id: str, now: float) -> None:
    open_stages = Stage.select().where((Stage.workflow == workflow_id) & (Stage.terminal == False)).count()
    if open_stages:
        return
    # Once: a stage that skips the ones after it closes the workflow in the innermost _finish.
    closed = (
        Workflow.update(finished_at=now)
        .where((Workflow.id == workflow_id) & Workflow.finished_at.is_null(True))
        .execute()
    )
    if not closed:
        return
    unit.changes.closed_workflows.append(workflow_id)
    if not Workflow.select(Workflow.free).where(Workflow.id == workflow_id).scalar():
        _settling(unit, workflow_id, now)


def _settling(unit: _Unit, workflow_id: str, now: float) -> None:
    """A paid workflow has ended: each of its stages' histories says its payment is being settled
    (its status reads so until then, see host.store.jobs; host.store.payments records the end)."""
    for stage in Stage.select(Stage.job_id).where(Stage.workflow == workflow_id):
        unit.event(stage.job_id, S.JOB_STATUS_SETTLING_PAYMENT, SETTLING_MESSAGE, now)


def _hold(unit: _Unit, rows: list[Stage]) -> list[Stage]:
    for row in rows:
        unit.rows[row.job_id] = row
    return rows


# -- submission ------------------------------------------------------------------------


def store_workflow(new: NewWorkflow, then: Callable[[], object] | None = None) -> None:
    """Stores the workflow, its stages and their first status events in one transaction.

    ``then`` runs inside the same transaction (a paid workflow records its escrow lock with it).
    """
    with _writing():
        Workflow.insert(
            id=new.id,
            owner=new.owner,
            environment_id=new.environment_id,
            free=new.free,
            viewers=new.viewers,
            created_at=new.created_at,
            metadata=new.metadata,
        ).execute()
        Stage.insert_many(
            [
                {
                    "job_id": s.job_id,
                    "workflow": new.id,
                    "index": s.index,
                    "owner": new.owner,
                    "environment_id": s.environment_id,
                    "engine": s.engine,
                    "status": s.status,
                    "status_text": statuses.name(s.status),
                    "spec": s.spec,
                    "run_after": s.run_after,
                    "resources": s.resources,
                    "max_duration_seconds": s.max_duration_seconds,
                    "created_at": new.created_at,
                    "queue_limit_seconds": s.queue_limit_seconds,
                    **_queue_times(s.status, new.created_at, s.queue_limit_seconds),
                }
                for s in new.stages
            ]
        ).execute()
        StatusEvent.insert_many(
            [
                {"stage": s.job_id, "status": s.status, "message": "accepted", "time": new.created_at}
                for s in new.stages
            ]
        ).execute()
        if then is not None:
            then()


def _queue_times(status: int, now: float, limit: int | None) -> dict[str, float | None]:
    """When a stage entered the queue for capacity and when it expires there: from ``now`` for a
    queued stage; none yet for one waiting for the stages it runs after (set once they finished)."""
    if status != S.JOB_STATUS_QUEUED or limit is None:
        return {}
    return {"queued_at": now, "queue_deadline": now + limit}


# -- the scheduler ---------------------------------------------------------------------


def schedule(now: float, terms: Terms) -> Scheduled:
    """One scheduling pass: promotes or skips waiting stages, expires the queue, grants capacity.

    Grants go first come, first served per environment: once the oldest queued stage of an
    environment does not fit, nothing younger in that environment overtakes it; and once the
    oldest stage that its environment could take does not fit in the environment's pool,
    nothing younger in any environment of that pool overtakes it.
    """
    with _writing():
        unit = _Unit(terms)
        _promote_waiting(unit, now)
        _expire_queue(unit, now)
        queued = (
            Stage.select(
                Stage.job_id, Stage.engine, Stage.environment_id, Stage.resources, Stage.stop_requested
            )
            .where(
                (Stage.terminal == False)
                & (Stage.status == S.JOB_STATUS_QUEUED)
                & Stage.granted.is_null(True)
            )
            .order_by(Stage.created_at, Stage.index)
        )
        ledger: Ledger | None = None
        full: set[str] = set()  # environments where the oldest waiting stage did not fit
        full_pools: set[PoolKey] = (
            set()
        )  # pools where the oldest stage its environment could take did not fit
        granted: list[str] = []
        for stage in queued:
            if stage.environment_id in full:
                continue  # first come, first served: nothing overtakes the stage that waits
            env = terms.environment(stage.engine, stage.environment_id)
            if env is None or stage.stop_requested:
                continue
            pool = pool_key(env)
            if pool is not None and pool in full_pools:
                continue
            ledger = ledger or Ledger.load(pool_members(terms.environments.values()))
            fit = ledger.try_grant(stage, env, now)
            if fit is Fit.ENVIRONMENT_FULL:
                full.add(stage.environment_id)
            elif fit is Fit.POOL_FULL and pool is not None:
                full_pools.add(pool)
            elif fit is Fit.FITS:
                granted.append(stage.job_id)
        rows = {s.job_id: s for s in Stage.select().where(Stage.job_id.in_(granted))} if granted else {}
        return Scheduled([rows[job_id] for job_id in granted], unit.flush())


def _promote_waiting(unit: _Unit, now: float) -> None:
    """Waiting stages whose previous stages all finished are queued; one whose previous stage failed is skipped."""
    waiting = _hold(
        unit,
        list(
            Stage.select().where(
                (Stage.terminal == False) & (Stage.status == S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE)
            )
        ),
    )
    if not waiting:
        return
    needed = {job_id for stage in waiting for job_id in stage.run_after}
    before = {
        row.job_id: row
        for row in Stage.select(Stage.job_id, Stage.terminal, Stage.status, Stage.status_text).where(
            Stage.job_id.in_(list(needed))
        )
    }
    for stage in waiting:
        if stage.terminal:
            continue  # skipped just now, with a stage it runs after
        previous = [before[job_id] for job_id in stage.run_after if job_id in before]
        failed = [b for b in previous if b.terminal and b.status != S.JOB_STATUS_FINISHED]
        if failed:
            _finish(
                unit, stage, S.JOB_STATUS_SKIPPED, f"stage it runs after ended: {failed[0].status_text}", now
            )
        elif all(b.status == S.JOB_STATUS_FINISHED for b in previous):
            times = _queue_times(S.JOB_STATUS_QUEUED, now, stage.queue_limit_seconds)
            _record(unit, stage, S.JOB_STATUS_QUEUED, "previous stages finished", now, **times)


def _expire_queue(unit: _Unit, now: float) -> None:
    expired = Stage.select().where(
        (Stage.terminal == False)
        & (Stage.status == S.JOB_STATUS_QUEUED)
        & Stage.granted.is_null(True)
        & (Stage.queue_deadline < now)
    )
    for stage in _hold(unit, list(expired)):
        _finish(unit, stage, S.JOB_STATUS_QUEUE_EXPIRED, expiry_message(stage, now), now)


def expiry_message(stage: Stage, now: float) -> str:
    """Why a stage expired in the queue, in the consumer's terms: how long it waited, and its limit."""
    queued_at = stage.queued_at if stage.queued_at is not None else stage.created_at
    waited = f"waited {now - queued_at:.0f} s in the queue without capacity becoming free"
    if stage.queue_limit_seconds is None:  # queued before stages kept their limit
        return waited
    return f"{waited}; its queue limit is {stage.queue_limit_seconds} s"


@dataclass(frozen=True)
class Counted:
    """The stages not ended, counted for the node's metrics (host.metrics.Census).

    ``stages``: (environment id, status) -> count; ``queued``: environment id -> stages waiting for
    capacity; ``granted``: (environment id, resource id) -> amount the stages hold."""

    stages: dict[tuple[str, int], int]
    queued: dict[str, int]
    granted: dict[tuple[str, str], float]


def count_stages() -> Counted:
    """Reads only, in one snapshot: the stages not ended by environment and status, and their grants."""
    with database_proxy.atomic():
        n = pw.fn.COUNT(Stage.job_id)
        by_status = (
            Stage.select(Stage.environment_id, Stage.status, n)
            .where(Stage.terminal == False)
            .group_by(Stage.environment_id, Stage.status)
        )
        # Executed as tuples (what iterating the query runs), as host.environments does.
        counted: Iterable[tuple[str, int, int]] = by_status.tuples().execute()
        stages = {(environment_id, status): count for environment_id, status, count in counted}
        waiting = (
            Stage.select(Stage.environment_id, n)
            .where(
                (Stage.terminal == False)
                & (Stage.status == S.JOB_STATUS_QUEUED)
                & Stage.granted.is_null(True)
            )
            .group_by(Stage.environment_id)
        )
        waiting_counted: Iterable[tuple[str, int]] = waiting.tuples().execute()
        queued = dict(waiting_counted)
        return Counted(stages, queued, Ledger.load().amounts())


# -- starting a stage ------------------------------------------------------------------


def keep_pod_key(job_id: str, sealed: bytes, address: str) -> None:
    """Stores a stage's new pod key (sealed) before any engine is handed it."""
    Stage.update(pod_key=sealed, pod_address=address).where(Stage.job_id == job_id).execute()


def release_grant(job_id: str) -> None:
    """The engine could not take the stage now: its capacity goes back, and it queues again."""
    Stage.update(granted=None, started_at=None).where(Stage.job_id == job_id).execute()


def start_crash_message(crashes: int) -> str:
    return f"the engine crashed {crashes} times starting this stage; not retried"


def start_crashed(job_id: str, limit: int, now: float, terms: Terms) -> Changes:
    """The engine process died while StartJob of the stage was unanswered: the crash is counted;
    at ``limit`` the stage ends (its capacity freed; never having run, it costs nothing), before
    that its capacity goes back and it queues again, as when the engine is merely unavailable."""
    with _writing():
        unit = _Unit(terms)
        stage = Stage.get_or_none((Stage.job_id == job_id) & (Stage.terminal == False))
        if stage is None:
            return unit.flush()
        crashes = stage.start_crashes + 1
        Stage.update(start_crashes=crashes).where(Stage.job_id == job_id).execute()
        stage.start_crashes = crashes
        if crashes >= limit:
            _finish(unit, stage, S.JOB_STATUS_CONTAINER_CREATION_FAILED, start_crash_message(crashes), now)
        else:
            Stage.update(granted=None, started_at=None).where(Stage.job_id == job_id).execute()
        return unit.flush()


def record_handle(job_id: str, handle: engine_pb2.JobHandle) -> Stage:
    """Stores the engine's handle of a started or re-attached stage; returns the stage as it is now."""
    with _writing():
        Stage.update(handle=handle.SerializeToString()).where(Stage.job_id == job_id).execute()
        return Stage.get_by_id(job_id)


def end_stage(job_id: str, status: int, message: str, now: float, terms: Terms) -> Changes:
    """Ends a stage the engine refused or lost (once: nothing happens if it has ended already)."""
    with _writing():
        unit = _Unit(terms)
        stage = Stage.get_or_none(Stage.job_id == job_id)
        if stage is not None:
            _finish(unit, stage, status, message, now)
        return unit.flush()


def ended_stage(job_id: str) -> Stage | None:
    """The stage if it has ended (its follower then keeps its log and has the engine clean up)."""
    return Stage.get_or_none((Stage.job_id == job_id) & (Stage.terminal == True))


def mark_destroyed(job_id: str) -> None:
    """The engine has removed everything the stage left."""
    Stage.update(destroyed=True).where(Stage.job_id == job_id).execute()


# -- engine events ---------------------------------------------------------------------


def apply_events(events: Sequence[tuple[str, engine_pb2.JobEvent]], terms: Terms) -> Applied:
    """Applies a burst of engine events (job id, event) in one transaction, each once by sequence."""
    with _writing():
        unit = _Unit(terms)
        ids = list({job_id for job_id, _ in events})
        _hold(unit, list(Stage.select().where(Stage.job_id.in_(ids))))
        ended = [_apply(unit, job_id, event) for job_id, event in events]
        return Applied(ended, unit.flush())


def _apply(unit: _Unit, job_id: str, event: engine_pb2.JobEvent) -> bool:
    stage = unit.rows.get(job_id)
    if stage is None or stage.terminal:
        return True
    if event.sequence <= stage.last_sequence:
        return False
    fields: dict[str, Any] = {"last_sequence": event.sequence}
    if event.HasField("algorithm_started"):
        fields["algorithm_started_at"] = event.algorithm_started.ToDatetime().timestamp()
    if event.HasField("algorithm_finished"):
        fields["algorithm_finished_at"] = event.algorithm_finished.ToDatetime().timestamp()
    if event.build_seconds > 0:
        fields["build_seconds"] = event.build_seconds
    if event.HasField("exit_code"):
        fields["exit_code"] = event.exit_code
    if event.oom_killed:
        fields["oom_killed"] = True
    if event.image_digest:
        fields["algorithm_image"] = event.image_digest
    for name, value in fields.items():
        setattr(stage, name, value)
    now = event.time.ToDatetime().timestamp() if event.HasField("time") else time.time()
    if event.terminal:
        _finish(unit, stage, terminal_status(stage, event.status), event.message, now, **fields)
        return True
    if event.status and event.status != stage.status:
        _record(unit, stage, event.status, event.message, now, **fields)
    else:
        Stage.update(fields).where(Stage.job_id == job_id).execute()
    return False


# -- pods ------------------------------------------------------------------------------


def pod_report(job_id: str, status: int | None, failure: int | None, message: str, now: float) -> Changes:
    """A pod's report on a stage that has not ended: a failure refines the engine's terminal status
    (kept for :func:`terminal_status`); progress is recorded when it changes the status."""
    with _writing():
        unit = _Unit(None)
        stage = Stage.get_or_none((Stage.job_id == job_id) & (Stage.terminal == False))
        if stage is None:
            return unit.changes
        if failure is not None:
            Stage.update(pod_report=failure).where(Stage.job_id == job_id).execute()
            unit.event(job_id, failure, message, now)
        elif status is not None and status != stage.status:
            _record(unit, stage, status, message, now)
        return unit.flush()


# -- stopping --------------------------------------------------------------------------


def request_stop(
    job_ids: Sequence[str] | None, workflow_id: str | None, reason: str, now: float, terms: Terms
) -> StopPlan:
    """Marks the stages (by id, or a whole workflow) stopped by their owner.

    One not yet on an engine ends here as stopped; the ones on an engine are returned for StopJob
    (their end comes as the engine's event). A stage that runs after another being stopped is left
    alone: it is skipped when that one ends.
    """
    with _writing():
        unit = _Unit(terms)
        if workflow_id is not None:
            rows = list(Stage.select().where(Stage.workflow == workflow_id).order_by(Stage.index))
        else:
            found = {s.job_id: s for s in Stage.select().where(Stage.job_id.in_(list(job_ids or [])))}
            rows = [found[job_id] for job_id in dict.fromkeys(job_ids or []) if job_id in found]
        _hold(unit, rows)
        stopping = {stage.job_id for stage in rows}
        on_engines: list[tuple[str, str]] = []
        for stage in rows:
            if stage.terminal or stopping.intersection(stage.run_after):
                continue
            Stage.update(stop_requested=True).where(Stage.job_id == stage.job_id).execute()
            stage.stop_requested = True
            if stage.granted is None:  # not on an engine yet
                _finish(unit, stage, S.JOB_STATUS_STOPPED, reason, now)
            else:
                on_engines.append((stage.job_id, stage.engine))
        return StopPlan(on_engines, unit.flush())


# -- recovery --------------------------------------------------------------------------


@dataclass
class OnEngine:
    """What the database has on an engine that (re)started."""

    active: list[Stage]  # not ended, holding capacity: re-attach (or start again)
    leftovers: list[str]  # ended, not yet cleaned up on the engine: destroy


def on_engine(engine: str) -> OnEngine:
    with database_proxy.atomic():  # reads only: one snapshot
        active = list(
            Stage.select().where(
                (Stage.engine == engine) & (Stage.terminal == False) & Stage.granted.is_null(False)
            )
        )
        leftovers = [
            s.job_id
            for s in Stage.select(Stage.job_id).where(
                (Stage.engine == engine) & (Stage.terminal == True) & (Stage.destroyed == False)
            )
        ]
        return OnEngine(active, leftovers)


def known_job_ids(job_ids: Sequence[str]) -> set[str]:
    """The ids among ``job_ids`` that are stages of this node."""
    return {s.job_id for s in Stage.select(Stage.job_id).where(Stage.job_id.in_(list(job_ids)))}
