"""One view of the environments: the engines' fingerprints with the operator's terms applied.

Engines say what a machine is; the node's config (:mod:`host.envterms`) says
what it costs, what is free, who may use each tier (its access lists, and
whether it has an allow list: never the addresses on it), what one job may
have and how long results are kept. An environment whose terms do not fit it
(a resource it lacks, a per-job minimum above what it offers a job) is not
offered at all, and the reason is
logged once: offering it would leave that resource unlimited. The effective
environments are built once per change of any engine's fingerprint or health
and cached, so the orchestrator (capacity, storage expiry), the free-tier
checks and ``GetEnvironments`` all read the same figures; only the live job
counts come from the database, per ``GetEnvironments``.

The cached messages are shared: readers must not change them
(:meth:`EnvironmentCatalog.listing` hands out copies).
"""

from __future__ import annotations

import builtins
import operator
import time
from collections.abc import Callable, Mapping

import structlog

from c2d.common.v1 import common_pb2
from host.engines.registry import EngineRegistry
from host.envterms import DEFAULT_QUEUE_SECONDS, EnvironmentTerms, FreeTerms
from host.orchestrator import capacity
from host.store import counts, runner

FeesFor = Callable[[common_pb2.Environment], list[common_pb2.ChainFees]]
DEVELOPMENT_FREE = FreeTerms()  # a development node computes for free where the operator said nothing
log = structlog.get_logger()


class EnvironmentCatalog:
    """The effective environments of every healthy engine, by id."""

    def __init__(
        self,
        engines: EngineRegistry,
        terms: Mapping[str, EnvironmentTerms],
        *,
        development: bool = False,
        escrow_address: str = "",
        payee_address: str = "",
        default_fees: FeesFor | None = None,
        default_queue_seconds: int = DEFAULT_QUEUE_SECONDS,
    ) -> None:
        """``default_queue_seconds``: the queue limit of an environment whose terms set none
        (``[compute] max_queue_seconds``)."""
        self.engines = engines
        self.terms = terms
        self.development = development
        self.escrow_address = escrow_address  # for fees that name none
        self.payee_address = payee_address  # the node's own address, which consumers authorize
        self.default_fees = default_fees  # for environments the config prices not at all
        self.default_queue_seconds = default_queue_seconds
        self._seen: tuple[object, ...] | None = None  # each engine's state and fingerprint, by identity
        self._environments: list[common_pb2.Environment] = []
        self._by_id: dict[str, common_pb2.Environment] = {}
        self._reported: set[str] = set()  # terms problems already logged (refreshes are frequent)

    def list(self, engine: str = "") -> list[common_pb2.Environment]:
        """The effective environments (shared: read only), of one engine when ``engine`` is set."""
        self._refresh()
        return [env for env in self._environments if not engine or env.engine == engine]

    def get(self, env_id: str) -> common_pb2.Environment | None:
        """One effective environment (shared: read only), or None when no healthy engine has it."""
        self._refresh()
        return self._by_id.get(env_id)

    # builtins.list: inside this class ``list`` is the method above.
    async def listing(self, engine: str = "") -> builtins.list[common_pb2.Environment]:
        """What ``GetEnvironments`` answers: copies of the environments with their live job counts
        and, per tier, the stages waiting for capacity and how long the first of them has waited;
        an environment that shares a pool shows what the stages of all the pool's environments hold
        of it (which is why a stage may wait while its own environment has room)."""
        by_env = await runner.run(counts.environment_counts)
        members = capacity.pool_members(self.list())
        by_pool = await runner.run(capacity.pool_usage, members) if members else {}
        now = time.time()  # the clock the stages' queue times are stored in
        listed = []
        for env in self.list(engine):
            copy = common_pb2.Environment()
            copy.CopyFrom(env)
            counted = by_env.get(env.id) or counts.EnvironmentCounts()
            copy.running_jobs = counted.running
            copy.queued_jobs = counted.free.queued + counted.paid.queued
            _fill_queue(copy.free_queue, counted.free, now)
            _fill_queue(copy.paid_queue, counted.paid, now)
            if (key := members.get(env.id)) is not None:
                capacity.show_pool_usage(copy.pool, by_pool.get(key) or capacity.Usage())
            listed.append(copy)
        return listed

    def _refresh(self) -> None:
        """Rebuilds the view when an engine's fingerprint or health changed since the last build."""
        seen = tuple(item for s in self.engines.supervisors.values() for item in (s.state, s.fingerprint))
        if self._unchanged(seen):
            return
        environments = [env for env in self.engines.environments() if self._usable(env)]
        for env in environments:
            self._apply_terms(env)
            _cap_by_pool(env)
        self._environments = environments
        self._by_id = {env.id: env for env in environments}
        self._seen = seen

    def _unchanged(self, seen: tuple[object, ...]) -> bool:
        before = self._seen
        return before is not None and len(seen) == len(before) and all(map(operator.is_, seen, before))

    def _usable(self, env: common_pb2.Environment) -> bool:
        """Whether the operator's terms fit the environment as its engine reports it (logged once if not)."""
        problem = self.terms.get(env.id, EnvironmentTerms()).problem(env)
        if problem is not None and problem not in self._reported:
            self._reported.add(problem)
            log.error("environment not offered: its terms do not fit it", environment=env.id, problem=problem)
        return problem is None

    def _apply_terms(self, env: common_pb2.Environment) -> None:
        terms = self.terms.get(env.id, EnvironmentTerms())
        for resource in env.resources:
            if resource.id in terms.resources:
                terms.resources[resource.id].apply(resource)
        free = terms.free if terms.free is not None or not self.development else DEVELOPMENT_FREE
        if free is not None:
            env.free.CopyFrom(free.tier(env))
        if terms.paid_access.restricted:
            env.paid_access.CopyFrom(terms.paid_access.policy())
        for fees in terms.fees:
            parsed = env.fees.add()
            parsed.CopyFrom(fees)
            parsed.escrow_address = parsed.escrow_address or self.escrow_address
        if not env.fees and self.default_fees is not None:
            env.fees.extend(self.default_fees(env))
        for fees in env.fees:
            fees.payee_address = self.payee_address
        if terms.storage_expiry_seconds is not None:
            env.storage_expiry_seconds = terms.storage_expiry_seconds
        env.max_queue_seconds = terms.max_queue_seconds or self.default_queue_seconds


def _cap_by_pool(env: common_pb2.Environment) -> None:
    """One job never gets more than its pool has in all: a larger request could only wait until
    it expired, so the per-job maximum says so and such a request is refused up front."""
    if capacity.pool_key(env) is None:
        return
    totals = {r.id: r.total for r in env.pool.resources}
    for resource in env.resources:
        if totals.get(resource.id, 0) > 0:  # a max of 0 would read as "up to the total"
            resource.max = min(resource.max or resource.total, totals[resource.id])


def _fill_queue(tier: common_pb2.QueueTier, queue: counts.QueueCount, now: float) -> None:
    tier.queued_jobs = queue.queued
    if queue.first_queued_at is not None:
        # Whole seconds, never below 1 while one waits: "waiting" must not read as "none waits".
        tier.longest_wait_seconds = max(1, int(now - queue.first_queued_at))
