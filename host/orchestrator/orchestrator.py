"""Runs workflows: queues stages, grants capacity, starts them on engines and follows them to the end.

The orchestrator is the single writer of stage status. Engine events and pod
reports are inputs; each applied change is recorded with a timestamp. Every
step is idempotent (StartJob on a job id, events applied once by sequence),
so after the node is killed at any point, :meth:`Orchestrator.recover_engine`
picks each stage up where the database says it was.

No query runs on the event loop: the database work of each step is one unit
of :mod:`host.store.stages`, run on the database thread (:mod:`host.store.runner`).
The engine events of all followed stages are applied in bursts: the followers
feed one queue, and one applier task applies everything queued in one unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog

from c2d import auth
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.engine.v1 import engine_pb2
from host import registryauth, statuses
from host.engines.client import EngineError, EngineRefused, JobNotFound
from host.engines.registry import EngineRegistry
from host.engines.supervisor import EngineSupervisor, SupervisorState
from host.environments import EnvironmentCatalog
from host.errors import RequestError
from host.identity import NodeIdentity
from host.metrics import Census, NodeMetrics, status_label
from host.orchestrator import capacity, stagespec
from host.orchestrator.validation import StagePlan
from host.results import ResultStore
from host.store import runner, stages
from host.store.models import Stage
from host.store.stages import Changes, terminal_status

__all__ = ["Orchestrator", "new_workflow_id", "terminal_status"]

S = common_pb2.JobStatus
log = structlog.get_logger()

SCHEDULE_INTERVAL_SECONDS = 1.0
ALGORITHM_LOG = "algorithm.log"  # the name pods publish it under
STOP_GRACE_SECONDS = 5
MAX_BURST = 512  # engine events applied in one unit at most
CENSUS_INTERVAL_SECONDS = 1.0  # the metrics' count of stages is this fresh at worst
DEFAULT_MAX_START_CRASHES = 3  # [compute] max_start_crashes


def new_workflow_id() -> str:
    return uuid.uuid4().hex


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background step failed", exc_info=task.exception())


Pending = tuple[str, engine_pb2.JobEvent, "asyncio.Future[bool]"]


class Orchestrator:
    def __init__(
        self,
        engines: EngineRegistry,
        environments: EnvironmentCatalog,
        identity: NodeIdentity,
        *,
        pod_endpoint: str,
        default_storage_expiry_seconds: int,
        results: ResultStore | None = None,
        on_workflow_closed: Callable[[str], None] | None = None,
        metrics: NodeMetrics | None = None,
        max_start_crashes: int = DEFAULT_MAX_START_CRASHES,
    ) -> None:
        """``pod_endpoint``: host:port of the PodService, handed to every stage's pods.
        ``on_workflow_closed``: called with a workflow id once its last stage has ended (payments
        settle then). ``metrics``: the node's (a registry of its own when not given).
        ``max_start_crashes``: a stage whose StartJob the engine died on this many times ends."""
        self.engines = engines
        self.environments = environments
        self.results = results
        self.identity = identity
        self.pod_endpoint = pod_endpoint
        self.default_storage_expiry_seconds = default_storage_expiry_seconds
        self.on_workflow_closed = on_workflow_closed
        self.max_start_crashes = max_start_crashes
        self._wake = asyncio.Event()
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._events: asyncio.Queue[Pending] = asyncio.Queue()
        self._applier: asyncio.Task[None] | None = None
        # Calls waiting for a stage's next recorded status (a pod a moment ahead of the engine).
        self._stage_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.metrics = metrics or NodeMetrics()
        self._census_at = float("-inf")

    # -- the environments --------------------------------------------------------

    def _terms(self) -> stages.Terms:
        """Every environment lookup of the orchestrator: the effective environments of the engines
        ready now (only these grant capacity) and how long ended stages keep their results."""
        ready = {
            name
            for name, supervisor in self.engines.supervisors.items()
            if supervisor.state is SupervisorState.READY and supervisor.client is not None
        }
        # The same view GetEnvironments and the free tier read: the operator's terms applied.
        environments = {(env.engine, env.id): env for env in self.environments.list() if env.engine in ready}
        return stages.Terms(environments, float(self.default_storage_expiry_seconds))

    # -- submission --------------------------------------------------------------

    async def submit(
        self,
        owner: str,
        workflow: compute_pb2.Workflow,
        plans: list[StagePlan],
        free: bool,
        workflow_id: str | None = None,
        *,
        then: Callable[[], object] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Stores the workflow and its stages in one transaction and wakes the scheduler.

        A paid workflow's id is chosen before its escrow lock is made, and passed here; ``then``
        runs in the same transaction on the database thread (the payment records its lock).
        ``metadata``: the start request's, already bounded (host.metadata).
        """
        now = time.time()
        workflow_id = workflow_id or new_workflow_id()
        new = stages.NewWorkflow(
            id=workflow_id,
            owner=owner,
            environment_id=workflow.environment_id or plans[0].environment.id,
            free=free,
            viewers=[v.lower() for v in workflow.viewers],
            created_at=now,
            metadata=metadata,
            stages=[
                stages.NewStage(
                    job_id=plan.job_id,
                    index=plan.index,
                    environment_id=plan.environment.id,
                    engine=plan.engine,
                    status=S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE if plan.run_after else S.JOB_STATUS_QUEUED,
                    spec=stagespec.encode(plan.stage, plan.allow_network),
                    run_after=plan.run_after,
                    resources=plan.resources,
                    max_duration_seconds=plan.max_duration_seconds,
                    queue_limit_seconds=plan.max_queue_seconds,
                )
                for plan in plans
            ],
        )
        await runner.run(stages.store_workflow, new, then)
        for accepted in new.stages:
            self.metrics.stage_status(accepted.environment_id, accepted.status)
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
        terms = self._terms()
        scheduled = await runner.run(stages.schedule, time.time(), terms)
        self._announce(scheduled.changes)
        for stage in scheduled.granted:
            self.metrics.stage_granted(stage.environment_id, (stage.started_at or 0.0) - stage.created_at)
        for stage in scheduled.granted:
            supervisor = self._ready_engine(stage.engine)
            if supervisor is None:  # went away since the pass read it: the stage waits for recovery
                continue
            # StartJob runs beside the scheduler: one slow engine call must not hold up the others.
            self._spawn(self._launch(stage, supervisor))
        try:
            await self._take_census(terms)
        except Exception:  # the metrics must never hold up scheduling
            log.exception("counting the stages for the metrics failed")

    async def _take_census(self, terms: stages.Terms) -> None:
        """Counts the stages for the metrics (on the database thread), at most once a second; a
        scrape reads the last count and never waits for the database."""
        now = time.monotonic()
        if now - self._census_at < CENSUS_INTERVAL_SECONDS:
            return
        self._census_at = now
        counted = await runner.run(stages.count_stages)
        total = {(env.id, r.id): r.total for env in terms.environments.values() for r in env.resources}
        by_status: dict[tuple[str, str], int] = {}
        for (environment_id, status), count in counted.stages.items():
            key = (environment_id, status_label(status))
            by_status[key] = by_status.get(key, 0) + count
        self.metrics.state.census = Census(
            stages=by_status, queued=counted.queued, granted=counted.granted, total=total
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    def _ready_engine(self, name: str) -> EngineSupervisor | None:
        supervisor = self.engines.supervisors.get(name)
        if supervisor is None or supervisor.state is not SupervisorState.READY or supervisor.client is None:
            return None
        return supervisor

    def _announce(self, changes: Changes) -> None:
        """After a unit committed: log what it changed, tell payments of closed workflows, reschedule."""
        for recorded in changes.recorded:
            self.metrics.stage_status(recorded.environment_id, recorded.status)
            log.info(
                "stage status",
                job_id=recorded.job_id,
                workflow_id=recorded.workflow_id,
                status=statuses.name(recorded.status),
            )
        for ended in changes.ended:
            self.metrics.stage_ended(
                ended.environment_id,
                ended.status,
                created_at=ended.created_at,
                started_at=ended.started_at,
                finished_at=ended.finished_at,
                algorithm_started_at=ended.algorithm_started_at,
                algorithm_finished_at=ended.algorithm_finished_at,
            )
            log.info(
                "stage ended",
                job_id=ended.job_id,
                workflow_id=ended.workflow_id,
                status=statuses.name(ended.status),
                message=ended.message,
            )
        changed = {r.job_id for r in changes.recorded} | {e.job_id for e in changes.ended}
        for job_id in changed & self._stage_waiters.keys():
            for waiter in self._stage_waiters.pop(job_id):
                if not waiter.done():
                    waiter.set_result(None)
        if self.on_workflow_closed is not None:
            for workflow_id in changes.closed_workflows:
                self.on_workflow_closed(workflow_id)
        if changes.ended:
            self._wake.set()

    async def stage_changed(self, job_id: str, timeout: float) -> None:
        """Returns once a unit has recorded a new status of the stage (or ended it), or after
        ``timeout``: a waiting call re-reads its stage when something happened, not on a timer."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stage_waiters.setdefault(job_id, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._stage_waiters.get(job_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._stage_waiters[job_id]

    async def _end(self, job_id: str, status: int, message: str) -> None:
        self._announce(
            await runner.run(stages.end_stage, job_id, status, message, time.time(), self._terms())
        )

    # -- starting and following a stage -----------------------------------------

    async def _launch(self, stage: Stage, supervisor: EngineSupervisor) -> None:
        bound = log.bind(job_id=stage.job_id, workflow_id=stage.workflow_id, engine=supervisor.name)
        try:
            spec = await self._job_spec(stage, supervisor)
        except RequestError as exc:  # credentials checked at start no longer open (the node key changed)
            bound.warning("the stage's registry credentials cannot be used", reason=exc.message)
            await self._end(stage.job_id, S.JOB_STATUS_PULL_IMAGE_FAILED, exc.message)
            return
        client = supervisor.client
        if client is None:  # the engine went away since the grant: the capacity goes back
            await runner.run(stages.release_grant, stage.job_id)
            return
        plugin = supervisor.plugin
        try:
            handle = await client.start_job(spec)
        except EngineRefused as exc:
            bound.warning("engine refused the stage", detail=exc.details)
            await self._end(stage.job_id, S.JOB_STATUS_CONTAINER_CREATION_FAILED, exc.details or "refused")
            return
        except EngineError as exc:  # the engine is in trouble: give the capacity back and try again later
            if plugin is not None and await supervisor.died(plugin):
                await self._start_crashed(stage.job_id, bound)
                return
            bound.warning("could not start the stage; will retry", code=exc.code.name)
            await runner.run(stages.release_grant, stage.job_id)
            return
        current = await runner.run(stages.record_handle, stage.job_id, handle)
        bound.info("stage started on engine")
        self._follow(stage.job_id, supervisor, current.last_sequence)
        if current.stop_requested:  # stopped while StartJob was in flight
            await self._request_stop(stage.job_id, supervisor, "stopped by its owner")

    async def _start_crashed(self, job_id: str, bound: Any) -> None:
        """The engine died with the stage's StartJob unanswered: counted, and the stage ends at the
        limit, so a stage that crashes its engine is not started again after every restart."""
        changes = await runner.run(
            stages.start_crashed, job_id, self.max_start_crashes, time.time(), self._terms()
        )
        if changes.ended:
            bound.error(
                "the engine crashed starting the stage too often; not retried", limit=self.max_start_crashes
            )
        else:
            bound.warning("the engine crashed while starting the stage; will retry")
        self._announce(changes)

    async def _job_spec(self, stage: Stage, supervisor: EngineSupervisor) -> engine_pb2.JobSpec:
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
                dockerfile=container.dockerfile,
                additional_files=dict(container.additional_files),
            ),
            resources=capacity.granted_resources(stage.granted),
            max_duration_seconds=stage.max_duration_seconds,
            network=common_pb2.NetworkPolicy(allow_network=stagespec.allows_network(stage.spec)),
            labels={"c2d.workflow": stage.workflow_id, "c2d.stage": str(stage.index)},
        )
        credentials = registryauth.for_engine(container, self.identity)  # checked at start
        if credentials is not None:
            spec.registry_auth.CopyFrom(credentials)
        if supervisor.fingerprint is not None and supervisor.fingerprint.capabilities.runs_pods:
            spec.pod.CopyFrom(await self._pod_access(stage))
        return spec

    async def _pod_access(self, stage: Stage) -> engine_pb2.PodAccess:
        """The stage's own key: created once, kept sealed, handed to the engine on every (re)start."""
        context = stage.job_id.encode()
        if stage.pod_key is None:
            key = auth.new_private_key()
            sealed = self.identity.seal(key.encode(), context)
            await runner.run(stages.keep_pod_key, stage.job_id, sealed, auth.address_of(key))
        else:
            key = self.identity.unseal(stage.pod_key, context).decode()
        return engine_pb2.PodAccess(
            node_peer_id=self.identity.address, node_http_api=self.pod_endpoint, private_key=key
        )

    def _follow(self, job_id: str, supervisor: EngineSupervisor, after_sequence: int) -> None:
        if job_id in self._followers and not self._followers[job_id].done():
            return
        task = asyncio.create_task(self._watch(job_id, supervisor, after_sequence), name=f"follow-{job_id}")
        task.add_done_callback(_log_failure)
        self._followers[job_id] = task

    async def _watch(self, job_id: str, supervisor: EngineSupervisor, after_sequence: int) -> None:
        client = supervisor.client
        if client is None:
            return
        try:
            async with contextlib.aclosing(client.watch_job(job_id, after_sequence)) as events:
                async for event in events:
                    if await self._apply(job_id, event):
                        break
        except JobNotFound:
            await self._end(job_id, S.JOB_STATUS_LOST, "the engine no longer has the job")
        except (
            EngineError
        ) as exc:  # the engine went away; recover_engine picks the stage up after its restart
            log.info(
                "stopped following the stage", job_id=job_id, engine=supervisor.name, reason=exc.code.name
            )
            return
        finally:
            self._followers.pop(job_id, None)
        ended = await runner.run(stages.ended_stage, job_id)
        if ended is not None:
            await self._keep_engine_log(ended, supervisor)
            await self._destroy(job_id, supervisor)

    async def _keep_engine_log(self, stage: Stage, supervisor: EngineSupervisor) -> None:
        """A stage whose pods published no algorithm log (stopped, failed while publishing) gets the
        engine's copy, read before the engine cleans up: the log matters most when something went wrong."""
        client = supervisor.client
        if (
            self.results is None
            or stage.algorithm_started_at is None
            or client is None
            or supervisor.fingerprint is None
            or not supervisor.fingerprint.capabilities.log_streaming
            or await runner.run(
                self.results.exists, stage, ALGORITHM_LOG, compute_pb2.RESULT_KIND_ALGORITHM_LOG
            )
        ):
            return
        chunks: list[bytes] = []
        try:
            async with contextlib.aclosing(client.stream_logs(stage.job_id)) as logs:
                async for chunk in logs:
                    chunks.append(chunk.data)
        except EngineError as exc:
            log.info("no engine log to keep", job_id=stage.job_id, code=exc.code.name)
            return
        if chunks:
            data = b"".join(chunks)
            await runner.run(
                self.results.store, stage, ALGORITHM_LOG, compute_pb2.RESULT_KIND_ALGORITHM_LOG, data
            )
            log.info("kept the engine's algorithm log", job_id=stage.job_id, size=len(data))

    async def _apply(self, job_id: str, event: engine_pb2.JobEvent) -> bool:
        """Applies one engine event once (by sequence), with whatever else is queued; True when the stage has ended."""
        if self._applier is None or self._applier.done():
            self._applier = asyncio.create_task(self._apply_bursts(), name="apply-engine-events")
            self._applier.add_done_callback(_log_failure)
        applied: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._events.put_nowait((job_id, event, applied))
        return await applied

    async def _apply_bursts(self) -> None:
        """Applies the followers' events in bursts: everything queued when a unit starts goes in it."""
        while True:
            burst = [await self._events.get()]
            while len(burst) < MAX_BURST and not self._events.empty():
                burst.append(self._events.get_nowait())
            try:
                await self._apply_burst(burst)
            except Exception:
                if len(burst) == 1:
                    continue  # its follower has the error
                # One bad event must not fail the others of its burst: each on its own, then.
                for pending in burst:
                    with contextlib.suppress(Exception):
                        await self._apply_burst([pending])

    async def _apply_burst(self, burst: list[Pending]) -> None:
        """One unit for the burst; each follower gets its answer (or the unit's error)."""
        try:
            applied = await runner.run(
                stages.apply_events, [(job_id, event) for job_id, event, _ in burst], self._terms()
            )
        except Exception as exc:
            if len(burst) == 1 and not burst[0][2].done():
                burst[0][2].set_exception(exc)
            raise
        for (_, _, future), ended in zip(burst, applied.ended, strict=True):
            if not future.done():
                future.set_result(ended)
        self._announce(applied.changes)

    async def _destroy(self, job_id: str, supervisor: EngineSupervisor) -> None:
        if supervisor.client is None:
            return
        try:
            await supervisor.client.destroy_job(job_id)
        except EngineError as exc:
            log.warning("engine could not clean up the stage yet", job_id=job_id, code=exc.code.name)
            return
        await runner.run(stages.mark_destroyed, job_id)

    # -- pods --------------------------------------------------------------------

    async def pod_phase(self, job_id: str, status: int | None, failure: int | None, message: str) -> None:
        """A pod's report: failures refine the engine's terminal status; progress is recorded.

        A report on a stage that has ended meanwhile changes nothing."""
        self._announce(await runner.run(stages.pod_report, job_id, status, failure, message, time.time()))

    # -- stopping ----------------------------------------------------------------

    async def stop_workflow(self, workflow_id: str, reason: str) -> None:
        await self._stop(None, workflow_id, reason)

    async def stop(self, job_ids: Sequence[str], reason: str) -> None:
        """Stops the stages; one that runs after another being stopped is skipped when that one ends."""
        await self._stop(list(job_ids), None, reason)

    async def _stop(self, job_ids: list[str] | None, workflow_id: str | None, reason: str) -> None:
        plan = await runner.run(stages.request_stop, job_ids, workflow_id, reason, time.time(), self._terms())
        self._announce(plan.changes)
        for job_id, engine in plan.on_engines:
            supervisor = self._ready_engine(engine)
            if supervisor is not None:
                await self._request_stop(job_id, supervisor, reason)

    async def _request_stop(self, job_id: str, supervisor: EngineSupervisor, reason: str) -> None:
        client = supervisor.client
        if client is None:
            log.warning("stop request not sent (the engine went away); retried on recovery", job_id=job_id)
            return
        try:
            await client.stop_job(job_id, grace_seconds=STOP_GRACE_SECONDS, reason=reason)
        except EngineError as exc:
            log.warning("stop request failed; retried on recovery", job_id=job_id, code=exc.code.name)

    # -- recovery ----------------------------------------------------------------

    async def recover_engine(self, supervisor: EngineSupervisor) -> None:
        """After the engine (or the node) started: re-attach every stage the database has on it."""
        found = await runner.run(stages.on_engine, supervisor.name)
        for stage in found.active:
            await self._recover_stage(stage, supervisor)
        for job_id in found.leftovers:
            await self._destroy(job_id, supervisor)
        await self._remove_orphans(supervisor)
        self._wake.set()

    async def _recover_stage(self, stage: Stage, supervisor: EngineSupervisor) -> None:
        bound = log.bind(job_id=stage.job_id, workflow_id=stage.workflow_id, engine=supervisor.name)
        if stage.handle is None:  # killed between the grant and StartJob's answer: StartJob is idempotent
            bound.info("restarting a stage whose start was cut off")
            await self._launch(stage, supervisor)
            return
        client = supervisor.client
        if client is None:
            return  # gone again; its next start recovers the stage
        try:
            recovered = await client.recover_job(
                engine_pb2.JobHandle.FromString(stage.handle), self._recovery_credentials(stage)
            )
        except (JobNotFound, EngineRefused) as exc:
            bound.warning("engine lost the stage", detail=exc.details)
            await self._end(stage.job_id, S.JOB_STATUS_LOST, "the engine lost the job")
            return
        current = await runner.run(stages.record_handle, stage.job_id, recovered.handle)
        bound.info("re-attached stage", last_sequence=current.last_sequence)
        if current.stop_requested:
            await self._request_stop(stage.job_id, supervisor, "stopped by its owner")
        self._follow(stage.job_id, supervisor, current.last_sequence)

    def _recovery_credentials(self, stage: Stage) -> engine_pb2.RegistryAuth | None:
        """The consumer's registry credentials again, for an engine that restarted before its pull:
        decrypted from the stage's spec, as at launch; None (logged) when they no longer open."""
        container = stagespec.decode(stage.spec).algorithm.container
        try:
            return registryauth.for_engine(container, self.identity)
        except RequestError as exc:
            log.warning(
                "the stage's registry credentials cannot be opened", job_id=stage.job_id, reason=str(exc)
            )
            return None

    async def _remove_orphans(self, supervisor: EngineSupervisor) -> None:
        """Jobs the engine runs for this node that the database does not know."""
        if supervisor.client is None:
            return
        try:
            jobs = await supervisor.client.list_jobs()
        except EngineError:
            return
        known = await runner.run(stages.known_job_ids, [j.job_id for j in jobs])
        for job in jobs:
            if job.job_id not in known:
                log.warning("removing orphaned job", job_id=job.job_id, engine=supervisor.name)
                await self._destroy(job.job_id, supervisor)

    async def close(self) -> None:
        tasks = [*self._followers.values(), *self._background]
        if self._applier is not None:
            tasks.append(self._applier)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
