"""Granting resources from an environment's capacity, in one transaction per grant.

The database is the single source of what is in use: the sum of what every
non-terminal stage of the environment holds. Because the check and the grant
happen in one transaction, two stages can never overcommit a machine, and a
restarted node knows exactly what is taken.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from c2d.common.v1 import common_pb2
from host.store.models import Stage, database_proxy


def in_use(environment_id: str) -> tuple[dict[str, float], set[str], int]:
    """Amount held per resource id, device ids held, and the number of stages holding capacity."""
    used: dict[str, float] = defaultdict(float)
    devices: set[str] = set()
    holders = 0
    query = Stage.select(Stage.granted).where(
        (Stage.terminal == False) & (Stage.environment_id == environment_id) & Stage.granted.is_null(False)
    )
    for row in query:
        holders += 1
        for grant in row.granted:
            used[grant["id"]] += grant["amount"]
            devices.update(grant.get("device_ids", []))
    return used, devices, holders


def try_grant(stage: Stage, env: common_pb2.Environment, now: float) -> bool:
    """Grants the stage what it asked for if it fits now; False leaves it queued."""
    with database_proxy.atomic():
        used, held_devices, holders = in_use(env.id)
        if env.max_jobs and holders >= env.max_jobs:
            return False
        granted = _fit(stage.resources, env, used, held_devices)
        if granted is None:
            return False
        return bool(
            Stage.update(granted=granted, started_at=now)
            .where((Stage.job_id == stage.job_id) & Stage.granted.is_null(True) & (Stage.terminal == False))
            .execute()
        )


def _fit(
    requested: list[dict[str, Any]], env: common_pb2.Environment, used: dict[str, float], held: set[str]
) -> list[dict[str, Any]] | None:
    by_id = {r.id: r for r in env.resources}
    granted = []
    for request in requested:
        resource = by_id.get(request["id"])
        amount = request["amount"]
        if resource is None or not _fits(used[request["id"]], amount, resource.total):
            return None
        grant = {**request, "device_ids": []}
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


def granted_resources(granted: list[dict[str, Any]] | None) -> list[common_pb2.GrantedResource]:
    return [
        common_pb2.GrantedResource(
            id=g["id"], type=g.get("type", 0), amount=g["amount"], device_ids=g.get("device_ids", [])
        )
        for g in granted or []
    ]
