"""What a job was granted: cores, memory, disk and specific GPU devices.

The node grants every resource of the environment (at its minimum when the
stage asked for none), but a test or another caller may leave one out; a
resource left out gets the environment's per-job minimum here, so no job
ever runs unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from c2d.common.v1 import common_pb2
from c2d.plugin.kit.environments import EnvironmentConfig
from c2d.plugin.kit.errors import invalid

GIB = 1 << 30
KIND_BY_TYPE = {
    common_pb2.RESOURCE_TYPE_CPU: "cpu",
    common_pb2.RESOURCE_TYPE_RAM: "ram",
    common_pb2.RESOURCE_TYPE_DISK: "disk",
    common_pb2.RESOURCE_TYPE_GPU: "gpu",
}
KINDS = frozenset(KIND_BY_TYPE.values())


@dataclass(frozen=True)
class Grant:
    cpu: float = 0.0
    ram_gib: float = 0.0
    disk_gib: float = 0.0
    gpus: tuple[str, ...] = field(default=())

    @property
    def ram_bytes(self) -> int:
        return int(self.ram_gib * GIB)

    @property
    def disk_bytes(self) -> int:
        return int(self.disk_gib * GIB)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["gpus"] = list(self.gpus)
        return data

    @classmethod
    def from_json(cls, data: object) -> Grant:
        if not isinstance(data, dict):
            return cls()
        values = {
            k: float(data[k]) for k in ("cpu", "ram_gib", "disk_gib") if isinstance(data.get(k), int | float)
        }
        gpus = data.get("gpus")
        return cls(**values, gpus=tuple(str(g) for g in gpus) if isinstance(gpus, list) else ())


def resource_kind(granted: common_pb2.GrantedResource) -> str | None:
    """cpu, ram, disk or gpu: by the resource's id, else by its type."""
    if granted.id in KINDS:
        return granted.id
    return KIND_BY_TYPE.get(granted.type)


def grant_from(resources: Iterable[common_pb2.GrantedResource], env: EnvironmentConfig) -> Grant:
    """The job's grant, checked against what the environment offers one job."""
    amounts: dict[str, float] = {}
    devices: tuple[str, ...] = ()
    maxima = {"cpu": env.cpu, "ram": env.ram_gib, "disk": env.disk_gib, "gpu": float(len(env.gpu_ids))}
    for granted in resources:
        kind = resource_kind(granted)
        name = granted.id or common_pb2.ResourceType.Name(granted.type)
        if kind is None:
            raise invalid(
                f"environment {env.id!r} has no resource {name!r} (it offers cpu, ram, disk and gpu)"
            )
        if kind in amounts:
            raise invalid(f"resource {kind!r} is granted twice")
        if not math.isfinite(granted.amount) or granted.amount < 0:
            raise invalid(f"resource {name!r}: amount must be a number >= 0, got {granted.amount!r}")
        if granted.amount > maxima[kind] + 1e-9:
            raise invalid(
                f"resource {name!r}: {granted.amount:g} is more than environment {env.id!r} offers "
                f"one job ({maxima[kind]:g})"
            )
        if kind == "gpu":
            devices = gpu_devices(granted, env)
        amounts[kind] = granted.amount
    return Grant(
        cpu=amounts.get("cpu") or env.min_cpu,
        ram_gib=amounts.get("ram") or env.min_ram_gib,
        disk_gib=amounts.get("disk") or env.min_disk_gib,
        gpus=devices,
    )


def gpu_devices(granted: common_pb2.GrantedResource, env: EnvironmentConfig) -> tuple[str, ...]:
    """The specific devices of a GPU grant: the node names them, and they must be this environment's."""
    ids = tuple(granted.device_ids)
    if len(ids) != int(granted.amount) or granted.amount != int(granted.amount):
        raise invalid(
            f"a GPU grant must name one device per GPU: {granted.amount:g} granted, device ids {list(ids)}"
        )
    if len(set(ids)) != len(ids):
        raise invalid(f"a GPU grant names a device twice: {list(ids)}")
    unknown = [device for device in ids if device not in env.gpu_ids]
    if unknown:
        raise invalid(f"environment {env.id!r} has no GPU {unknown[0]!r}")
    return ids
