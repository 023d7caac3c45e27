"""ComputeService: what consumers (and the operator) call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from host import pricing, registryauth
from host.assets import AssetRegistry
from host.auth import ANYONE, verify_consumer
from host.engines.registry import EngineRegistry
from host.envaccess import EnvironmentAccess
from host.environments import EnvironmentCatalog
from host.errors import denied, grpc_errors, invalid, precondition
from host.identity import NodeIdentity
from host.joblogs import StageLogs
from host.metadata import accepted_metadata
from host.orchestrator import capacity, imagebuild
from host.orchestrator.admission import admit_stage
from host.orchestrator.orchestrator import Orchestrator, new_workflow_id
from host.orchestrator.validation import EnvironmentLookup, StagePlan, plan_workflow
from host.payments.states import payment_state
from host.results import ResultStore, result_file
from host.services.access import owned_stages, readable_stage, visible_stage, visible_workflow
from host.store import jobs, runner
from host.store import payments as payments_store
from host.store.jobs import FreeUsage, JobView
from host.store.models import Payment, Result, Workflow

if TYPE_CHECKING:
    from host.payments.service import Payments

SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name
MAX_STATUS_JOBS = 1000


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
        access: EnvironmentAccess | None = None,
    ) -> None:
        """``access``: who may start in each tier (default: the catalog's terms, no chain to read)."""
        self.engines = engines
        self.catalog = catalog
        self.orchestrator = orchestrator
        self.assets = assets
        self.results = results
        self.identity = identity
        self.default_duration = default_duration
        self.payments = payments
        self.access = access or EnvironmentAccess(catalog.terms, None)
        self.logs = StageLogs(engines, results)

    # -- environments and admission ---------------------------------------------

    @grpc_errors
    async def GetEnvironments(self, request: Any, context: Any) -> compute_pb2.GetEnvironmentsResponse:
        environments = await self.catalog.listing(request.engine)
        if request.chain_id:
            for env in environments:
                kept = [fees for fees in env.fees if fees.chain_id == request.chain_id]
                del env.fees[:]
                env.fees.extend(kept)
        return compute_pb2.GetEnvironmentsResponse(
            environments=environments, node_public_key=self.identity.public_key
        )

    def _plan(self, workflow: compute_pb2.Workflow, owner: str, lookup: EnvironmentLookup) -> list[StagePlan]:
        """Validates and plans the workflow: on the database thread (assets, runAfter jobs)."""
        plans = plan_workflow(
            workflow, owner, lookup, lambda plan: admit_stage(plan, self.assets, owner), self.default_duration
        )
        for plan in plans:
            registryauth.check_stage(plan.stage, self.identity, f"stage {plan.index}")
        return plans

    def _lookup(self) -> EnvironmentLookup:
        """The environments as the catalog has them now (read on the loop, where the engines are)."""
        return EnvironmentLookup(self.catalog.list(), self.catalog.engines.builders())

    def _plan_with_usage(
        self, workflow: compute_pb2.Workflow, owner: str, lookup: EnvironmentLookup
    ) -> tuple[list[StagePlan], dict[str, FreeUsage]]:
        """The plans, and the free tier's usage of each environment they use (one unit)."""
        plans = self._plan(workflow, owner, lookup)
        usage = {env_id: jobs.free_usage(env_id, owner) for env_id in {p.environment.id for p in plans}}
        return plans, usage

    @grpc_errors
    async def InitializeCompute(self, request: Any, context: Any) -> compute_pb2.InitializeComputeResponse:
        """Validates and prices a workflow. Unsigned it is anyone's call, so it must not reveal
        anything about others: the checks that depend on who asks (runAfter job ids, datasets'
        allowed consumers, the free tier's jobs per consumer, who may use each tier) run only for
        a signed caller, and ``consumer_address`` (a claim anyone can make) is never used.

        A signed caller outside a tier's access is refused as its start would be: the paid tier's
        when the request names a payment, the free tier's otherwise (with a payment, the free
        tier's access only decides ``free_eligible``)."""
        signed = bool(request.auth.signature or request.auth.address)
        owner = await verify_consumer(method("InitializeCompute"), request) if signed else ANYONE
        payment = request.payment if request.HasField("payment") else None
        return await self.initialize(request.workflow, payment, owner)

    async def initialize(
        self, workflow: compute_pb2.Workflow, payment: compute_pb2.Payment | None, owner: str
    ) -> compute_pb2.InitializeComputeResponse:
        """InitializeCompute for a caller already checked (``ANYONE`` when unsigned): every face's."""
        plans, usage = await runner.run(self._plan_with_usage, workflow, owner, self._lookup())
        free_refusal = None
        if owner != ANYONE:
            await self.access.admit(_environment_ids(plans), owner, free=payment is None)
            if payment is not None:
                free_refusal = await self._free_refusal(plans, owner)
        quote = self._quote(plans, payment) if payment is not None else None
        problem = (
            free_refusal or _free_tier_problem(plans, workflow) or _free_capacity_problem(plans, owner, usage)
        )
        return compute_pb2.InitializeComputeResponse(
            quote=quote, free_eligible=problem is None, consumer_checked=owner != ANYONE
        )

    async def _free_refusal(self, plans: list[StagePlan], owner: str) -> str | None:
        """Why ``owner`` may not start these stages in the free tier (access only), or None."""
        for env_id in sorted(_environment_ids(plans)):
            refusal = await self.access.refusal(env_id, owner, free=True)
            if refusal is not None:
                return refusal.message
        return None

    def _quote(self, plans: list[StagePlan], payment: compute_pb2.Payment) -> compute_pb2.EscrowQuote:
        if self.payments is not None:
            return self.payments.quote(plans, payment)
        return pricing.quote(plans, payment, self.identity.address)

    @grpc_errors
    async def StartCompute(self, request: Any, context: Any) -> compute_pb2.StartComputeResponse:
        owner = await verify_consumer(method("StartCompute"), request)
        if self.payments is None:
            raise precondition(_NO_PAYMENTS)
        if not request.HasField("payment"):
            raise invalid(
                "a paid start names its payment (chain_id, token_address); free compute is FreeStartCompute"
            )
        return await self.start(owner, request.workflow, request.payment, accepted_metadata(request))

    async def start(
        self,
        owner: str,
        workflow: compute_pb2.Workflow,
        payment: compute_pb2.Payment,
        metadata: dict[str, Any] | None,
    ) -> compute_pb2.StartComputeResponse:
        """StartCompute for an owner already checked, with its metadata already accepted: planned,
        admitted and quoted as every face's, locked in the escrow before anything is stored."""
        if self.payments is None:
            raise precondition(_NO_PAYMENTS)
        plans = await runner.run(self._plan, workflow, owner, self._lookup())
        await self.access.admit(_environment_ids(plans), owner, free=False)
        quote = self.payments.quote(plans, payment)
        workflow_id = new_workflow_id()
        row = await self.payments.start(
            owner,
            quote,
            lambda wid, then: self.orchestrator.submit(
                owner, workflow, plans, free=False, workflow_id=wid, then=then, metadata=metadata
            ),
            workflow_id,
        )
        refs = [compute_pb2.StageRef(index=p.index, job_id=p.job_id) for p in plans]
        return compute_pb2.StartComputeResponse(
            workflow_id=workflow_id, stages=refs, quote=quote, payment=payment_state(row)
        )

    @grpc_errors
    async def FreeStartCompute(self, request: Any, context: Any) -> compute_pb2.FreeStartComputeResponse:
        """Starts a workflow in the free tier. Its capacity (jobs per consumer, free jobs at once)
        is checked in the transaction that stores the workflow, so concurrent starts never
        overfill it: the one that would is refused and leaves nothing stored."""
        owner = await verify_consumer(method("FreeStartCompute"), request)
        return await self.free_start(owner, request.workflow, accepted_metadata(request))

    async def free_start(
        self, owner: str, workflow: compute_pb2.Workflow, metadata: dict[str, Any] | None
    ) -> compute_pb2.FreeStartComputeResponse:
        """FreeStartCompute for an owner already checked, with its metadata already accepted."""
        plans = await runner.run(self._plan, workflow, owner, self._lookup())
        await self.access.admit(_environment_ids(plans), owner, free=True)
        problem = _free_tier_problem(plans, workflow)
        if problem is not None:
            raise denied(problem)
        workflow_id = new_workflow_id()

        def fits() -> None:  # on the database thread, inside the transaction storing the workflow
            usage = {
                env_id: jobs.free_usage(env_id, owner, besides=workflow_id)
                for env_id in {p.environment.id for p in plans}
            }
            problem = _free_capacity_problem(plans, owner, usage)
            if problem is not None:
                raise denied(problem)

        await self.orchestrator.submit(
            owner, workflow, plans, free=True, workflow_id=workflow_id, then=fits, metadata=metadata
        )
        refs = [compute_pb2.StageRef(index=p.index, job_id=p.job_id) for p in plans]
        return compute_pb2.FreeStartComputeResponse(workflow_id=workflow_id, stages=refs)

    # -- status, stop --------------------------------------------------------------

    @grpc_errors
    async def GetComputeStatus(self, request: Any, context: Any) -> compute_pb2.GetComputeStatusResponse:
        caller = await verify_consumer(method("GetComputeStatus"), request)
        target = request.WhichOneof("target")
        if target == "job_id":
            views = await runner.run(job_status, request.job_id, caller)
        elif target == "workflow_id":
            views = await runner.run(_workflow_status, request.workflow_id, caller)
        elif target == "all":
            views = await runner.run(jobs.owner_views, caller, MAX_STATUS_JOBS)
        else:
            raise invalid("say which jobs: job_id, workflow_id or all")
        return _listing(views, compute_pb2.GetComputeStatusResponse())

    @grpc_errors
    async def StopCompute(self, request: Any, context: Any) -> compute_pb2.StopComputeResponse:
        caller = await verify_consumer(method("StopCompute"), request)
        if not request.job_id and not request.workflow_id:
            raise invalid("say what to stop: job_id or workflow_id")
        views = await self.stop(caller, job_id=request.job_id, workflow_id=request.workflow_id)
        return _listing(views, compute_pb2.StopComputeResponse())

    async def stop(self, caller: str, *, job_id: str = "", workflow_id: str = "") -> list[JobView]:
        """Stops the caller's job or workflow (its own only); the stopped jobs' views."""
        stages = await runner.run(owned_stages, caller, job_id=job_id, workflow_id=workflow_id)
        job_ids = [s.job_id for s in stages]
        await self.orchestrator.stop(job_ids, "stopped by its owner")
        return await runner.run(jobs.job_views, job_ids)

    # -- results and logs -----------------------------------------------------------

    @grpc_errors
    async def GetComputeResult(
        self, request: Any, context: Any
    ) -> AsyncIterator[compute_pb2.GetComputeResultResponse]:
        caller = await verify_consumer(method("GetComputeResult"), request)
        row = await self.result(caller, request.job_id, request.index)
        file = result_file(row)
        offset = request.offset
        first = True
        async for chunk in self.results.chunks(row, request.offset):
            reply = compute_pb2.GetComputeResultResponse(data=chunk, offset=offset)
            if first:
                reply.file.CopyFrom(file)
                first = False
            offset += len(chunk)
            yield reply
        if first:  # nothing left to send: still say what the file is
            yield compute_pb2.GetComputeResultResponse(offset=offset, file=file)

    async def result(self, caller: str, job_id: str, index: int) -> Result:
        """The job's result ``index`` if ``caller`` may read it (NOT_FOUND otherwise): one unit,
        who may read it and the file."""
        return await runner.run(lambda: self.results.get(visible_stage(job_id, caller), index))

    @grpc_errors
    async def StreamComputeLogs(
        self, request: Any, context: Any
    ) -> AsyncIterator[compute_pb2.StreamComputeLogsResponse]:
        caller = await verify_consumer(method("StreamComputeLogs"), request)
        stage = await readable_stage(request.job_id, caller)
        async for chunk in self.logs.read(stage, request.offset, follow=request.follow):
            yield compute_pb2.StreamComputeLogsResponse(data=chunk.data, offset=chunk.offset)

    @grpc_errors
    async def GetPaymentProof(self, request: Any, context: Any) -> compute_pb2.GetPaymentProofResponse:
        caller = await verify_consumer(method("GetPaymentProof"), request)
        workflow, row = await runner.run(_payment_of, request.workflow_id, caller)
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

    async def _operator(self, name: str, request: Any) -> None:
        if await verify_consumer(method(name), request) != self.identity.address:
            raise denied(f"{name} is for the node's operator (signed with the node key)")

    @grpc_errors
    async def RegisterAsset(self, request: Any, context: Any) -> compute_pb2.RegisterAssetResponse:
        await self._operator("RegisterAsset", request)
        await runner.run(self.assets.register, request.asset, replace=request.replace)
        return compute_pb2.RegisterAssetResponse()

    @grpc_errors
    async def ListAssets(self, request: Any, context: Any) -> compute_pb2.ListAssetsResponse:
        await self._operator("ListAssets", request)
        return compute_pb2.ListAssetsResponse(assets=await runner.run(self.assets.list))

    @grpc_errors
    async def RemoveAsset(self, request: Any, context: Any) -> compute_pb2.RemoveAssetResponse:
        await self._operator("RemoveAsset", request)
        await runner.run(self.assets.remove, request.did)
        return compute_pb2.RemoveAssetResponse()

    @grpc_errors
    async def ListEngines(self, request: Any, context: Any) -> compute_pb2.ListEnginesResponse:
        await self._operator("ListEngines", request)
        return compute_pb2.ListEnginesResponse(engines=self.engines.describe())


_NO_PAYMENTS = (
    "this node takes no payments (no chain is configured: see [chain] in the node's config); "
    "use FreeStartCompute within an environment's free tier"
)


def _stamp(stamp: timestamp_pb2.Timestamp, seconds: float) -> None:
    nanos = int(seconds * 1e9)
    stamp.seconds = nanos // 1_000_000_000
    stamp.nanos = nanos % 1_000_000_000


def job_info(view: JobView, info: compute_pb2.JobInfo | None = None) -> compute_pb2.JobInfo:
    """The wire's JobInfo of a job's status view, written into ``info`` (e.g. a reply's
    ``jobs.add()``, so a long listing copies nothing) or a new one.

    Every nested message is filled in place: per-field work in Python is what a long listing
    costs, not the database (1,000 jobs: ~12 ms here, against ~20 ms building sub-messages
    and copying them in).
    """
    if info is None:
        info = compute_pb2.JobInfo()
    info.job_id = view.job_id
    info.workflow_id = view.workflow_id
    info.stage_index = view.stage_index
    info.owner = view.owner
    info.environment_id = view.environment_id
    info.status = view.status
    info.status_text = view.status_text
    info.run_after_job_ids.extend(view.run_after)
    info.max_duration_seconds = view.max_duration_seconds
    info.algorithm_image = view.algorithm_image
    info.terminal = view.terminal
    info.max_queue_seconds = view.queue_limit_seconds or 0
    if view.exit_code is not None:  # the algorithm ended: how, as its engine saw it
        info.exit_code = view.exit_code
        info.termination.SetInParent()
        info.termination.exit_code = view.exit_code
        info.termination.oom_killed = view.oom_killed
    if view.metadata is not None:
        info.metadata.SetInParent()  # present even when empty ({} was sent)
        info.metadata.update(view.metadata)
    _stamp(info.created, view.created_at)
    if view.started_at is not None:
        _stamp(info.started, view.started_at)
    if view.algorithm_finished_at is not None:
        _stamp(info.algorithm_finished, view.algorithm_finished_at)
    if view.finished_at is not None:
        _stamp(info.finished, view.finished_at)
    if view.results_expire_at is not None:
        _stamp(info.results_expire, view.results_expire_at)
    info.resources.extend(capacity.granted_resources(view.resources))
    add_result = info.results.add
    for r in view.results:
        add_result(index=r.index, name=r.name, kind=r.kind, size=r.size, sha256=r.sha256)
    add_event = info.history.add
    for e in view.history:
        _stamp(add_event(status=e.status, message=e.message).time, e.time)
    info.payment.CopyFrom(payment_state(view.payment))
    return info


def _listing(views: list[JobView], reply: Any) -> Any:
    """``reply`` (a message with ``repeated JobInfo jobs``) with one entry per view, built in place."""
    add = reply.jobs.add
    for view in views:
        job_info(view, add())
    return reply


# -- units on the database thread --------------------------------------------------------


def job_status(job_id: str, caller: str) -> list[JobView]:
    """The job's status view, if ``caller`` may see it (NOT_FOUND otherwise)."""
    return jobs.job_views([visible_stage(job_id, caller).job_id])


def _workflow_status(workflow_id: str, caller: str) -> list[JobView]:
    return jobs.workflow_views(visible_workflow(workflow_id, caller).id)


def _payment_of(workflow_id: str, caller: str) -> tuple[Workflow, Payment | None]:
    workflow = visible_workflow(workflow_id, caller)
    return workflow, payments_store.payment(workflow.id)


def _environment_ids(plans: list[StagePlan]) -> set[str]:
    return {plan.environment.id for plan in plans}


def _free_tier_problem(plans: list[StagePlan], workflow: compute_pb2.Workflow) -> str | None:
    """Why a stage is outside its environment's free tier, or None when every one fits.

    A stage that names no duration gets the free tier's maximum rather than a refusal (its plan
    is changed so). The environment is the one the plan was made with (the catalog's view).
    """
    for plan in plans:
        tier = plan.environment.free
        where = f"stage {plan.index}"
        if not tier.enabled:
            return f"{where}: environment {plan.environment.id!r} has no free tier"
        if imagebuild.wants_build(plan.stage.algorithm.container) and not tier.allow_image_build:
            return (
                f"{where}: the free tier of {plan.environment.id!r} does not build images from a Dockerfile; "
                "give a container image, or start a paid job"
            )
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
    return None


def _free_capacity_problem(plans: list[StagePlan], owner: str, usage: dict[str, FreeUsage]) -> str | None:
    """Why the workflow's stages do not fit in the free tier's capacity now, given ``usage``
    (free jobs running or queued per environment, the workflow's own not counted)."""
    for env_id in sorted(usage):
        env = next(p.environment for p in plans if p.environment.id == env_id)
        tier = env.free
        wanted = sum(1 for p in plans if p.environment.id == env_id)
        used = usage[env_id]
        mine_counts = tier.max_jobs_per_consumer and owner != ANYONE  # an unsigned caller's is unknown
        if mine_counts and used.mine + wanted > tier.max_jobs_per_consumer:
            return (
                f"the free tier of {env_id!r} allows {tier.max_jobs_per_consumer} jobs per consumer at once; "
                f"this workflow has {wanted} and you have {used.mine} running or queued"
            )
        if tier.max_concurrent_jobs and used.everyone + wanted > tier.max_concurrent_jobs:
            return (
                f"the free tier of {env_id!r} is full: {used.everyone} of {tier.max_concurrent_jobs} free jobs "
                "are running or queued; try again later"
            )
    return None
