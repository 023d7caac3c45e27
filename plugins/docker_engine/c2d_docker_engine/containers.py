"""How each container of a job is made: pure functions from the job's spec to ``containers.create`` arguments.

Kept free of any Docker call so the security settings (no capabilities, no
new privileges, read-only root, no network, exactly the granted CPU, memory,
pids and GPU devices) can be checked line by line in unit tests, GPU
DeviceRequests and device nodes included, on a machine without a GPU.

Names are deterministic (``c2d-<job_id>-<role>``), so a retried step, or a
restarted plugin, finds its own container instead of making a second one.
Every container carries the labels ``c2d.host``, ``c2d.workflow``,
``c2d.job`` and ``c2d.role``: ListJobs finds a node's containers by them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

from c2d.plugin.kit.podenv import pod_command, pod_environment
from c2d_docker_engine.gpus import Access
from c2d_docker_engine.grant import Grant
from c2d_docker_engine.jobdir import Record
from c2d_docker_engine.jobspec import DATA_ROOT

CONFIGURATION = "configuration"
ALGORITHM = "algorithm"
PUBLISHING = "publishing"
ROLES = (CONFIGURATION, ALGORITHM, PUBLISHING)
LABEL_HOST = "c2d.host"
LABEL_WORKFLOW = "c2d.workflow"
LABEL_JOB = "c2d.job"
LABEL_ROLE = "c2d.role"
OUR_LABELS = (LABEL_HOST, LABEL_WORKFLOW, LABEL_JOB, LABEL_ROLE)
NANO = 1_000_000_000
# A job's containers' CPU weight against the node's processes (1,024 each, as a container's by
# default): about a niceness of 19. Idle CPUs still go to the job; contended ones go to the node
# first, so a machine full of algorithms still answers its consumers.
JOB_CPU_SHARES = 16
MIB = 1 << 20
POD_TMP_BYTES = 256 * MIB
POD_LOG_MAX = "16m"
PUBLISHING_WORKDIR = f"{DATA_ROOT}/.publishing"
# Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class HostPaths:
    """Where the job's folders are on the Docker host (bind-mount sources)."""

    data: Path
    scratch: Path


def container_name(job_id: str, role: str) -> str:
    """``c2d-<job_id>-<role>``; a job id with characters Docker refuses gets them replaced and a hash added."""
    safe = NAME_UNSAFE.sub("_", job_id)
    if safe != job_id:
        safe = f"{safe}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"
    return f"c2d-{safe}-{role}"


def labels(record: Record, role: str) -> dict[str, str]:
    """The stage's own labels, then ours (which win): host, workflow, job and role."""
    found = {str(k): str(v) for k, v in (record.get("labels") or {}).items()}
    found.update(
        {
            LABEL_HOST: str(record["host_id"]),
            LABEL_WORKFLOW: str(record.get("workflow_id", "")),
            LABEL_JOB: str(record["job_id"]),
            LABEL_ROLE: role,
        }
    )
    return found


def algorithm_kwargs(record: Record, paths: HostPaths, image_id: str) -> dict[str, Any]:
    """The algorithm container: ``/bin/sh -c <command>`` with the grant as hard limits."""
    limits: Record = record["limits"]
    grant = Grant.from_json(record["grant"])
    env = {"HOME": "/tmp", **(record.get("env") or {}), "C2D_DATA": DATA_ROOT}
    kwargs: dict[str, Any] = {
        "image": image_id,
        "name": container_name(record["job_id"], ALGORITHM),
        "entrypoint": ["/bin/sh", "-c"],
        "command": [record["command"]],
        "environment": env,
        "labels": labels(record, ALGORITHM),
        "mounts": [
            bind(paths.data / "inputs", f"{DATA_ROOT}/inputs", read_only=True),
            bind(paths.data / "transformations", f"{DATA_ROOT}/transformations", read_only=True),
            bind(paths.data / "outputs", f"{DATA_ROOT}/outputs", read_only=False),
            bind(paths.data / "logs", f"{DATA_ROOT}/logs", read_only=False),
        ],
        "network_mode": limits["network_name"] if record.get("network") else "none",
        "log_config": LogConfig(
            type=LogConfig.types.JSON, config={"max-size": f"{limits['log_max_mib']}m", "max-file": "1"}
        ),
        **hardening(limits),
        **resource_limits(grant, record.get("cpuset")),
        **gpu_kwargs(Access.from_json(record.get("gpu_access"), grant.gpus)),
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={limits['tmp_bytes']},mode=1777"},
        "detach": True,
    }
    if limits.get("disk_quota") != "loop-ext4":
        # No filesystem quota: at least no single file may outgrow the grant (SIGXFSZ past it).
        kwargs["ulimits"] = [Ulimit(name="fsize", soft=grant.disk_bytes, hard=grant.disk_bytes)]
    return kwargs


def hardening(limits: Record) -> dict[str, Any]:
    """What every container of a job gets: a non-root user, no capabilities, no new privileges, read-only
    root, and a CPU weight below the node's."""
    return {
        "cpu_shares": JOB_CPU_SHARES,
        "user": f"{limits['uid']}:{limits['gid']}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "pids_limit": limits["pids_limit"],
        "init": bool(limits.get("init", True)),
    }


def resource_limits(grant: Grant, cpuset: list[int] | None) -> dict[str, Any]:
    """CPU quota (and pinned cores) and memory with no swap beyond it."""
    kwargs: dict[str, Any] = {
        "nano_cpus": max(1, round(grant.cpu * NANO)),
        "mem_limit": grant.ram_bytes,
        "memswap_limit": grant.ram_bytes,
    }
    if cpuset:
        kwargs["cpuset_cpus"] = ",".join(str(core) for core in cpuset)
    return kwargs


def gpu_kwargs(access: Access) -> dict[str, Any]:
    """Exactly the granted GPUs: NVIDIA's by DeviceRequest, others by their own device nodes and groups.

    Each node is mapped on its own (``/dev/dri/renderD128``...), never the
    whole of ``/dev/dri``: another stage's GPU stays out of reach.
    """
    kwargs: dict[str, Any] = {}
    if access.nvidia:
        kwargs["device_requests"] = [gpu_request(access.nvidia)]
    if access.nodes:
        kwargs["devices"] = [f"{node}:{node}:rwm" for node in access.nodes]
    if access.groups:
        kwargs["group_add"] = list(access.groups)
    return kwargs


def gpu_request(device_ids: tuple[str, ...]) -> DeviceRequest:
    """Only the devices granted to this job, never ``count=-1`` (all GPUs)."""
    return DeviceRequest(device_ids=list(device_ids), capabilities=[["gpu"]])


def pod_kwargs(record: Record, role: str, paths: HostPaths, image_id: str) -> dict[str, Any]:
    """pod-configuration or pod-publishing: the node's code, with the job's whole data folder and the network.

    The pods run as the same non-root user, hardened the same way, with a
    memory limit of their own; they need the network to reach the node's
    PodService and the dataset sources.
    """
    pod: Record = record["pod"]
    limits: Record = record["limits"]
    mounts = [bind(paths.data, DATA_ROOT, read_only=False)]
    if role == PUBLISHING:
        # The outputs archive is packed outside the disk quota: a job that used its disk can still publish.
        mounts.append(bind(paths.scratch, PUBLISHING_WORKDIR, read_only=False))
    return {
        "image": image_id,
        "name": container_name(record["job_id"], role),
        "entrypoint": pod_command(role)[:1],
        "command": pod_command(role)[1:],
        "environment": pod_environment(record),
        "labels": labels(record, role),
        "mounts": mounts,
        "network_mode": pod.get("network_name") or "bridge",
        "log_config": LogConfig(type=LogConfig.types.JSON, config={"max-size": POD_LOG_MAX, "max-file": "1"}),
        **hardening(limits),
        "mem_limit": int(pod["ram_bytes"]),
        "memswap_limit": int(pod["ram_bytes"]),
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={POD_TMP_BYTES},mode=1777"},
        "detach": True,
    }


def bind(source: Path, target: str, *, read_only: bool) -> Mount:
    return Mount(target=target, source=str(source), type="bind", read_only=read_only)
