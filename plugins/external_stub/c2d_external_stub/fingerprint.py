"""The engine's fingerprint: health, environments with their capacity, and capabilities.

The capabilities say plainly what the stub does not do (no container, disk
limited per file only) so that the node and its operators never mistake it for
one; it does run the pods (as local processes), so ``runs_pods`` is true. The
health description says how algorithms are confined (bwrap or unshare) or, in
capitals, that they are not. Every environment names the machine's one pool, so
the node never grants the machine's CPUs, memory or disk twice across them.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit
from c2d.plugin.kit.fingerprint import Usage, platform_name
from c2d_external_stub.config import EnvironmentConfig, StubConfig
from c2d_external_stub.sandbox import Sandbox

ENGINE_NAME = "external_stub"
# Label of an environment whose jobs only the operator's own key may start (nothing confines them).
OPERATOR_ONLY_LABEL = "c2d.operator_only"
# The smallest amount of each resource one job may ask for (less when the environment is smaller).
MIN_PER_JOB = {"cpu": 1.0, "ram": 1.0, "disk": 1.0}


def build(
    config: StubConfig, usage: Mapping[str, Usage], draining: bool, sandbox: Sandbox | None = None
) -> engine_pb2.Fingerprint:
    sandbox = sandbox or Sandbox("none")
    description = confinement(config, sandbox)
    pool = kit.pool(config.pool_id, config.pool_cpu, config.pool_ram_gib, config.pool_disk_gib)
    if draining:
        description = f"draining: taking no new jobs; {description}"
    return engine_pb2.Fingerprint(
        health=common_pb2.ENGINE_HEALTH_HEALTHY,
        health_description=description,
        environments=[
            environment(env, usage.get(env.id, Usage()), config, sandbox, pool) for env in config.environments
        ],
        capabilities=engine_pb2.Capabilities(
            container_isolation=False,
            network_isolation=sandbox.confined,
            disk_quota="file-size-limit",
            log_streaming=True,
            runs_pods=True,
        ),
    )


def confinement(config: StubConfig, sandbox: Sandbox) -> str:
    """How jobs run, for the health description; the warning an operator must not miss when unconfined."""
    if sandbox.confined:
        who = "as nobody" if sandbox.as_root else "as the node's user, mapped"
        return (
            f"jobs run as local processes confined by {sandbox.backend} ({who}; own user, mount, pid and "
            "network namespaces; only the job's directory writable)"
        )
    if config.unsafe_unconfined:
        return (
            "WARNING: jobs run UNCONFINED as the node's user (unsafe_unconfined = true): any consumer's "
            "algorithm can read the node key, the database and the data root"
        )
    return (
        "WARNING: no sandbox works here (install bubblewrap, or allow user namespaces): "
        "only the operator's own jobs run"
    )


def environment(
    env: EnvironmentConfig,
    used: Usage,
    config: StubConfig,
    sandbox: Sandbox,
    pool: common_pb2.Pool | None = None,
) -> common_pb2.Environment:
    extra = struct_pb2.Struct()
    extra.update(
        {
            "isolation": sandbox.backend,
            "limits": "setrlimit: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE",
        }
    )
    operator_only = not sandbox.confined and not config.unsafe_unconfined
    labels = {OPERATOR_ONLY_LABEL: "true"} if operator_only else {}
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
        # Confined without network, the algorithm has an empty network namespace; with it (and when
        # unconfined) it reaches whatever the node reaches.
        network=common_pb2.NetworkPolicy(allow_network=env.allow_network or not sandbox.confined),
        running_jobs=used.jobs,
        engine_health=common_pb2.ENGINE_HEALTH_HEALTHY,
        platform=platform_name(),
        max_jobs=env.max_jobs,
        labels=labels,
        extra=extra,
        pool=pool,
    )


def resource(
    resource_id: str, kind: common_pb2.ResourceType, unit: str, total: float, in_use: float
) -> common_pb2.Resource:
    return kit.resource(resource_id, kind, unit, total, min(MIN_PER_JOB[resource_id], total), in_use)
