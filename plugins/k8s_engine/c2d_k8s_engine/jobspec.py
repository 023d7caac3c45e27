"""StartJob's JobSpec, checked (by the SDK kit's rules) and turned into the job's ``spec.json``.

The record holds everything the job driver needs, and the limits are taken
from the config *now*: a job recovered after the operator changed the config
runs on with what it was started with. With ``JobSpec.pod`` set it also holds
what the pods need to call the node back, the stage's pod key included, which
is why the file is readable by its owner only (0600); in the cluster the key
lives in a Secret only, never in a pod's spec or the root ConfigMap.
"""

from __future__ import annotations

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import jobspec as kit
from c2d.plugin.kit.errors import invalid
from c2d.plugin.kit.grant import GIB, Grant, grant_from
from c2d.plugin.kit.jobdir import Record
from c2d_k8s_engine.config import EnvironmentConfig, KubernetesSettings

ENGINE = "kubernetes engine"


def build_spec(
    spec: engine_pb2.JobSpec,
    settings: KubernetesSettings,
    env: EnvironmentConfig,
    host_id: str,
    namespace: str,
    pod_image: str | None,
) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise."""
    kit.check_job_id(spec.job_id)
    kit.check_command(spec.container)
    image = kit.image_of(spec.container)
    grant = grant_from(spec.resources, env)
    return {
        **kit.base_record(spec, env, host_id, grant, image, kit.network_of(spec, env, ENGINE)),
        "limits": limits_of(settings, env, grant, namespace),
        "pod": pod_of(spec, settings, pod_image),
    }


def limits_of(settings: KubernetesSettings, env: EnvironmentConfig, grant: Grant, namespace: str) -> Record:
    """The pod settings from the config, frozen into the job."""
    return {
        "namespace": namespace,
        "uid": settings.uid,
        "gid": settings.gid,
        "tmp_bytes": kit.tmp_bytes(grant),
        "log_max_mib": settings.log_max_mib,
        "timeout_grace_seconds": settings.timeout_grace_seconds,
        "pending_timeout_seconds": settings.pending_timeout_seconds,
        "api_wait_seconds": settings.api_wait_seconds,
        "image_pull_policy": settings.image_pull_policy,
        "image_pull_secrets": list(settings.image_pull_secrets),
        "node_selector": dict(env.node_selector),
        "runtime_class": settings.runtime_class,
        "storage_class": settings.storage_class,
        "volume_access_mode": settings.volume_access_mode,
        "gpu_resource": env.gpu_resource,
    }


def pod_of(spec: engine_pb2.JobSpec, settings: KubernetesSettings, pod_image: str | None) -> Record | None:
    """What the pods need; None when the job runs without pods (engine tests).

    The pods call the node at ``pod_service_address`` when the operator set one
    (the address the cluster reaches the node at), else at the address the node
    handed over; a loopback address is refused, as no pod can reach it.
    """
    access = kit.pod_access(spec)
    if access is None:
        return None
    if not pod_image:
        raise invalid("this job needs pods, but the kubernetes engine has no pod image: set pod_image")
    address = settings.pod_service_address or access["node_http_api"]
    if kit.is_loopback(address):
        raise invalid(
            f"the pods would call the node at {address!r}, a loopback address no pod can reach: set "
            "pod_service_address in [engines.kubernetes] to an address the cluster reaches the node at"
        )
    return {
        **access,
        "node_http_api": address,
        "image": kit.ImageRef.parse(pod_image).to_json(),
        "timeout_seconds": settings.pod_timeout_seconds,
        "cpu": settings.pod_cpu,
        "ram_bytes": int(settings.pod_ram_gib * GIB),
    }
