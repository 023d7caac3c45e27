"""The engine's fingerprint: the API's health, the environments with their capacity, the capabilities."""

from __future__ import annotations

from collections.abc import Mapping

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit
from c2d.plugin.kit.fingerprint import Usage
from c2d_k8s_engine.config import EnvironmentConfig

ENGINE_NAME = "kubernetes"
# The disk quota is the volume claim's storage request; the storage class enforces it (or not).
DISK_QUOTA = "volume-claim"


def capabilities(environments: tuple[EnvironmentConfig, ...], runs_pods: bool) -> engine_pb2.Capabilities:
    return engine_pb2.Capabilities(
        container_isolation=True,
        network_isolation=True,
        disk_quota=DISK_QUOTA,
        gpu_vendors=sorted({env.gpu_vendor for env in environments if env.gpus}),
        log_streaming=True,
        runs_pods=runs_pods,
    )


def environment(
    env: EnvironmentConfig, used: Usage, health: common_pb2.EngineHealth, extra_info: Mapping[str, str]
) -> common_pb2.Environment:
    extra = {
        "isolation": "kubernetes pods",
        "gpu_resource": env.gpu_resource if env.gpus else "",
        **extra_info,
    }
    return kit.environment(env, ENGINE_NAME, used, health, extra, devices(env))


def devices(env: EnvironmentConfig) -> list[common_pb2.Device]:
    """GPU slots: Kubernetes hands out a count of ``gpu_resource``, so the devices are numbered, not named."""
    return [
        common_pb2.Device(id=gpu_id, vendor=env.gpu_vendor, model=env.gpu_model) for gpu_id in env.gpu_ids
    ]
