"""ComputeService: what consumers (and the operator) call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from host import pricing
from host.assets import AssetRegistry
from host.auth import ANYONE, verify_consumer
from host.engines.client import EngineError, LogChunk
from host.engines.registry import EngineRegistry
from host.environments import EnvironmentCatalog
from host.errors import denied, grpc_errors, invalid, precondition
from host.identity import NodeIdentity
from host.orchestrator import capacity
from host.orchestrator.admission import admit_stage
from host.orchestrator.orchestrator import Orchestrator, new_workflow_id
from host.orchestrator.validation import EnvironmentLookup, StagePlan, plan_workflow
from host.payments.states import payment_state
from host.results import ResultStore
from host.services.access import owned_stages, visible_stage, visible_workflow
from host.store.models import Payment, Stage, StatusEvent, Workflow

if TYPE_CHECKING:
    from host.payments.service import Payments

SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name
MAX_STATUS_JOBS = 1000
LOG_POLL_SECONDS = 0.5


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


class ComputeServicer(compute_pb2_grpc.ComputeServiceServicer):
    def __init__(
        self,
        *,
        engines: EngineRegistry,
        catalog: EnvironmentCatalog,
        orchestrator: Orchestrator,
        assets: AssetRegistry,
        results: ResultStore,
        identity: NodeIdentity,
        default_duration: int,
        payments: Payments | None = None,
    ) -> None:
        self.engines = engines
        self.catalog = catalog
        self.orchestrator = orchestrator
        self.assets = assets
        self.results = results
        self.identity = identity
        self.default_duration = default_duration
        self.payments = payments

    # -- environments and admission ---------------------------------------------

    @grpc_errors
    async def GetEnvironments(self, request: Any, context: Any) -> compute_pb2.GetEnvironmentsResponse:
        environments = self.catalog.list(engine=request.engine)
        if request.chain_id:
            for env in environments:
                kept = [fees for fees in env.fees if fees.chain_id == request.chain_id]
                del env.fees[:]
                env.fees.extend(kept)
        return compute_pb2.GetEnvironmentsResponse(environments=environments)

    def _plan(self, workflow: compute_pb2.Workflow, owner: str) -> list[StagePlan]:
        lookup = EnvironmentLookup(self.catalog.list())
        return plan_workflow(
            workflow, owner, lookup, lambda plan: admit_stage(plan, self.assets, owner), self.default_duration
        )

    @grpc_errors
    async def InitializeCompute(self, request: Any, context: Any) -> compute_pb2.InitializeComputeResponse:
        """Validates and prices a workflow. Unsigned it is anyone's call, so it must not reveal
        anything about others: the checks that depend on who asks (runAfter job ids, datasets'
        allowed consumers, the free tier's jobs per consumer) run only for a signed caller, and
        ``consumer_address`` (a claim anyone can make) is never used."""
        signed = bool(request.auth.signature or request.auth.address)
        owner = verify_consumer(method("InitializeCompute"), request) if signed else ANYONE
        plans = self._plan(request.workflow, owner)
        quote = self._quote(plans, request.payment) if request.HasField("payment") else None
        return compute_pb2.InitializeComputeResponse(
            quote=quote,
            free_eligible=self._free_problem(plans, owner, request.workflow) is None,
            consumer_checked=signed,
        )

    def _quote(self, plans: list[StagePlan], payment: compute_pb2.Payment) -> compute_pb2.EscrowQuote:
        if self.payments is not None:
            return self.payments.quote(plans, payment)
        return pricing.quote(plans, payment, self.identity.address)

    @grpc_errors
    async def StartCompute(self, request: Any, context: Any) -> compute_pb2.StartComputeResponse:
        owner = verify_consumer(method("StartCompute"), request)
        if self.payments is None:
            raise precondition(_NO_PAYMENTS)
        if not request.HasField("payment"):
            raise invalid(
                "a paid start names its payment (chain_id, token_address); free compute is FreeStartCompute"
            )
        plans = self._plan(request.workflow, owner)
        quote = self.payments.quote(plans, request.payment)
        workflow_id = new_workflow_id()
        row = await self.payments.start(
            owner,
            quote,
            lambda wid, then: self.orchestrator.submit(
                owner, request.workflow, plans, free=False, workflow_id=wid, then=then
            ),
            workflow_id,
        )
        refs = [compute_pb2.StageRef(index=p.index, job_id=p.job_id) for p in plans]
        return compute_pb2.StartComputeResponse(
            workflow_id=workflow_id, stages=refs, quote=quote, payment=payment_state(row)
        )

    @grpc_errors
    async def FreeStartCompute(self, request: Any, context: Any) -> compute_pb2.FreeStartComputeResponse:
        owner = verify_consumer(method("FreeStartCompute"), request)
        plans = self._plan(request.workflow, owner)
        problem = self._free_problem(plans, owner, request.workflow)
        if problem is not None:
            raise denied(problem)
        workflow_id = await self.orchestrator.submit(owner, request.workflow, plans, free=True)
        refs = [compute_pb2.StageRef(index=p.index, job_id=p.job_id) for p in plans]
        return compute_pb2.FreeStartComputeResponse(workflow_id=workflow_id, stages=refs)

    def _free_problem(self, plans: list[StagePlan], owner: str, workflow: compute_pb2.Workflow) -> str | None:
        """Why the workflow is outside the free tier, or None when it fits.

        A stage that names no duration gets the free tier's maximum rather than a refusal.
        """
        for plan in plans:
            env = self.catalog.get(plan.environment.id)
            tier = env.free if env is not None else common_pb2.FreeTier()
            where = f"stage {plan.index}"
            if not tier.enabled:
                return f"{where}: environment {plan.environment.id!r} has no free tier"
            asked = plan.stage.max_duration_seconds or workflow.max_duration_seconds
            cap = tier.max_job_duration_seconds
            if cap and plan.max_duration_seconds > cap:
                if asked:
                    return f"{where}: max duration {asked}s exceeds the free tier's {cap}s"
                plan.max_duration_seconds = cap
            limits = {r.id: r.max for r in tier.resources}
            for grant in plan.resources:
                if grant["id"] in limits and grant["amount"] > limits[grant["id"]]:
                    return f"{where}: {grant['id']} = {grant['amount']:g} exceeds the free tier's {limits[grant['id']]:g}"
        for env_id in sorted({plan.environment.id for plan in plans}):
            problem = self._free_capacity_problem(env_id, plans, owner)
            if problem:
                return problem
        return None

    def _free_capacity_problem(self, env_id: str, plans: list[StagePlan], owner: str) -> str | None:
        env = self.catalog.get(env_id)
        tier = env.free if env is not None else common_pb2.FreeTier()
        wanted = sum(1 for p in plans if p.environment.id == env_id)
        active = (
            Stage.select()
            .join(Workflow)
            .where((Stage.terminal == False) & (Stage.environment_id == env_id) & (Workflow.free == True))
        )
        if tier.max_jobs_per_consumer and owner != ANYONE:  # an unsigned caller's own usage is unknown
            mine = active.where(Stage.owner == owner).count()
            if mine + wanted > tier.max_jobs_per_consumer:
                return (
                    f"the free tier of {env_id!r} allows {tier.max_jobs_per_consumer} jobs per consumer at once; "
                    f"this workflow has {wanted} and you have {mine} running or queued"
                )
        if tier.max_concurrent_jobs:
            everyone = active.count()
            if everyone + wanted > tier.max_concurrent_jobs:
                return (
                    f"the free tier of {env_id!r} is full: {everyone} of {tier.max_concurrent_jobs} free jobs "
                    "are running or queued; try again later"
                )
        return None

    # -- status, stop --------------------------------------------------------------

    @grpc_errors
    async def GetComputeStatus(self, request: Any, context: Any) -> compute_pb2.GetComputeStatusResponse:
        caller = verify_consumer(method("GetComputeStatus"), request)
        target = request.WhichOneof("target")
        if target == "job_id":
            stages = [visible_stage(request.job_id, caller)]
        elif target == "workflow_id":
            stages = list(visible_workflow(request.workflow_id, caller).stages.order_by(Stage.index))
        elif target == "all":
            stages = list(
                Stage.select()
                .where(Stage.owner == caller)
                .order_by(Stage.created_at.desc())
                .limit(MAX_STATUS_JOBS)
            )
        else:
            raise invalid("say which jobs: job_id, workflow_id or all")
        return compute_pb2.GetComputeStatusResponse(jobs=[self._job_info(s) for s in stages])

    @grpc_errors
    async def StopCompute(self, request: Any, context: Any) -> compute_pb2.StopComputeResponse:
        caller = verify_consumer(method("StopCompute"), request)
        if not request.job_id and not request.workflow_id:
            raise invalid("say what to stop: job_id or workflow_id")
        stages = owned_stages(caller, job_id=request.job_id, workflow_id=request.workflow_id)
        await self.orchestrator.stop([s.job_id for s in stages], "stopped by its owner")
        return compute_pb2.StopComputeResponse(
            jobs=[self._job_info(Stage.get_by_id(s.job_id)) for s in stages]
        )

    def _job_info(self, stage: Stage) -> compute_pb2.JobInfo:
        info = compute_pb2.JobInfo(
            job_id=stage.job_id,
            workflow_id=stage.workflow_id,
            stage_index=stage.index,
            owner=stage.owner,
            environment_id=stage.environment_id,
            status=stage.status,
            status_text=stage.status_text,
            run_after_job_ids=stage.run_after,
            resources=capacity.granted_resources(stage.granted or stage.resources),
            max_duration_seconds=stage.max_duration_seconds,
            results=self.results.list(stage),
            algorithm_image=stage.algorithm_image,
            terminal=stage.terminal,
            payment=payment_state(Payment.get_or_none(Payment.workflow_id == stage.workflow_id)),
        )
        for field, value in (
            ("created", stage.created_at),
            ("started", stage.algorithm_started_at),
            ("finished", stage.finished_at),
            ("results_expire", stage.results_expire_at),
        ):
            if value is not None:
                getattr(info, field).CopyFrom(_timestamp(value))
        if stage.exit_code is not None:
            info.exit_code = stage.exit_code
        for event in StatusEvent.select().where(StatusEvent.stage == stage.job_id).order_by(StatusEvent.id):
            info.history.append(
                common_pb2.StatusEvent(
                    status=event.status, message=event.message, time=_timestamp(event.time)
                )
            )
        return info

    # -- results and logs -----------------------------------------------------------

    @grpc_errors
    async def GetComputeResult(
        self, request: Any, context: Any
    ) -> AsyncIterator[compute_pb2.GetComputeResultResponse]:
        caller = verify_consumer(method("GetComputeResult"), request)
        stage = visible_stage(request.job_id, caller)
        row = self.results.get(stage, request.index)
        file = next(f for f in self.results.list(stage) if f.index == row.index)
        offset = request.offset
        first = True
        for chunk in self.results.read(stage, request.index, request.offset):
            reply = compute_pb2.GetComputeResultResponse(data=chunk, offset=offset)
            if first:
                reply.file.CopyFrom(file)
                first = False
            offset += len(chunk)
            yield reply
        if first:  # nothing left to send: still say what the file is
            yield compute_pb2.GetComputeResultResponse(offset=offset, file=file)

    @grpc_errors
    async def StreamComputeLogs(
        self, request: Any, context: Any
    ) -> AsyncIterator[compute_pb2.StreamComputeLogsResponse]:
        caller = verify_consumer(method("StreamComputeLogs"), request)
        stage = visible_stage(request.job_id, caller)
        offset = request.offset
        if stage.terminal:
            stored = self._stored_log_file(stage)
            _check_log_offset(stored.size if stored else 0, offset)
        while not stage.terminal:
            live = self._live_logs(stage, request.follow, offset)
            if live is not None:
                async for reply in live:
                    offset = reply.offset + len(reply.data)
                    yield compute_pb2.StreamComputeLogsResponse(data=reply.data, offset=reply.offset)
                stage = Stage.get_by_id(stage.job_id)
                if not request.follow:
                    return
                continue
            if not request.follow:
                break
            await asyncio.sleep(LOG_POLL_SECONDS)
            stage = Stage.get_by_id(stage.job_id)
        for reply in self._stored_log(stage, offset):
            yield reply

    def _live_logs(self, stage: Stage, follow: bool, offset: int) -> Any:
        supervisor = self.engines.supervisors.get(stage.engine)
        client = supervisor.client if supervisor is not None else None
        if (
            supervisor is None
            or client is None
            or supervisor.fingerprint is None
            or not supervisor.fingerprint.capabilities.log_streaming
            or stage.granted is None
        ):
            return None
        return _tolerant(client.stream_logs(stage.job_id, offset=offset, follow=follow))

    def _stored_log_file(self, stage: Stage) -> compute_pb2.ResultFile | None:
        """The algorithm log the pods (or the engine) left with the stage's results, if any."""
        kind = compute_pb2.RESULT_KIND_ALGORITHM_LOG
        return next((f for f in self.results.list(stage) if f.kind == kind), None)

    def _stored_log(self, stage: Stage, offset: int) -> list[compute_pb2.StreamComputeLogsResponse]:
        stored = self._stored_log_file(stage)
        if stored is None or offset >= stored.size:
            return []
        replies = []
        for chunk in self.results.read(stage, stored.index, offset):
            replies.append(compute_pb2.StreamComputeLogsResponse(data=chunk, offset=offset))
            offset += len(chunk)
        return replies

    @grpc_errors
    async def GetPaymentProof(self, request: Any, context: Any) -> compute_pb2.GetPaymentProofResponse:
        caller = verify_consumer(method("GetPaymentProof"), request)
        workflow = visible_workflow(request.workflow_id, caller)
        row = Payment.get_or_none(Payment.workflow_id == workflow.id)
        if workflow.free or row is None:
            raise precondition("this workflow ran in the free tier: there is no payment to prove")
        if row.records is None:
            raise precondition(
                f"the payment is {row.status}: its proof is made once every stage of the workflow has ended"
            )
        return compute_pb2.GetPaymentProofResponse(
            records=row.records, node_signature=row.signature, digest=row.digest, payment=payment_state(row)
        )

    # -- operator ---------------------------------------------------------------------

    def _operator(self, name: str, request: Any) -> None:
        if verify_consumer(method(name), request) != self.identity.address:
            raise denied(f"{name} is for the node's operator (signed with the node key)")

    @grpc_errors
    async def RegisterAsset(self, request: Any, context: Any) -> compute_pb2.RegisterAssetResponse:
        self._operator("RegisterAsset", request)
        self.assets.register(request.asset, replace=request.replace)
        return compute_pb2.RegisterAssetResponse()

    @grpc_errors
    async def ListAssets(self, request: Any, context: Any) -> compute_pb2.ListAssetsResponse:
        self._operator("ListAssets", request)
        return compute_pb2.ListAssetsResponse(assets=self.assets.list())

    @grpc_errors
    async def RemoveAsset(self, request: Any, context: Any) -> compute_pb2.RemoveAssetResponse:
        self._operator("RemoveAsset", request)
        self.assets.remove(request.did)
        return compute_pb2.RemoveAssetResponse()

    @grpc_errors
    async def ListEngines(self, request: Any, context: Any) -> compute_pb2.ListEnginesResponse:
        self._operator("ListEngines", request)
        return compute_pb2.ListEnginesResponse(engines=self.engines.describe())


_NO_PAYMENTS = (
    "this node takes no payments (no chain is configured: see [chain] in the node's config); "
    "use FreeStartCompute within an environment's free tier"
)


def _check_log_offset(size: int, offset: int) -> None:
    """A finished stage's log ends where it ends: an offset past it is a mistake to say, not an empty log."""
    if offset > size:
        raise invalid(f"offset {offset} is past the end of the log ({size} bytes)")


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


async def _tolerant(chunks: AsyncGenerator[LogChunk, None]) -> AsyncIterator[LogChunk]:
    """Engine log streams end quietly when the engine goes away; the stored log takes over."""
    async with contextlib.aclosing(chunks):
        try:
            async for chunk in chunks:
                yield chunk
        except EngineError:
            return
