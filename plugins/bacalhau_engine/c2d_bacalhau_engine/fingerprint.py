"""The engine's fingerprint: the orchestrator's health, the pools as environments, the capabilities."""

from __future__ import annotations

from collections.abc import Mapping

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit
from c2d.plugin.kit.fingerprint import Usage
from c2d_bacalhau_engine.config import EnvironmentConfig

ENGINE_NAME = "bacalhau"
# Bacalhau's Resources.Disk: the compute node admits a job by it; whether it is enforced is the node's.
DISK_QUOTA = "bacalhau-resources"


def capabilities(environments: tuple[EnvironmentConfig, ...], runs_pods: bool) -> engine_pb2.Capabilities:
    # No live log streaming: an execution's output is known from its RunOutput once it has ended.
    return engine_pb2.Capabilities(
        container_isolation=True,
        network_isolation=True,
        disk_quota=DISK_QUOTA,
        gpu_vendors=sorted({env.gpu_vendor for env in environments if env.gpus}),
        log_streaming=False,
        runs_pods=runs_pods,
    )


def environment(
    env: EnvironmentConfig, used: Usage, health: common_pb2.EngineHealth, extra_info: Mapping[str, str]
) -> common_pb2.Environment:
    extra = {
        "isolation": "bacalhau docker jobs",
        "node_labels": ",".join(f"{k}={v}" for k, v in sorted(env.node_labels.items())),
        "logs": "after the algorithm ends (no live streaming)",
        **extra_info,
    }
    return kit.environment(env, ENGINE_NAME, used, health, extra, devices(env))


def devices(env: EnvironmentConfig) -> list[common_pb2.Device]:
    """GPU slots: Bacalhau hands out a count of GPUs, so the devices are numbered, not named."""
    return [
        common_pb2.Device(id=gpu_id, vendor=env.gpu_vendor, model=env.gpu_model) for gpu_id in env.gpu_ids
    ]
