"""Checks a workflow completely before anything is stored, and plans its stages.

Every problem raises INVALID_ARGUMENT (or PERMISSION_DENIED for policy
refusals) with a message naming the stage and the field, so a consumer can
fix the request; a refused workflow leaves no trace in the database.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.quoting import quoted
from host import statuses
from host.envterms import DEFAULT_QUEUE_SECONDS
from host.errors import invalid
from host.orchestrator import constraints, imagebuild
from host.store import jobs
from host.store.models import StageResource

MAX_STAGES = 64
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Docker's reference grammar (github.com/distribution/reference): [host[:port]/]component[/component]*,
# the tag and the digest in their own fields.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]{{1,5}})?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
IMAGE_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
MAX_IMAGE_NAME = 255


@dataclass
class StagePlan:
    """A stage as it will be stored: its job id, where it runs, what it asks for."""

    index: int
    job_id: str
    environment: common_pb2.Environment
    engine: str
    stage: compute_pb2.Stage
    resources: list[StageResource]
    max_duration_seconds: int
    max_queue_seconds: int = 0  # the longest it may wait for capacity once queued
    run_after_indices: list[int] = field(default_factory=list)
    run_after_jobs: list[str] = field(default_factory=list)
    allow_network: bool = False

    @property
    def run_after(self) -> list[str]:
        return self.run_after_jobs


class EnvironmentLookup:
    """What validation needs from the engines: the environment by id, and its engine."""

    def __init__(self, environments: list[common_pb2.Environment], builders: Iterable[str] = ()) -> None:
        """``builders``: the engines that build images from a Dockerfile (Capabilities.image_build)."""
        self.by_id = {env.id: env for env in environments}
        self.builders = frozenset(builders)

    def get(self, env_id: str, where: str) -> common_pb2.Environment:
        if not env_id:
            raise invalid(f"{where}: no environment: set environment_id (see GetEnvironments)")
        env = self.by_id.get(env_id)
        if env is None:
            known = ", ".join(sorted(self.by_id)) or "none available now"
            raise invalid(f"{where}: unknown environment {quoted(env_id)} (available: {known})")
        return env


def plan_workflow(
    workflow: compute_pb2.Workflow,
    owner: str,
    environments: EnvironmentLookup,
    check_stage: Any,
    default_duration: int,
) -> list[StagePlan]:
    """Validates ``workflow`` for ``owner`` and returns one plan per stage, in index order.

    ``check_stage(plan)`` applies asset and policy checks to one stage and
    returns whether its algorithm may use the network. Jobs named in runAfter (and, through
    ``check_stage``, registered assets) are read from the database: call it on the database
    thread, in one :func:`host.store.runner.run` unit with whatever the caller checks next.
    """
    stages = list(workflow.stages)
    if not stages:
        raise invalid("the workflow has no stages")
    if len(stages) > MAX_STAGES:
        raise invalid(f"the workflow has {len(stages)} stages; at most {MAX_STAGES} are allowed")
    indices = [s.index for s in stages]
    if len(set(indices)) != len(indices):
        raise invalid(f"stage indices must be unique, got {sorted(indices)}")
    _check_viewers(workflow.viewers)
    plans = []
    for stage in sorted(stages, key=lambda s: s.index):
        where = f"stage {stage.index}"
        env = environments.get(stage.environment_id or workflow.environment_id, where)
        requested = list(stage.resources) or list(workflow.resources)
        duration = stage.max_duration_seconds or workflow.max_duration_seconds or default_duration
        plan = StagePlan(
            index=stage.index,
            job_id=uuid.uuid4().hex,
            environment=env,
            engine=env.engine,
            stage=stage,
            resources=grant_request(env, requested, where),
            max_duration_seconds=_check_duration(env, duration, default_duration, where),
            max_queue_seconds=queue_limit(env, workflow.max_queue_seconds),
        )
        _check_algorithm(stage.algorithm, where)
        _resolve_dependencies(plan, set(indices), owner)
        plans.append(plan)
    _check_acyclic(plans)
    by_index = {p.index: p for p in plans}
    for plan in plans:
        plan.run_after_jobs = [by_index[i].job_id for i in plan.run_after_indices] + plan.run_after_jobs
        plan.allow_network = check_stage(plan)  # a registered algorithm's container is in place now
        if imagebuild.wants_build(plan.stage.algorithm.container):
            imagebuild.check_engine_builds(plan.engine, environments.builders, f"stage {plan.index}")
    return plans


def grant_request(
    env: common_pb2.Environment, requested: list[common_pb2.ResourceRequest], where: str
) -> list[StageResource]:
    """What the stage asks for, every resource of the environment included: one it does not name
    at its per-job minimum, raised to what its constraints need (:mod:`.constraints`)."""
    by_id = {r.id: r for r in env.resources}
    asked: dict[str, float] = {}
    for request in requested:
        if request.id not in by_id:
            raise invalid(
                f"{where}: environment {env.id!r} has no resource {quoted(request.id)} (has {sorted(by_id)})"
            )
        if request.id in asked:
            raise invalid(f"{where}: resource {quoted(request.id)} is requested twice")
        asked[request.id] = request.amount
    for resource in env.resources:  # what was asked first: the defaults are computed from it
        if resource.id in asked:
            _check_amount(resource, asked[resource.id], where)
    amounts = constraints.fill_defaults(env.resources, asked)
    for resource in env.resources:
        if resource.id not in asked:
            _check_amount(resource, amounts[resource.id], where, default=True)
    constraints.check(env.resources, amounts, asked, where)
    return [
        {"id": resource.id, "type": resource.type, "amount": amounts[resource.id]}
        for resource in env.resources
        if amounts[resource.id] > 0
    ]


def _check_amount(resource: common_pb2.Resource, amount: float, where: str, default: bool = False) -> None:
    """The amount within what one job may have of the resource. Written so that a NaN (which
    compares false with everything) fails: every test asks for what must hold, not for what must not."""
    ceiling = resource.max or resource.total
    said = f"{where}: {resource.id} {constraints.quantity(amount, resource)}"
    said += constraints.DEFAULTED if default else ""
    if not math.isfinite(amount):
        raise invalid(f"{where}: {resource.id} = {amount} is not a finite number")
    if not (amount >= 0 and amount >= resource.min):
        raise invalid(
            f"{said} is below the minimum of {constraints.quantity(resource.min, resource)} per job"
        )
    if ceiling and not amount <= ceiling:
        raise invalid(f"{said} is above the maximum of {constraints.quantity(ceiling, resource)} per job")
    if resource.type == common_pb2.RESOURCE_TYPE_GPU and amount != int(amount):
        raise invalid(f"{where}: {resource.id} counts whole devices, got {amount:g}")


def queue_limit(env: common_pb2.Environment, requested: int) -> int:
    """How long a stage may wait for capacity: what the consumer asked (0: no preference), never
    more than the environment allows. Asking for more is no error: the consumer accepts any wait
    up to that, and the environment's limit is within it."""
    if env.max_queue_seconds and (not requested or requested > env.max_queue_seconds):
        return env.max_queue_seconds
    return requested or DEFAULT_QUEUE_SECONDS


def _check_duration(env: common_pb2.Environment, duration: int, default: int, where: str) -> int:
    if duration == default and env.max_job_duration_seconds and default > env.max_job_duration_seconds:
        duration = env.max_job_duration_seconds  # the node's default, fitted to the environment
    if duration < max(env.min_job_duration_seconds, 1):
        raise invalid(f"{where}: max duration {duration}s is below the environment's minimum")
    if env.max_job_duration_seconds and duration > env.max_job_duration_seconds:
        raise invalid(
            f"{where}: max duration {duration}s is above the environment's maximum "
            f"{env.max_job_duration_seconds}s"
        )
    return duration


def _check_algorithm(algorithm: compute_pb2.Algorithm, where: str) -> None:
    if not (algorithm.rawcode or algorithm.did or _struct(algorithm.files)):
        raise invalid(
            f"{where}: the algorithm is empty: give rawcode, files, or the did of a registered algorithm"
        )
    if algorithm.did and imagebuild.wants_build(algorithm.container):
        raise invalid(
            f"{where}: a registered algorithm runs its own container: give no dockerfile with its did"
        )
    if algorithm.did:
        return  # the registered algorithm's container applies unless overridden; checked with the asset
    container = algorithm.container
    if imagebuild.wants_build(container):
        imagebuild.check_build(container, where)
        return
    if not container.image:
        raise invalid(f"{where}: the algorithm has no container image")
    check_image(container, where)


def check_image(container: compute_pb2.AlgorithmContainer, where: str) -> None:
    """The container names an image by Docker's reference grammar, with a tag or a digest.

    Checked before anything is stored, so a malformed reference is the consumer's INVALID_ARGUMENT
    now rather than an engine's failure (or worse, a reference the engine reads otherwise) later.
    """
    if not container.entrypoint.strip():
        raise invalid(f'{where}: the algorithm container has no entrypoint (e.g. "python $ALGO")')
    image = container.image
    if len(image) > MAX_IMAGE_NAME or not IMAGE_NAME.fullmatch(image):
        raise invalid(
            f"{where}: image {quoted(image)} is not a valid image name: [registry[:port]/]name[/name...] "
            "in lower case, with the tag in tag and the digest in checksum"
        )
    if container.tag and not IMAGE_TAG.fullmatch(container.tag):
        raise invalid(
            f"{where}: image tag {quoted(container.tag)} is not a valid tag "
            "(letters, digits, _ . -, not starting with . or -, at most 128)"
        )
    if container.checksum and not DIGEST.match(container.checksum):
        raise invalid(
            f"{where}: image checksum must be sha256:<64 hex digits>, got {quoted(container.checksum)}"
        )
    if not container.tag and not container.checksum:
        raise invalid(
            f"{where}: image {quoted(image)} needs a tag or a digest (checksum); 'latest' is not implied"
        )


def _resolve_dependencies(plan: StagePlan, indices: set[int], owner: str) -> None:
    """The stage's runAfter. A job id is looked up only for a known owner (a signed call): for
    anyone else (``owner`` empty, an unsigned InitializeCompute) any answer would tell whether
    the job exists, whose it is or whether it finished, so it is taken as given and checked at start.
    """
    where = f"stage {plan.index}"
    for dependency in plan.stage.run_after:
        target = dependency.WhichOneof("target")
        if target == "stage_index":
            index = dependency.stage_index
            if index == plan.index:
                raise invalid(f"{where}: a stage cannot run after itself")
            if index not in indices:
                raise invalid(f"{where}: runAfter names stage {index}, which is not in this workflow")
            plan.run_after_indices.append(index)
        elif target == "job_id" and not owner:
            plan.run_after_jobs.append(dependency.job_id)
        elif target == "job_id":
            previous = jobs.stage(dependency.job_id)
            if previous is None or previous.owner != owner:
                raise invalid(f"{where}: runAfter names unknown job {quoted(dependency.job_id)}")
            if previous.status != statuses.S.JOB_STATUS_FINISHED:
                raise invalid(
                    f"{where}: runAfter job {quoted(dependency.job_id)} has not finished successfully"
                )
            plan.run_after_jobs.append(previous.job_id)
        else:
            raise invalid(f"{where}: an empty runAfter entry")


def _check_acyclic(plans: list[StagePlan]) -> None:
    edges = {p.index: p.run_after_indices for p in plans}
    state: dict[int, str] = {}

    def visit(node: int, path: list[int]) -> None:
        if state.get(node) == "done":
            return
        if state.get(node) == "active":
            cycle = " -> ".join(str(i) for i in [*path[path.index(node) :], node])
            raise invalid(f"the stages' runAfter form a cycle: {cycle}")
        state[node] = "active"
        for nxt in edges[node]:
            visit(nxt, [*path, node])
        state[node] = "done"

    for node in edges:
        visit(node, [])


def _check_viewers(viewers: Iterable[str]) -> None:
    for viewer in viewers:
        if not ADDRESS.fullmatch(viewer):
            raise invalid(f"viewer {quoted(viewer)} is not an Ethereum address")


def _struct(value: Any) -> dict[str, Any]:
    return json_format.MessageToDict(value) if value.ByteSize() else {}
