"""StartJob's JobSpec, checked and turned into the job's ``spec.json``.

The spec file holds everything the job driver needs, and the limits are
taken from the config *now*: a job recovered after the operator changed the
config runs on with what it was started with. With ``JobSpec.pod`` set it
also holds what the pods need to call the node back, the stage's pod key
included, which is why the file is readable by its owner only (0600) and
the key appears in no log, no handle and no container label.
"""

from __future__ import annotations

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import jobspec as kit
from c2d.plugin.kit.jobspec import (
    ALGO_VARIABLE,
    ALGORITHM_PATH,
    DATA_ROOT,
    SPEC_FORMAT,
    ImageRef,
    check_job_id,
    image_of,
    is_loopback,
    time_limit_of,
    tmp_bytes,
)
from c2d_docker_engine.buildcontext import Context
from c2d_docker_engine.config import DockerSettings, EnvironmentConfig
from c2d_docker_engine.errors import invalid
from c2d_docker_engine.gpus import Access
from c2d_docker_engine.grant import Grant, grant_from
from c2d_docker_engine.jobdir import Record

__all__ = [
    "ALGORITHM_PATH",
    "ALGO_VARIABLE",
    "DATA_ROOT",
    "SPEC_FORMAT",
    "ImageRef",
    "build_spec",
    "check_job_id",
    "gpu_access_of",
    "image_of",
    "is_loopback",
    "limits_of",
    "network_of",
    "pod_of",
    "time_limit_of",
    "tmp_bytes",
]

GIB = 1 << 30
ENGINE = "docker engine"


def build_spec(
    spec: engine_pb2.JobSpec,
    settings: DockerSettings,
    env: EnvironmentConfig,
    host_id: str,
    disk_quota: str,
    pod_image: str | None,
) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise. ``cpuset`` is filled in later."""
    check_job_id(spec.job_id)
    kit.check_command(spec.container)
    network = network_of(spec, env)
    build = build_of(spec.container, network)
    image = build.image_ref() if build is not None else image_of(spec.container)
    grant = grant_from(spec.resources, env)
    return {
        **kit.base_record(spec, env, host_id, grant, image, network),
        "build": build.to_json() if build is not None else None,
        "cpuset": None,
        "gpu_access": gpu_access_of(grant, env).to_json(),
        "limits": limits_of(settings, grant, disk_quota),
        "pod": pod_of(spec, settings, pod_image),
    }


def build_of(container: engine_pb2.Container, network: bool) -> Context | None:
    """The image's build context when the container carries a Dockerfile (and names no image), else
    None; ``network``: whether the build may use one (as the algorithm: the stage and the environment allow it)."""
    if not container.dockerfile and not container.additional_files:
        return None
    if container.image or container.tag or container.digest:
        raise invalid("the container has both an image and a dockerfile: give one")
    return Context.checked(container.dockerfile, dict(container.additional_files), network)


def limits_of(settings: DockerSettings, grant: Grant, disk_quota: str) -> Record:
    """The container settings from the config, frozen into the job."""
    return {
        "uid": settings.uid,
        "gid": settings.gid,
        "pids_limit": settings.pids_limit,
        "tmp_bytes": tmp_bytes(grant),
        "disk_quota": disk_quota,
        "log_max_mib": settings.log_max_mib,
        "init": settings.init,
        "timeout_grace_seconds": settings.timeout_grace_seconds,
        "network_name": settings.network,
        "daemon_wait_seconds": settings.daemon_wait_seconds,
        "build_timeout_seconds": settings.build_timeout_seconds,
    }


def gpu_access_of(grant: Grant, env: EnvironmentConfig) -> Access:
    """What the algorithm's container needs for its granted GPUs (grant_from checked they are the environment's)."""
    granted = [gpu for gpu in (env.gpu(device_id) for device_id in grant.gpus) if gpu is not None]
    return Access.of(granted)


def network_of(spec: engine_pb2.JobSpec, env: EnvironmentConfig) -> bool:
    """Whether the algorithm gets a network: only when both the stage and the environment allow it."""
    return kit.network_of(spec, env, ENGINE)


def pod_of(spec: engine_pb2.JobSpec, settings: DockerSettings, pod_image: str | None) -> Record | None:
    """What the pods need; None when the job runs without pods (engine tests)."""
    if not spec.HasField("pod"):
        return None
    if not pod_image:
        raise invalid("this job needs pods, but the docker engine has no pod image: set pod_image")
    access = kit.pod_access(spec)
    assert access is not None
    if settings.pod_network != "host" and is_loopback(access["node_http_api"]):
        raise invalid(
            f"pod.node_http_api {access['node_http_api']!r} is a loopback address, which the pods' containers "
            'cannot reach: serve the PodService on the Docker bridge (the node\'s pods.listen = "auto:PORT")'
        )
    return {
        **access,
        "image": ImageRef.parse(pod_image).to_json(),
        "timeout_seconds": settings.pod_timeout_seconds,
        "ram_bytes": int(settings.pod_ram_gib * GIB),
        "network_name": settings.pod_network,
    }
