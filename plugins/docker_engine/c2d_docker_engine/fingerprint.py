"""The engine's fingerprint: the daemon's health, the environments with their capacity, the capabilities.

Every environment runs on the daemon's one machine, so each names the same pool
(the daemon's ID) with the machine's totals: the node then never grants its
CPUs, memory, disk or GPUs twice, however many environments share them.
"""

from __future__ import annotations

from collections.abc import Mapping

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit
from c2d.plugin.kit.fingerprint import Usage
from c2d_docker_engine.config import EnvironmentConfig, MachineSize
from c2d_docker_engine.gpus import Gpu

ENGINE_NAME = "docker"


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
        image_build=True,
    )


def environment(
    env: EnvironmentConfig,
    used: Usage,
    health: common_pb2.EngineHealth,
    extra_info: Mapping[str, str],
    pool: common_pb2.Pool | None = None,
) -> common_pb2.Environment:
    extra = {"isolation": "docker containers", "cpu_pinning": env.cpu_pinning, **extra_info}
    return kit.environment(env, ENGINE_NAME, used, health, extra, devices(env.gpus), pool)


def pool(machine: MachineSize, environments: tuple[EnvironmentConfig, ...]) -> common_pb2.Pool:
    """The daemon's machine: NCPU, MemTotal, free disk and its GPUs (those found, and any an
    environment names that detection did not describe: it can be granted, so the pool has it)."""
    gpus = {g.id: g for g in machine.gpus} | {g.id: g for env in environments for g in env.gpus}
    return kit.pool(
        machine.pool_id, machine.cpu, machine.ram_gib, machine.disk_gib, devices(tuple(gpus.values()))
    )


def devices(gpus: tuple[Gpu, ...]) -> list[common_pb2.Device]:
    return [common_pb2.Device(id=g.id, vendor=g.vendor, model=g.model, memory_gib=g.memory_gib) for g in gpus]
