"""Runs workflows: queues stages, grants capacity, starts them on engines and follows them to the end.

The orchestrator is the single writer of stage status. Engine events and pod
reports are inputs; each applied change is recorded with a timestamp. Every
step is idempotent (StartJob on a job id, events applied once by sequence),
so after the node is killed at any point, :meth:`Orchestrator.recover_engine`
picks each stage up where the database says it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf import json_format

from c2d import auth
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.engine.v1 import engine_pb2
from host import statuses
from host.engines.registry import EngineRegistry
from host.engines.supervisor import EngineSupervisor, SupervisorState
from host.identity import NodeIdentity
from host.orchestrator import capacity, stagespec
from host.orchestrator.validation import StagePlan
from host.results import ResultStore
from host.store.models import Stage, StatusEvent, Workflow, database_proxy

S = common_pb2.JobStatus
log = structlog.get_logger()

SCHEDULE_INTERVAL_SECONDS = 1.0
ALGORITHM_LOG = "algorithm.log"  # the name pods publish it under
STOP_GRACE_SECONDS = 5
UNRECOVERABLE = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
}


def terminal_status(stage: Stage, proposed: int) -> int:
    """The status a stage ends with: the engine proposes, the owner's stop and the pods' reports refine."""
    if stage.stop_requested and proposed != S.JOB_STATUS_FINISHED:
        return S.JOB_STATUS_STOPPED  # whatever the stop looked like on the engine (even a lost start)
    if stage.pod_report is not None and proposed in statuses.POD_REFINED | {S.JOB_STATUS_ALGORITHM_FAILED}:
        return stage.pod_report
    return proposed or S.JOB_STATUS_LOST


def new_workflow_id() -> str:
    return uuid.uuid4().hex


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background step failed", exc_info=task.exception())


class Orchestrator:
    def __init__(
        self,
        engines: EngineRegistry,
        identity: NodeIdentity,
        *,
        max_queue_seconds: float,
        default_storage_expiry_seconds: int,
        results: ResultStore | None = None,
    ) -> None:
        self.engines = engines
        self.results = results
        self.identity = identity
        self.pod_endpoint = ""  # host:port of the PodService, set once it listens
        self.max_queue_seconds = max_queue_seconds
        self.default_storage_expiry_seconds = default_storage_expiry_seconds
        self._wake = asyncio.Event()
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Called with a workflow id once its last stage has ended (payments settle then).
        self.on_workflow_closed: Callable[[str], None] | None = None

    # -- submission --------------------------------------------------------------

    def submit(
        self,
        owner: str,
        workflow: compute_pb2.Workflow,
        plans: list[StagePlan],
        free: bool,
        workflow_id: str | None = None,
    ) -> str:
        """Stores the workflow and its stages in one transaction and wakes the scheduler.

        A paid workflow's id is chosen before its escrow lock is made, and passed here.
        """
        now = time.time()
        workflow_id = workflow_id or new_workflow_id()
        with database_proxy.atomic():
            Workflow.create(
                id=workflow_id,
                owner=owner,
                environment_id=workflow.environment_id or plans[0].environment.id,
                free=free,
                viewers=[v.lower() for v in workflow.viewers],
                request=json_format.MessageToDict(workflow),
                created_at=now,
            )
            for plan in plans:
                status = S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE if plan.run_after else S.JOB_STATUS_QUEUED
                Stage.create(
                    job_id=plan.job_id,
                    workflow=workflow_id,
                    index=plan.index,
                    owner=owner,
                    environment_id=plan.environment.id,
                    engine=plan.engine,
                    status=status,
                    status_text=statuses.name(status),
                    spec=stagespec.encode(plan.stage, plan.allow_network),
                    run_after=plan.run_after,
                    resources=plan.resources,
                    max_duration_seconds=plan.max_duration_seconds,
                    created_at=now,
                    queue_deadline=now + self.max_queue_seconds,
                )
                StatusEvent.create(stage=plan.job_id, status=status, message="accepted", time=now)
        log.info("workflow accepted", workflow_id=workflow_id, owner=owner, stages=len(plans), free=free)
        self._wake.set()
        return workflow_id

    # -- the scheduler -----------------------------------------------------------

    async def run(self) -> None:
        """Schedules until cancelled: on every change, and at least once a second."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SCHEDULE_INTERVAL_SECONDS)
            self._wake.clear()
            try:
                await self._schedule()
            except Exception:
                log.exception("scheduling pass failed")

    def wake(self) -> None:
        self._wake.set()

    async def _schedule(self) -> None:
        now = time.time()
        self._promote_waiting(now)
        self._expire_queue(now)
        queued = (
            Stage.select()
            .where(
                (Stage.terminal == False)
                & (Stage.status == S.JOB_STATUS_QUEUED)
                & Stage.granted.is_null(True)
            )
            .order_by(Stage.created_at, Stage.index)
        )
        full: set[str] = set()  # environments where the oldest waiting stage did not fit
        for stage in queued:
            if stage.environment_id in full:
                continue  # first come, first served: nothing overtakes the stage that waits
            supervisor = self._ready_engine(stage.engine)
            env = self._environment(supervisor, stage.environment_id) if supervisor else None
            if supervisor is None or env is None or stage.stop_requested:
                continue
            if not capacity.try_grant(stage, env, now):
                full.add(stage.environment_id)
                continue
            # StartJob runs beside the scheduler: one slow engine call must not hold up the others.
            self._spawn(self._launch(Stage.get_by_id(stage.job_id), supervisor))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    def _promote_waiting(self, now: float) -> None:
        waiting = Stage.select().where(
            (Stage.terminal == False) & (Stage.status == S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE)
        )
        for stage in waiting:
            before = {row.job_id: row for row in Stage.select().where(Stage.job_id.in_(stage.run_after))}
            failed = [b for b in before.values() if b.terminal and b.status != S.JOB_STATUS_FINISHED]
            if failed:
                self._finish(
                    stage, S.JOB_STATUS_SKIPPED, f"stage it runs after ended: {failed[0].status_text}", now
                )
            elif all(b.status == S.JOB_STATUS_FINISHED for b in before.values()):
                self._record(stage, S.JOB_STATUS_QUEUED, "previous stages finished", now)

    def _expire_queue(self, now: float) -> None:
        expired = Stage.select().where(
            (Stage.terminal == False)
            & (Stage.status == S.JOB_STATUS_QUEUED)
            & Stage.granted.is_null(True)
            & (Stage.queue_deadline < now)
        )
        for stage in expired:
            self._finish(stage, S.JOB_STATUS_QUEUE_EXPIRED, "no capacity became free in time", now)

    def _ready_engine(self, name: str) -> EngineSupervisor | None:
        supervisor = self.engines.supervisors.get(name)
        if supervisor is None or supervisor.state is not SupervisorState.READY or supervisor.stub is None:
            return None
        return supervisor

    @staticmethod
    def _environment(supervisor: EngineSupervisor, env_id: str) -> common_pb2.Environment | None:
        return next((e for e in supervisor.environments() if e.id == env_id), None)

    # -- starting and following a stage -----------------------------------------

    async def _launch(self, stage: Stage, supervisor: EngineSupervisor) -> None:
        bound = log.bind(job_id=stage.job_id, workflow_id=stage.workflow_id, engine=supervisor.name)
        spec = self._job_spec(stage, supervisor)
        try:
            reply = await supervisor.stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=30)  # type: ignore[union-attr]
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
                bound.warning("engine refused the stage", detail=exc.details())
                self._finish(
                    stage, S.JOB_STATUS_CONTAINER_CREATION_FAILED, exc.details() or "refused", time.time()
                )
            else:  # the engine is in trouble: give the capacity back and try again later
                bound.warning("could not start the stage; will retry", code=exc.code().name)
                Stage.update(granted=None, started_at=None).where(Stage.job_id == stage.job_id).execute()
            return
        Stage.update(handle=reply.handle.SerializeToString()).where(Stage.job_id == stage.job_id).execute()
        bound.info("stage started on engine")
        self._follow(stage.job_id, supervisor)
        if Stage.get_by_id(stage.job_id).stop_requested:  # stopped while StartJob was in flight
            await self._request_stop(stage.job_id, supervisor, "stopped by its owner")

    def _job_spec(self, stage: Stage, supervisor: EngineSupervisor) -> engine_pb2.JobSpec:
        stage_pb = stagespec.decode(stage.spec)
        container = stage_pb.algorithm.container
        spec = engine_pb2.JobSpec(
            job_id=stage.job_id,
            workflow_id=stage.workflow_id,
            environment_id=stage.environment_id,
            owner=stage.owner,
            container=engine_pb2.Container(
                image=container.image,
                tag=container.tag,
                digest=container.checksum,
                command=container.entrypoint,
            ),
            resources=capacity.granted_resources(stage.granted),
            max_duration_seconds=stage.max_duration_seconds,
            network=common_pb2.NetworkPolicy(allow_network=stagespec.allows_network(stage.spec)),
            labels={"c2d.workflow": stage.workflow_id, "c2d.stage": str(stage.index)},
        )
        if supervisor.fingerprint is not None and supervisor.fingerprint.capabilities.runs_pods:
            spec.pod.CopyFrom(self._pod_access(stage))
        return spec

    def _pod_access(self, stage: Stage) -> engine_pb2.PodAccess:
        """The stage's own key: created once, kept sealed, handed to the engine on every (re)start."""
        context = stage.job_id.encode()
        if stage.pod_key is None:
            key = auth.new_private_key()
            sealed = self.identity.seal(key.encode(), context)
            Stage.update(pod_key=sealed, pod_address=auth.address_of(key)).where(
                Stage.job_id == stage.job_id
            ).execute()
        else:
            key = self.identity.unseal(stage.pod_key, context).decode()
        return engine_pb2.PodAccess(
            node_peer_id=self.identity.address, node_http_api=self.pod_endpoint, private_key=key
        )

    def _follow(self, job_id: str, supervisor: EngineSupervisor) -> None:
        if job_id in self._followers and not self._followers[job_id].done():
            return
        task = asyncio.create_task(self._watch(job_id, supervisor), name=f"follow-{job_id}")
        self._followers[job_id] = task

    async def _watch(self, job_id: str, supervisor: EngineSupervisor) -> None:
        bound = log.bind(job_id=job_id, engine=supervisor.name)
        stub = supervisor.stub
        if stub is None:
            return
        stage = Stage.get_by_id(job_id)
        call = stub.WatchJob(engine_pb2.WatchJobRequest(job_id=job_id, after_sequence=stage.last_sequence))
        try:
            async for reply in call:
                if self._apply(job_id, reply.event):
                    break
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                self._finish(
                    Stage.get_by_id(job_id),
                    S.JOB_STATUS_LOST,
                    "the engine no longer has the job",
                    time.time(),
                )
            else:  # the engine went away; recover_engine picks the stage up after its restart
                bound.info("stopped following the stage", reason=exc.code().name)
                return
        finally:
            call.cancel()
            self._followers.pop(job_id, None)
        if Stage.get_by_id(job_id).terminal:
            await self._keep_engine_log(job_id, supervisor)
            await self._destroy(job_id, supervisor)

    async def _keep_engine_log(self, job_id: str, supervisor: EngineSupervisor) -> None:
        """A stage whose pods published no algorithm log (stopped, failed while publishing) gets the
        engine's copy, read before the engine cleans up: the log matters most when something went wrong."""
        stage = Stage.get_by_id(job_id)
        if (
            self.results is None
            or stage.algorithm_started_at is None
            or supervisor.stub is None
            or supervisor.fingerprint is None
            or not supervisor.fingerprint.capabilities.log_streaming
            or self.results.exists(stage, ALGORITHM_LOG, compute_pb2.RESULT_KIND_ALGORITHM_LOG)
        ):
            return
        chunks: list[bytes] = []
        request = engine_pb2.StreamJobLogsRequest(job_id=job_id, follow=False)
        try:
            async for reply in supervisor.stub.StreamJobLogs(request, timeout=30):
                chunks.append(reply.data)
        except grpc.aio.AioRpcError as exc:
            log.info("no engine log to keep", job_id=job_id, code=exc.code().name)
            return
        if chunks:
            self.results.store(stage, ALGORITHM_LOG, compute_pb2.RESULT_KIND_ALGORITHM_LOG, b"".join(chunks))
            log.info("kept the engine's algorithm log", job_id=job_id, size=sum(map(len, chunks)))

    def _apply(self, job_id: str, event: engine_pb2.JobEvent) -> bool:
        """Applies one engine event once (by sequence); True when the stage has ended."""
        with database_proxy.atomic():
            stage = Stage.get_by_id(job_id)
            if stage.terminal:
                return True
            if event.sequence <= stage.last_sequence:
                return False
            updates: dict[Any, Any] = {Stage.last_sequence: event.sequence}
            if event.HasField("algorithm_started"):
                updates[Stage.algorithm_started_at] = event.algorithm_started.ToDatetime().timestamp()
            if event.HasField("algorithm_finished"):
                updates[Stage.algorithm_finished_at] = event.algorithm_finished.ToDatetime().timestamp()
            if event.HasField("exit_code"):
                updates[Stage.exit_code] = event.exit_code
            if event.image_digest:
                updates[Stage.algorithm_image] = event.image_digest
            Stage.update(updates).where(Stage.job_id == job_id).execute()
            stage = Stage.get_by_id(job_id)
            now = event.time.ToDatetime().timestamp() if event.HasField("time") else time.time()
            if event.terminal:
                self._finish(stage, terminal_status(stage, event.status), event.message, now)
                return True
            if event.status and event.status != stage.status:
                self._record(stage, event.status, event.message, now)
            return False

    async def _destroy(self, job_id: str, supervisor: EngineSupervisor) -> None:
        if supervisor.stub is None:
            return
        try:
            await supervisor.stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id=job_id), timeout=30)
        except grpc.aio.AioRpcError as exc:
            log.warning("engine could not clean up the stage yet", job_id=job_id, code=exc.code().name)
            return
        Stage.update(destroyed=True).where(Stage.job_id == job_id).execute()

    # -- status changes ----------------------------------------------------------

    def _record(self, stage: Stage, status: int, message: str, now: float) -> None:
        Stage.update(status=status, status_text=statuses.name(status)).where(
            Stage.job_id == stage.job_id
        ).execute()
        StatusEvent.create(stage=stage.job_id, status=status, message=message, time=now)
        log.info(
            "stage status", job_id=stage.job_id, workflow_id=stage.workflow_id, status=statuses.name(status)
        )

    def _finish(self, stage: Stage, status: int, message: str, now: float) -> None:
        """Ends a stage: records the status, frees its capacity, and skips what runs after a failure."""
        expiry = self._storage_expiry(stage)
        with database_proxy.atomic():
            updated = (
                Stage.update(
                    status=status,
                    status_text=statuses.name(status),
                    terminal=True,
                    granted=None,
                    finished_at=now,
                    results_expire_at=now + expiry,
                )
                .where((Stage.job_id == stage.job_id) & (Stage.terminal == False))
                .execute()
            )
            if not updated:
                return
            StatusEvent.create(stage=stage.job_id, status=status, message=message, time=now)
            if status != S.JOB_STATUS_FINISHED:
                self._skip_dependents(stage, now)
            self._close_workflow(stage.workflow_id, now)
        log.info(
            "stage ended",
            job_id=stage.job_id,
            workflow_id=stage.workflow_id,
            status=statuses.name(status),
            message=message,
        )
        self._wake.set()

    def _skip_dependents(self, stage: Stage, now: float) -> None:
        dependents = Stage.select().where((Stage.terminal == False) & (Stage.workflow == stage.workflow_id))
        for dependent in dependents:
            if stage.job_id in dependent.run_after:
                self._finish(dependent, S.JOB_STATUS_SKIPPED, f"stage {stage.index} did not finish", now)

    def _close_workflow(self, workflow_id: str, now: float) -> None:
        open_stages = (
            Stage.select().where((Stage.workflow == workflow_id) & (Stage.terminal == False)).count()
        )
        if not open_stages:
            Workflow.update(finished_at=now).where(Workflow.id == workflow_id).execute()
            if self.on_workflow_closed is not None:
                self.on_workflow_closed(workflow_id)

    def _storage_expiry(self, stage: Stage) -> float:
        supervisor = self.engines.supervisors.get(stage.engine)
        env = self._environment(supervisor, stage.environment_id) if supervisor else None
        return float((env.storage_expiry_seconds if env else 0) or self.default_storage_expiry_seconds)

    # -- pods --------------------------------------------------------------------

    def pod_phase(self, stage: Stage, status: int | None, failure: int | None, message: str) -> None:
        """A pod's report: failures refine the engine's terminal status; progress is recorded."""
        if failure is not None:
            Stage.update(pod_report=failure).where(Stage.job_id == stage.job_id).execute()
            StatusEvent.create(stage=stage.job_id, status=failure, message=message, time=time.time())
            return
        if status is not None and status != stage.status:
            self._record(stage, status, message, time.time())

    # -- stopping ----------------------------------------------------------------

    async def stop_workflow(self, workflow_id: str, reason: str) -> None:
        await self.stop(list(Stage.select().where(Stage.workflow == workflow_id)), reason)

    async def stop(self, stages: list[Stage], reason: str) -> None:
        """Stops the stages; one that runs after another being stopped is skipped when that one ends."""
        stopping = {stage.job_id for stage in stages}
        for stage in stages:
            if stage.terminal or stopping.intersection(stage.run_after):
                continue
            Stage.update(stop_requested=True).where(Stage.job_id == stage.job_id).execute()
            if stage.granted is None:  # not on an engine yet
                self._finish(stage, S.JOB_STATUS_STOPPED, reason, time.time())
                continue
            supervisor = self._ready_engine(stage.engine)
            if supervisor is not None:
                await self._request_stop(stage.job_id, supervisor, reason)

    async def _request_stop(self, job_id: str, supervisor: EngineSupervisor, reason: str) -> None:
        request = engine_pb2.StopJobRequest(job_id=job_id, grace_seconds=STOP_GRACE_SECONDS, reason=reason)
        try:
            await supervisor.stub.StopJob(request, timeout=STOP_GRACE_SECONDS + 30)  # type: ignore[union-attr]
        except grpc.aio.AioRpcError as exc:
            log.warning("stop request failed; retried on recovery", job_id=job_id, code=exc.code().name)

    # -- recovery ----------------------------------------------------------------

    async def recover_engine(self, supervisor: EngineSupervisor) -> None:
        """After the engine (or the node) started: re-attach every stage the database has on it."""
        active = Stage.select().where(
            (Stage.engine == supervisor.name) & (Stage.terminal == False) & Stage.granted.is_null(False)
        )
        for stage in active:
            await self._recover_stage(stage, supervisor)
        leftovers = Stage.select().where(
            (Stage.engine == supervisor.name) & (Stage.terminal == True) & (Stage.destroyed == False)
        )
        for stage in leftovers:
            await self._destroy(stage.job_id, supervisor)
        await self._remove_orphans(supervisor)
        self._wake.set()

    async def _recover_stage(self, stage: Stage, supervisor: EngineSupervisor) -> None:
        bound = log.bind(job_id=stage.job_id, workflow_id=stage.workflow_id, engine=supervisor.name)
        if stage.handle is None:  # killed between the grant and StartJob's answer: StartJob is idempotent
            bound.info("restarting a stage whose start was cut off")
            await self._launch(stage, supervisor)
            return
        handle = engine_pb2.JobHandle.FromString(stage.handle)
        try:
            reply = await supervisor.stub.RecoverJob(engine_pb2.RecoverJobRequest(handle=handle), timeout=30)  # type: ignore[union-attr]
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in UNRECOVERABLE:
                raise
            bound.warning("engine lost the stage", detail=exc.details())
            self._finish(stage, S.JOB_STATUS_LOST, "the engine lost the job", time.time())
            return
        Stage.update(handle=reply.handle.SerializeToString()).where(Stage.job_id == stage.job_id).execute()
        bound.info("re-attached stage", last_sequence=stage.last_sequence)
        if stage.stop_requested:
            await self._request_stop(stage.job_id, supervisor, "stopped by its owner")
        self._follow(stage.job_id, supervisor)

    async def _remove_orphans(self, supervisor: EngineSupervisor) -> None:
        """Jobs the engine runs for this node that the database does not know (or has let go of)."""
        try:
            listing = await supervisor.stub.ListJobs(engine_pb2.ListJobsRequest(), timeout=30)  # type: ignore[union-attr]
        except grpc.aio.AioRpcError:
            return
        known = {
            s.job_id
            for s in Stage.select(Stage.job_id).where(Stage.job_id.in_([j.job_id for j in listing.jobs]))
        }
        for job in listing.jobs:
            if job.job_id not in known:
                log.warning("removing orphaned job", job_id=job.job_id, engine=supervisor.name)
                await self._destroy(job.job_id, supervisor)

    async def close(self) -> None:
        tasks = [*self._followers.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
