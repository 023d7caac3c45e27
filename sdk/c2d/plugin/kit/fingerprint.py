"""Pieces of a fingerprint every engine builds alike: an environment's resources and what jobs hold.

A job holds its grant from StartJob to its terminal event; :class:`Usage`
sums the grants of one environment's running jobs, and the resources
advertise total, per-job minimum and maximum, in use and available.

Environments on one machine share its hardware: :func:`pool` describes the
machine (its id and totals), and every environment built with it tells the node
so, which then never grants the machine's CPUs, memory, disk or GPUs twice.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit.environments import EnvironmentConfig
from c2d.plugin.kit.grant import Grant
from c2d.plugin.kit.health import HealthState

ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass
class Usage:
    """What the running jobs of one environment hold."""

    jobs: int = 0
    cpu: float = 0.0
    ram_gib: float = 0.0
    disk_gib: float = 0.0
    gpus: int = 0

    def add(self, grant: Grant) -> None:
        self.jobs += 1
        self.cpu += grant.cpu
        self.ram_gib += grant.ram_gib
        self.disk_gib += grant.disk_gib
        self.gpus += len(grant.gpus)


def build(
    health: HealthState,
    environments: Sequence[Any],
    usage: Mapping[str, Usage],
    describe: Callable[[Any, Usage], common_pb2.Environment],
    caps: engine_pb2.Capabilities,
    draining: bool,
) -> engine_pb2.Fingerprint:
    """The fingerprint: the health (and a drain), each environment as ``describe`` tells it, the capabilities."""
    return engine_pb2.Fingerprint(
        health=health.health,
        health_description=health.description + ("; draining: taking no new jobs" if draining else ""),
        environments=[describe(env, usage.get(env.id, Usage())) for env in environments],
        capabilities=caps,
    )


def environment(
    env: EnvironmentConfig,
    engine: str,
    used: Usage,
    health: common_pb2.EngineHealth,
    extra: Mapping[str, Any],
    gpus: Sequence[common_pb2.Device] = (),
    pool: common_pb2.Pool | None = None,
) -> common_pb2.Environment:
    """The environment as the node lists it, with its capacity in use and the pool it draws from."""
    info = struct_pb2.Struct()
    info.update(dict(extra))
    resources = [
        resource("cpu", common_pb2.RESOURCE_TYPE_CPU, "cores", env.cpu, env.min_cpu, used.cpu),
        resource("ram", common_pb2.RESOURCE_TYPE_RAM, "GiB", env.ram_gib, env.min_ram_gib, used.ram_gib),
        resource("disk", common_pb2.RESOURCE_TYPE_DISK, "GiB", env.disk_gib, env.min_disk_gib, used.disk_gib),
    ]
    if gpus:
        resources.append(gpu_resource(gpus, used.gpus))
    return common_pb2.Environment(
        id=env.id,
        engine=engine,
        description=env.description,
        resources=resources,
        min_job_duration_seconds=env.min_job_duration_seconds,
        max_job_duration_seconds=env.max_job_duration_seconds,
        storage_expiry_seconds=env.storage_expiry_seconds,
        network=common_pb2.NetworkPolicy(allow_network=env.allow_network),
        running_jobs=used.jobs,
        engine_health=health,
        platform=platform_name(),
        max_jobs=env.max_jobs,
        extra=info,
        pool=pool,
    )


def pool(
    pool_id: str, cpu: float, ram_gib: float, disk_gib: float, gpus: Sequence[common_pb2.Device] = ()
) -> common_pb2.Pool:
    """The machine every environment of an engine shares, by the resource ids :func:`environment`
    uses: its totals only (the node fills in what its grants hold)."""
    resources = [
        common_pb2.Resource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, unit="cores", total=cpu),
        common_pb2.Resource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, unit="GiB", total=ram_gib),
        common_pb2.Resource(id="disk", type=common_pb2.RESOURCE_TYPE_DISK, unit="GiB", total=disk_gib),
    ]
    if gpus:
        unique = list({d.id: d for d in gpus}.values())
        resources.append(
            common_pb2.Resource(
                id="gpu", type=common_pb2.RESOURCE_TYPE_GPU, unit="devices", total=len(unique), devices=unique
            )
        )
    return common_pb2.Pool(id=pool_id, resources=resources)


def resource(
    resource_id: str,
    kind: common_pb2.ResourceType,
    unit: str,
    total: float,
    minimum: float,
    in_use: float,
) -> common_pb2.Resource:
    return common_pb2.Resource(
        id=resource_id,
        type=kind,
        unit=unit,
        total=total,
        min=minimum,
        max=total,
        in_use=in_use,
        available=max(0.0, total - in_use),
    )


def gpu_resource(devices: Sequence[common_pb2.Device], in_use: int) -> common_pb2.Resource:
    """GPUs are granted by device: the node picks free ones from ``devices`` (it knows which are taken)."""
    models = sorted({d.model for d in devices if d.model})
    return common_pb2.Resource(
        id="gpu",
        type=common_pb2.RESOURCE_TYPE_GPU,
        unit="devices",
        total=len(devices),
        min=0,
        max=len(devices),
        in_use=in_use,
        available=max(0, len(devices) - in_use),
        devices=list(devices),
        description=", ".join(models),
    )


def platform_name() -> str:
    machine = platform.machine().lower()
    return f"linux/{ARCHITECTURES.get(machine, machine)}"
