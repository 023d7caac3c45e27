"""Granting resources from an environment's capacity, in the scheduler's transaction.

The database is the single source of what is in use: the sum of what every
non-terminal stage of the environment holds. The scheduling pass reads it once
(:meth:`Ledger.load`) and grants in the same transaction on the database
thread, so two stages can never overcommit a machine, and a restarted node
knows exactly what is taken.

Environments of one engine on one machine may share its hardware: each names
the same :class:`~c2d.common.v1.common_pb2.Pool`. A stage in such an
environment is granted only if its environment's own limits and the pool's
totals (summed over the stages of every environment of the pool) both allow
it, and a GPU held in any environment of the pool is never granted again. An
environment with no pool is bounded by its own resources alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from c2d.common.v1 import common_pb2
from host.store.models import Stage, StageResource

PoolKey = tuple[str, str]  # (engine, pool id): a pool's id is the engine's own


def pool_key(env: common_pb2.Environment) -> PoolKey | None:
    """The pool the environment draws from, or None when it shares no hardware."""
    return (env.engine, env.pool.id) if env.HasField("pool") and env.pool.id else None


def pool_members(environments: Iterable[common_pb2.Environment]) -> dict[str, PoolKey]:
    """Environment id -> its pool, for the environments that have one."""
    return {env.id: key for env in environments if (key := pool_key(env)) is not None}


class Fit(Enum):
    """Whether a stage fits now, and if not, whose limit it hit (which decides who waits behind it)."""

    FITS = "fits"
    ENVIRONMENT_FULL = "environment full"
    POOL_FULL = "pool full"


@dataclass
class Usage:
    """What the non-terminal stages of one environment (or of every environment of one pool) hold."""

    amounts: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # per resource id
    devices: set[str] = field(default_factory=set)  # device ids held
    holders: int = 0  # stages holding capacity

    def add(self, granted: list[StageResource]) -> None:
        self.holders += 1
        for grant in granted:
            self.amounts[grant["id"]] += grant["amount"]
            self.devices.update(grant.get("device_ids", []))


class Ledger:
    """What every environment and pool has granted, read once per scheduling pass and kept up to
    date as it grants.

    Build it and grant from it inside one database unit (one transaction on the database
    thread), so that no other grant or release interleaves between the read and the writes.
    """

    def __init__(self, usage: dict[str, Usage], pools: dict[PoolKey, Usage] | None = None) -> None:
        self._usage = usage
        self._pools: dict[PoolKey, Usage] = pools if pools is not None else defaultdict(Usage)

    @classmethod
    def load(cls, members: Mapping[str, PoolKey] | None = None) -> Ledger:
        """One query: the grants of every stage that holds capacity, summed per environment and,
        for the environments in ``members`` (environment id -> pool), per pool."""
        members = members or {}
        usage: dict[str, Usage] = defaultdict(Usage)
        pools: dict[PoolKey, Usage] = defaultdict(Usage)
        query = Stage.select(Stage.environment_id, Stage.granted).where(
            (Stage.terminal == False) & Stage.granted.is_null(False)
        )
        for row in query:
            usage[row.environment_id].add(row.granted)
            if (key := members.get(row.environment_id)) is not None:
                pools[key].add(row.granted)
        return cls(usage, pools)

    def amounts(self) -> dict[tuple[str, str], float]:
        """(environment id, resource id) -> the amount granted, for every environment holding any."""
        return {
            (environment_id, resource_id): amount
            for environment_id, usage in self._usage.items()
            for resource_id, amount in usage.amounts.items()
        }

    def usage(self, environment_id: str) -> Usage:
        return self._usage[environment_id]

    def pools(self) -> Mapping[PoolKey, Usage]:
        """Pool -> what the stages of its environments hold (the pools of the members it was loaded with)."""
        return self._pools

    def try_grant(self, stage: Stage, env: common_pb2.Environment, now: float) -> Fit:
        """Grants the stage what it asked for if it fits now (updating ``stage``); anything but
        FITS leaves it queued, and says whether its environment or its pool is full."""
        usage = self._usage[env.id]
        if env.max_jobs and usage.holders >= env.max_jobs:
            return Fit.ENVIRONMENT_FULL
        key = pool_key(env)
        pool = self._pools[key] if key is not None else None
        fit, granted = _fit(stage.resources, env, usage, pool)
        if fit is not Fit.FITS:
            return fit
        taken = (
            Stage.update(granted=granted, started_at=now)
            .where((Stage.job_id == stage.job_id) & Stage.granted.is_null(True) & (Stage.terminal == False))
            .execute()
        )
        if not taken:
            return Fit.ENVIRONMENT_FULL  # granted or ended meanwhile: nothing changed, wait as before
        usage.add(granted)
        if pool is not None:
            pool.add(granted)
        stage.granted, stage.started_at = granted, now
        return Fit.FITS


def pool_usage(members: Mapping[str, PoolKey]) -> dict[PoolKey, Usage]:
    """What the stages of each pool's environments hold now (a unit for the database thread)."""
    return dict(Ledger.load(members).pools())


def show_pool_usage(pool: common_pb2.Pool, used: Usage) -> None:
    """Fills the pool's in_use and available (and which devices are taken) from the node's grants."""
    for resource in pool.resources:
        resource.in_use = used.amounts.get(resource.id, 0.0)
        resource.available = max(0.0, resource.total - resource.in_use)
        for device in resource.devices:
            device.in_use = device.id in used.devices


def _fit(
    requested: list[StageResource], env: common_pb2.Environment, usage: Usage, pool: Usage | None
) -> tuple[Fit, list[StageResource]]:
    """What to grant, checked against the environment's own limits first and then the pool's: a
    stage its environment cannot take yet holds up that environment only, one the pool cannot
    take holds up the whole pool."""
    by_id = {r.id: r for r in env.resources}
    pooled = {r.id: r for r in env.pool.resources} if pool is not None else {}
    granted: list[StageResource] = []
    short = Fit.FITS
    for request in requested:
        resource = by_id.get(request["id"])
        amount = request["amount"]
        if resource is None or not _fits(usage.amounts[request["id"]], amount, resource.total):
            return Fit.ENVIRONMENT_FULL, []
        shared = pooled.get(request["id"])
        if (
            pool is not None
            and shared is not None
            and not _fits(pool.amounts[request["id"]], amount, shared.total)
        ):
            short = Fit.POOL_FULL  # the other resources may still show the environment itself full
        grant: StageResource = {**request, "device_ids": []}
        if resource.type == common_pb2.RESOURCE_TYPE_GPU and resource.devices:
            wanted = int(amount)
            if len(_free_devices(resource, usage.devices)) < wanted:
                return Fit.ENVIRONMENT_FULL, []
            free = _free_devices(resource, pool.devices if pool is not None else usage.devices)
            if len(free) < wanted:
                short = Fit.POOL_FULL  # another environment of the pool holds them
            grant["device_ids"] = free[:wanted]
        granted.append(grant)
    return (short, granted) if short is Fit.FITS else (short, [])


def _free_devices(resource: common_pb2.Resource, held: set[str]) -> list[str]:
    """The resource's devices that no stage in ``held`` has: of the environment, or of its whole pool."""
    return [d.id for d in resource.devices if d.id not in held]


def _fits(used: float, amount: float, total: float) -> bool:
    """Whether ``amount`` more fits: asked positively, so that a NaN anywhere (which compares false
    with everything) never fits, and a negative amount never frees capacity for others."""
    return math.isfinite(used) and math.isfinite(amount) and amount >= 0 and used + amount <= total + 1e-9


def granted_resources(granted: Sequence[StageResource] | None) -> list[common_pb2.GrantedResource]:
    return [
        common_pb2.GrantedResource(
            id=g["id"],
            type=g.get("type", common_pb2.RESOURCE_TYPE_UNSPECIFIED),
            amount=g["amount"],
            device_ids=g.get("device_ids", []),
        )
        for g in granted or []
    ]
