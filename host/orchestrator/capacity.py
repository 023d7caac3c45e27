"""Granting resources from an environment's capacity, in the scheduler's transaction.

The database is the single source of what is in use: the sum of what every
non-terminal stage of the environment holds. The scheduling pass reads it once
(:meth:`Ledger.load`) and grants in the same transaction on the database
thread, so two stages can never overcommit a machine, and a restarted node
knows exactly what is taken.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from c2d.common.v1 import common_pb2
from host.store.models import Stage, StageResource


@dataclass
class Usage:
    """What the non-terminal stages of one environment hold."""

    amounts: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # per resource id
    devices: set[str] = field(default_factory=set)  # device ids held
    holders: int = 0  # stages holding capacity

    def add(self, granted: list[StageResource]) -> None:
        self.holders += 1
        for grant in granted:
            self.amounts[grant["id"]] += grant["amount"]
            self.devices.update(grant.get("device_ids", []))


class Ledger:
    """What every environment has granted, read once per scheduling pass and kept up to date as it grants.

    Build it and grant from it inside one database unit (one transaction on the database
    thread), so that no other grant or release interleaves between the read and the writes.
    """

    def __init__(self, usage: dict[str, Usage]) -> None:
        self._usage = usage

    @classmethod
    def load(cls) -> Ledger:
        """One query: the grants of every stage that holds capacity, summed per environment."""
        usage: dict[str, Usage] = defaultdict(Usage)
        query = Stage.select(Stage.environment_id, Stage.granted).where(
            (Stage.terminal == False) & Stage.granted.is_null(False)
        )
        for row in query:
            usage[row.environment_id].add(row.granted)
        return cls(usage)

    def amounts(self) -> dict[tuple[str, str], float]:
        """(environment id, resource id) -> the amount granted, for every environment holding any."""
        return {
            (environment_id, resource_id): amount
            for environment_id, usage in self._usage.items()
            for resource_id, amount in usage.amounts.items()
        }

    def usage(self, environment_id: str) -> Usage:
        return self._usage[environment_id]

    def try_grant(self, stage: Stage, env: common_pb2.Environment, now: float) -> bool:
        """Grants the stage what it asked for if it fits now (updating ``stage``); False leaves it queued."""
        usage = self._usage[env.id]
        if env.max_jobs and usage.holders >= env.max_jobs:
            return False
        granted = _fit(stage.resources, env, usage.amounts, usage.devices)
        if granted is None:
            return False
        taken = (
            Stage.update(granted=granted, started_at=now)
            .where((Stage.job_id == stage.job_id) & Stage.granted.is_null(True) & (Stage.terminal == False))
            .execute()
        )
        if not taken:
            return False
        usage.add(granted)
        stage.granted, stage.started_at = granted, now
        return True


def _fit(
    requested: list[StageResource], env: common_pb2.Environment, used: dict[str, float], held: set[str]
) -> list[StageResource] | None:
    by_id = {r.id: r for r in env.resources}
    granted: list[StageResource] = []
    for request in requested:
        resource = by_id.get(request["id"])
        amount = request["amount"]
        if resource is None or not _fits(used[request["id"]], amount, resource.total):
            return None
        grant: StageResource = {**request, "device_ids": []}
        if resource.type == common_pb2.RESOURCE_TYPE_GPU and resource.devices:
            free = [d.id for d in resource.devices if d.id not in held]
            if len(free) < int(request["amount"]):
                return None
            grant["device_ids"] = free[: int(request["amount"])]
        granted.append(grant)
    return granted


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
