"""The engine's fingerprint: health, environments with their capacity, and capabilities.

The capabilities say plainly what the stub does not do (no container, no
network isolation, disk limited per file only) so that the node and its
operators never mistake it for a sandbox; it does run the pods (as local
processes), so ``runs_pods`` is true.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit
from c2d.plugin.kit.fingerprint import Usage, platform_name
from c2d_external_stub.config import EnvironmentConfig, StubConfig

ENGINE_NAME = "external_stub"
CAPABILITIES = engine_pb2.Capabilities(
    container_isolation=False,
    network_isolation=False,
    disk_quota="file-size-limit",
    log_streaming=True,
    runs_pods=True,
)
# The smallest amount of each resource one job may ask for (less when the environment is smaller).
MIN_PER_JOB = {"cpu": 1.0, "ram": 1.0, "disk": 1.0}


def build(config: StubConfig, usage: Mapping[str, Usage], draining: bool) -> engine_pb2.Fingerprint:
    description = "draining: taking no new jobs" if draining else "jobs run as local processes, no isolation"
    return engine_pb2.Fingerprint(
        health=common_pb2.ENGINE_HEALTH_HEALTHY,
        health_description=description,
        environments=[environment(env, usage.get(env.id, Usage())) for env in config.environments],
        capabilities=CAPABILITIES,
    )


def environment(env: EnvironmentConfig, used: Usage) -> common_pb2.Environment:
    extra = struct_pb2.Struct()
    extra.update({"isolation": "none", "limits": "setrlimit: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE"})
    return common_pb2.Environment(
        id=env.id,
        engine=ENGINE_NAME,
        description=env.description,
        resources=[
            resource("cpu", common_pb2.RESOURCE_TYPE_CPU, "cores", env.cpu, used.cpu),
            resource("ram", common_pb2.RESOURCE_TYPE_RAM, "GiB", env.ram_gib, used.ram_gib),
            resource("disk", common_pb2.RESOURCE_TYPE_DISK, "GiB", env.disk_gib, used.disk_gib),
        ],
        min_job_duration_seconds=env.min_job_duration_seconds,
        max_job_duration_seconds=env.max_job_duration_seconds,
        storage_expiry_seconds=env.storage_expiry_seconds,
        # Processes reach whatever the node reaches: say so rather than promise a policy.
        network=common_pb2.NetworkPolicy(allow_network=True),
        running_jobs=used.jobs,
        engine_health=common_pb2.ENGINE_HEALTH_HEALTHY,
        platform=platform_name(),
        max_jobs=env.max_jobs,
        extra=extra,
    )


def resource(
    resource_id: str, kind: common_pb2.ResourceType.ValueType, unit: str, total: float, in_use: float
) -> common_pb2.Resource:
    return kit.resource(resource_id, kind, unit, total, min(MIN_PER_JOB[resource_id], total), in_use)
