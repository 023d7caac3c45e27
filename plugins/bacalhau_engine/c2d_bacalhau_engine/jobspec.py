"""StartJob's JobSpec, checked (by the SDK kit's rules) and turned into the job's ``spec.json``.

The record holds everything the job driver needs, and the limits are taken
from the config *now*: a job recovered after the operator changed the config
runs on with what it was started with. With ``JobSpec.pod`` set it also holds
what the pods need to call the node back, the stage's pod key included, which
is why the file is readable by its owner only (0600). The key never enters a
Bacalhau job's spec: it is written to the job's folder, in a sub-folder that
only the pods' jobs mount (see :mod:`c2d_bacalhau_engine.workdir`).
"""

from __future__ import annotations

from pathlib import Path

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import jobspec as kit
from c2d.plugin.kit.errors import invalid
from c2d.plugin.kit.grant import GIB, grant_from
from c2d.plugin.kit.jobdir import Record
from c2d_bacalhau_engine import names
from c2d_bacalhau_engine.config import BacalhauSettings, EnvironmentConfig

ENGINE = "bacalhau engine"
# The pod networks v1.9 runs as the compute node's own (Docker "host"): a loopback PodService is
# reachable there when the compute node runs on the node's machine.
HOST_NETWORKS = ("Host", "Full")


def build_spec(
    spec: engine_pb2.JobSpec,
    settings: BacalhauSettings,
    env: EnvironmentConfig,
    host_id: str,
    work_roots: tuple[Path, str],
    pod_image: str | None,
) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise."""
    kit.check_job_id(spec.job_id)
    kit.check_command(spec.container)
    image = kit.image_of(spec.container)
    grant = grant_from(spec.resources, env)
    local_root, node_root = work_roots
    folder = names.folder_name(spec.job_id)
    return {
        **kit.base_record(spec, env, host_id, grant, image, kit.network_of(spec, env, ENGINE)),
        "limits": {
            "local_folder": str(local_root / folder),
            "node_folder": f"{node_root.rstrip('/')}/{folder}",
            "node_labels": dict(env.node_labels),
            "queue_timeout_seconds": settings.queue_timeout_seconds,
            "api_wait_seconds": settings.api_wait_seconds,
            "poll_seconds": settings.poll_seconds,
        },
        "pod": pod_of(spec, settings, pod_image),
    }


def pod_of(spec: engine_pb2.JobSpec, settings: BacalhauSettings, pod_image: str | None) -> Record | None:
    """What the pods need; None when the job runs without pods (engine tests).

    The pods call the node at ``pod_service_address`` when the operator set one
    (the address the compute nodes reach the node at), else at the address the
    node handed over; a loopback address is refused unless the pods share the
    compute node's network (``Host`` or ``Full``, which v1.9 runs as Docker's host network).
    """
    access = kit.pod_access(spec)
    if access is None:
        return None
    if not pod_image:
        raise invalid("this job needs pods, but the bacalhau engine has no pod image: set pod_image")
    address = settings.pod_service_address or access["node_http_api"]
    if kit.is_loopback(address) and settings.pod_network not in HOST_NETWORKS:
        raise invalid(
            f"the pods would call the node at {address!r}, a loopback address no Bacalhau job can reach: set "
            "pod_service_address in [engines.bacalhau] to an address the compute nodes reach the node at"
        )
    return {
        **access,
        "node_http_api": address,
        "image": kit.ImageRef.parse(pod_image).to_json(),
        "timeout_seconds": settings.pod_timeout_seconds,
        "cpu": settings.pod_cpu,
        "ram_bytes": int(settings.pod_ram_gib * GIB),
        "disk_bytes": int(settings.pod_disk_gib * GIB),
        "network": settings.pod_network,
    }
