"""The engine's fingerprint: the daemon's health, the environments with their capacity, the capabilities."""

from __future__ import annotations

import platform
from collections.abc import Mapping

from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d_docker_engine.config import EnvironmentConfig
from c2d_docker_engine.daemon import HealthState
from c2d_docker_engine.drivers import Usage
from c2d_docker_engine.gpus import Gpu

ENGINE_NAME = "docker"
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def capabilities(
    disk_quota: str, environments: tuple[EnvironmentConfig, ...], runs_pods: bool
) -> engine_pb2.Capabilities:
    vendors = sorted({gpu.vendor for env in environments for gpu in env.gpus})
    return engine_pb2.Capabilities(
        container_isolation=True,
        network_isolation=True,
        disk_quota=disk_quota,
        gpu_vendors=vendors,
        log_streaming=True,
        runs_pods=runs_pods,
    )


def build(
    health: HealthState,
    environments: tuple[EnvironmentConfig, ...],
    usage: Mapping[str, Usage],
    caps: engine_pb2.Capabilities,
    draining: bool,
    extra: Mapping[str, str],
) -> engine_pb2.Fingerprint:
    description = health.description + ("; draining: taking no new jobs" if draining else "")
    return engine_pb2.Fingerprint(
        health=health.health,
        health_description=description,
        environments=[
            environment(env, usage.get(env.id, Usage()), health.health, extra) for env in environments
        ],
        capabilities=caps,
    )


def environment(
    env: EnvironmentConfig, used: Usage, health: int, extra_info: Mapping[str, str]
) -> common_pb2.Environment:
    extra = struct_pb2.Struct()
    extra.update({"isolation": "docker containers", "cpu_pinning": env.cpu_pinning, **extra_info})
    resources = [
        resource("cpu", common_pb2.RESOURCE_TYPE_CPU, "cores", env.cpu, env.min_cpu, used.cpu),
        resource("ram", common_pb2.RESOURCE_TYPE_RAM, "GiB", env.ram_gib, env.min_ram_gib, used.ram_gib),
        resource("disk", common_pb2.RESOURCE_TYPE_DISK, "GiB", env.disk_gib, env.min_disk_gib, used.disk_gib),
    ]
    if env.gpus:
        resources.append(gpu_resource(env.gpus, used.gpus))
    return common_pb2.Environment(
        id=env.id,
        engine=ENGINE_NAME,
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
        extra=extra,
    )


def resource(
    resource_id: str,
    kind: common_pb2.ResourceType.ValueType,
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


def gpu_resource(gpus: tuple[Gpu, ...], in_use: int) -> common_pb2.Resource:
    """GPUs are granted by device: the node picks free ones from ``devices`` (it knows which are taken)."""
    models = sorted({g.model for g in gpus if g.model})
    return common_pb2.Resource(
        id="gpu",
        type=common_pb2.RESOURCE_TYPE_GPU,
        unit="devices",
        total=len(gpus),
        min=0,
        max=len(gpus),
        in_use=in_use,
        available=max(0, len(gpus) - in_use),
        devices=[
            common_pb2.Device(id=g.id, vendor=g.vendor, model=g.model, memory_gib=g.memory_gib) for g in gpus
        ],
        description=", ".join(models),
    )


def platform_name() -> str:
    machine = platform.machine().lower()
    return f"linux/{ARCHITECTURES.get(machine, machine)}"
