"""The engine's fingerprint: the daemon's health, the environments with their capacity, the capabilities."""

from __future__ import annotations

from collections.abc import Mapping

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit
from c2d.plugin.kit.fingerprint import Usage
from c2d_docker_engine.config import EnvironmentConfig
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
    )


def environment(
    env: EnvironmentConfig, used: Usage, health: common_pb2.EngineHealth, extra_info: Mapping[str, str]
) -> common_pb2.Environment:
    extra = {"isolation": "docker containers", "cpu_pinning": env.cpu_pinning, **extra_info}
    return kit.environment(env, ENGINE_NAME, used, health, extra, devices(env.gpus))


def devices(gpus: tuple[Gpu, ...]) -> list[common_pb2.Device]:
    return [common_pb2.Device(id=g.id, vendor=g.vendor, model=g.model, memory_gib=g.memory_gib) for g in gpus]
