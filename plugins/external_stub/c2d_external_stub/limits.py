"""What a job was granted (cpu, ram, disk) and the resource limits that enforce it.

With no container there is no cgroup: the grant becomes POSIX resource limits
on the algorithm's processes. RLIMIT_CPU caps CPU seconds at cores x time
limit, RLIMIT_AS caps each process's address space at the granted RAM, and
RLIMIT_FSIZE caps each file at the granted disk. These are per process and
per file, not totals: the stub's limits are a courtesy, not a sandbox.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from c2d.common.v1 import common_pb2
from c2d.plugin.kit.grant import Grant, resource_kind
from c2d_external_stub.config import EnvironmentConfig
from c2d_external_stub.errors import invalid

GIB = 1 << 30

__all__ = ["Grant", "grant_from", "resource_kind", "rlimits"]


def grant_from(resources: Iterable[common_pb2.GrantedResource], env: EnvironmentConfig) -> Grant:
    """The job's grant, checked against what the environment offers one job."""
    amounts: dict[str, float] = {}
    maxima = {"cpu": env.cpu, "ram": env.ram_gib, "disk": env.disk_gib}
    for granted in resources:
        kind = resource_kind(granted)
        name = granted.id or common_pb2.ResourceType.Name(granted.type)
        if kind is None or kind not in maxima:
            raise invalid(f"environment {env.id!r} has no resource {name!r} (it offers cpu, ram and disk)")
        if kind in amounts:
            raise invalid(f"resource {kind!r} is granted twice")
        if not math.isfinite(granted.amount) or granted.amount < 0:
            raise invalid(f"resource {name!r}: amount must be a number >= 0, got {granted.amount!r}")
        if granted.amount > maxima[kind]:
            raise invalid(
                f"resource {name!r}: {granted.amount:g} is more than environment {env.id!r} offers "
                f"one job ({maxima[kind]:g})"
            )
        amounts[kind] = granted.amount
    return Grant(
        cpu=amounts.get("cpu", 0.0), ram_gib=amounts.get("ram", 0.0), disk_gib=amounts.get("disk", 0.0)
    )


def rlimits(grant: Grant, time_limit_seconds: int) -> dict[str, int]:
    """setrlimit values by ``resource`` constant name, for the shim to apply to the algorithm."""
    limits: dict[str, int] = {}
    if grant.cpu > 0:
        limits["RLIMIT_CPU"] = max(1, math.ceil(grant.cpu * time_limit_seconds))
    if grant.ram_gib > 0:
        limits["RLIMIT_AS"] = max(1, int(grant.ram_gib * GIB))
    if grant.disk_gib > 0:
        limits["RLIMIT_FSIZE"] = max(1, int(grant.disk_gib * GIB))
    return limits
