"""Every Kubernetes object a job is made of, as plain manifests: pure functions of the job's record.

Kept free of API calls so that what isolates a job (non-root user, no
privilege escalation, no capabilities, read-only root, no egress, exactly the
granted CPU, memory and GPUs, the time limit as ``activeDeadlineSeconds``)
can be read line by line in unit tests.

A job is one root object, a ConfigMap named after the job that holds its
spec (without the pod key) for people and tools reading the cluster, and
objects it owns through ``ownerReferences``: the volume claim (the job's
disk, ``/data``), the Secret with the stage's pod key, the job's image pull
Secret (when its algorithm image's registry has credentials), the NetworkPolicy
that cuts the algorithm off, and the three pods. Deleting the root deletes them
all (Kubernetes' garbage collector). Every object carries the labels
``c2d.engine``, ``c2d.node``, ``c2d.job``, ``c2d.workflow`` (and pods
``c2d.step``), so a restarted plugin finds them by selector.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from c2d.plugin.kit.grant import GIB, Grant
from c2d.plugin.kit.jobdir import Record
from c2d.plugin.kit.jobspec import DATA_ROOT, ImageRef
from c2d.plugin.kit.podenv import PRIVATE_KEY, pod_command, pod_environment
from c2d.plugin.kit.pullcreds import Credentials
from c2d_k8s_engine import names

Manifest = dict[str, Any]
MIB = 1 << 20
POD_TMP_BYTES = 256 * MIB
SCRATCH_BYTES = 1 << 30
PUBLISHING_WORKDIR = f"{DATA_ROOT}/.publishing"
SPEC_KEY = "spec.json"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_KEY = ".dockerconfigjson"
# The key Docker and kubectl write for Docker Hub in a config's "auths".
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DATA_VOLUME = "data"
TMP_VOLUME = "tmp"
SCRATCH_VOLUME = "scratch"
EXIT_FILE = "${TMPDIR:-/tmp}/.c2d-exit"
# The algorithm's stdout and stderr reach the pod's log (for the engine) and, through tee,
# $C2D_DATA/logs/algorithm.log on the job's volume, which pod-publishing uploads. An image
# without tee runs the command as it is (the log then only reaches the engine).
ALGORITHM_WRAPPER = (
    'log="${C2D_DATA:-/data}/logs/algorithm.log"\n'
    'if command -v tee >/dev/null 2>&1 && [ -d "${log%/*}" ] && [ -w "${log%/*}" ]; then\n'
    f'  {{ /bin/sh -c "$1" 2>&1; echo "$?" >"{EXIT_FILE}"; }} | tee "$log"\n'
    f'  {{ read -r code <"{EXIT_FILE}"; }} 2>/dev/null || code=1\n'
    '  exit "$code"\n'
    "fi\n"
    'exec /bin/sh -c "$1"\n'
)


def literal(text: str) -> str:
    """``text`` as Kubernetes passes it on: it expands ``$(VAR)`` in commands, args and env values
    and turns ``$$`` into ``$``, so every ``$`` is doubled to reach the shell unchanged."""
    return text.replace("$", "$$")


def env_list(variables: dict[str, str]) -> list[Manifest]:
    return [{"name": name, "value": literal(value)} for name, value in variables.items()]


def cpu_quantity(cores: float) -> str:
    """Cores as millicores, never less than one."""
    return f"{max(1, math.ceil(cores * 1000 - 1e-6))}m"


def byte_quantity(amount: float) -> str:
    return str(max(1, int(amount)))


def metadata(record: Record, name: str, namespace: str, owner: Manifest | None = None) -> Manifest:
    labels = names.job_labels(record["host_id"], record["job_id"], str(record.get("workflow_id", "")))
    meta: Manifest = {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": names.job_annotations(
            record["host_id"], record["job_id"], str(record.get("workflow_id", ""))
        ),
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return meta


def owner_reference(root: Manifest) -> Manifest:
    """Points at the job's root ConfigMap (as the API returned it, with its uid)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": root["metadata"]["name"],
        "uid": root["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def public_spec(record: Record) -> Record:
    """The record without the stage's pod key, which only the Secret holds."""
    pod = record.get("pod")
    if not pod:
        return dict(record)
    return {**record, "pod": {k: v for k, v in pod.items() if k != "private_key"}}


# Objects ---------------------------------------------------------------------------------------


def namespace(name: str, host_id: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": names.node_labels(host_id)},
    }


def quota(namespace_name: str, host_id: str, totals: Record) -> Manifest:
    """The namespace's ResourceQuota: requests may not exceed what the environments offer together.

    Only requests are capped: the pods' limits may be above their requests (they
    are burstable), and a job's pods never request more than its grant.
    """
    hard = {
        "requests.cpu": cpu_quantity(totals["cpu"]),
        "requests.memory": byte_quantity(totals["ram_gib"] * GIB),
        "requests.storage": byte_quantity(totals["disk_gib"] * GIB),
    }
    for resource, count in sorted(totals.get("gpus", {}).items()):
        hard[f"requests.{resource}"] = str(int(count))
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": names.QUOTA_NAME,
            "namespace": namespace_name,
            "labels": names.node_labels(host_id),
        },
        "spec": {"hard": hard},
    }


def root(record: Record, namespace_name: str) -> Manifest:
    """The job's root object: its spec for readers, and the owner of everything else."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(record, names.job_base(record["job_id"]), namespace_name),
        "data": {SPEC_KEY: json.dumps(public_spec(record), indent=1, sort_keys=True)},
    }


def pod_key_secret(record: Record, namespace_name: str, owner: Manifest) -> Manifest:
    key = str(record["pod"]["private_key"]).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(record, names.secret_name(record["job_id"]), namespace_name, owner),
        "data": {PRIVATE_KEY: base64.b64encode(key).decode()},
    }


def pull_secret(record: Record, namespace_name: str, owner: Manifest, credentials: Credentials) -> Manifest:
    """The job's image pull Secret: one ``auths`` entry, for the algorithm image's registry only."""
    server = DOCKER_HUB_KEY if credentials.server == "docker.io" else credentials.server
    basic = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    config = {
        "auths": {server: {"username": credentials.username, "password": credentials.password, "auth": basic}}
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": DOCKER_CONFIG_JSON,
        "metadata": metadata(record, names.pull_secret_name(record["job_id"]), namespace_name, owner),
        "data": {DOCKER_CONFIG_KEY: base64.b64encode(json.dumps(config).encode()).decode()},
    }


def claim(record: Record, namespace_name: str, owner: Manifest) -> Manifest:
    """The job's disk: a claim for exactly the granted disk."""
    limits: Record = record["limits"]
    grant = Grant.from_json(record["grant"])
    spec: Manifest = {
        "accessModes": [limits["volume_access_mode"]],
        "resources": {"requests": {"storage": byte_quantity(grant.disk_bytes)}},
    }
    if limits.get("storage_class"):
        spec["storageClassName"] = limits["storage_class"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(record, names.claim_name(record["job_id"]), namespace_name, owner),
        "spec": spec,
    }


def no_egress_policy(record: Record, namespace_name: str, owner: Manifest) -> Manifest:
    """Selects the algorithm's pod and allows it no traffic either way."""
    selected = {
        **names.node_labels(record["host_id"]),
        names.LABEL_JOB: names.label_value(record["job_id"]),
        names.LABEL_STEP: names.ALGORITHM,
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(record, names.policy_name(record["job_id"]), namespace_name, owner),
        "spec": {"podSelector": {"matchLabels": selected}, "policyTypes": ["Ingress", "Egress"]},
    }


# Pods ------------------------------------------------------------------------------------------


def algorithm_pod(
    record: Record, namespace_name: str, owner: Manifest, pull_secret_name: str | None = None
) -> Manifest:
    """``/bin/sh -c <command>`` with the grant as requests and limits, the time limit as a deadline;
    the job's own image pull Secret, when it has one, after the configured ones."""
    limits: Record = record["limits"]
    grant = Grant.from_json(record["grant"])
    resources = {"cpu": cpu_quantity(grant.cpu), "memory": byte_quantity(grant.ram_bytes)}
    if grant.gpus:
        resources[limits["gpu_resource"]] = str(len(grant.gpus))
    env = {"HOME": "/tmp", **(record.get("env") or {}), "C2D_DATA": DATA_ROOT}
    container = {
        "name": names.ALGORITHM,
        "image": ImageRef.from_json(record["image"]).reference,
        "imagePullPolicy": limits["image_pull_policy"],
        "command": [
            literal(part) for part in ("/bin/sh", "-c", ALGORITHM_WRAPPER, "c2d-algorithm", record["command"])
        ],
        "env": env_list(env),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": container_security(limits),
        "volumeMounts": [
            mount(DATA_VOLUME, f"{DATA_ROOT}/inputs", "inputs", read_only=True),
            mount(DATA_VOLUME, f"{DATA_ROOT}/transformations", "transformations", read_only=True),
            mount(DATA_VOLUME, f"{DATA_ROOT}/outputs", "outputs"),
            mount(DATA_VOLUME, f"{DATA_ROOT}/logs", "logs"),
            mount(TMP_VOLUME, "/tmp"),
        ],
    }
    volumes = [data_volume(record), memory_volume(TMP_VOLUME, int(limits["tmp_bytes"]))]
    made = pod(
        record, names.ALGORITHM, namespace_name, owner, container, volumes, int(record["time_limit_seconds"])
    )
    if pull_secret_name:
        made["spec"].setdefault("imagePullSecrets", []).append({"name": pull_secret_name})
    return made


def step_pod(record: Record, step: str, namespace_name: str, owner: Manifest) -> Manifest:
    """pod-configuration or pod-publishing: the node's code in the pod image, with the whole volume.

    They run hardened like the algorithm, with the network (to reach the node's
    PodService and the dataset sources), and request no more than the job was
    granted (their limits may be higher), so a job never takes more of the
    namespace's quota than its grant.
    """
    pod_record: Record = record["pod"]
    limits: Record = record["limits"]
    grant = Grant.from_json(record["grant"])
    env = env_list(pod_environment(record, with_key=False))
    env.append(
        {
            "name": PRIVATE_KEY,
            "valueFrom": {"secretKeyRef": {"name": names.secret_name(record["job_id"]), "key": PRIVATE_KEY}},
        }
    )
    cpu, ram = float(pod_record["cpu"]), int(pod_record["ram_bytes"])
    mounts = [mount(DATA_VOLUME, DATA_ROOT), mount(TMP_VOLUME, "/tmp")]
    volumes = [data_volume(record), memory_volume(TMP_VOLUME, POD_TMP_BYTES)]
    if step == names.PUBLISHING:
        # The outputs archive is packed outside the job's disk: a job that used it all can still publish.
        mounts.append(mount(SCRATCH_VOLUME, PUBLISHING_WORKDIR))
        volumes.append({"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": byte_quantity(SCRATCH_BYTES)}})
    container = {
        "name": step,
        "image": ImageRef.from_json(pod_record["image"]).reference,
        "imagePullPolicy": limits["image_pull_policy"],
        "command": pod_command(step),
        "env": env,
        "resources": {
            "requests": {
                "cpu": cpu_quantity(min(cpu, grant.cpu)),
                "memory": byte_quantity(min(ram, grant.ram_bytes)),
            },
            "limits": {"cpu": cpu_quantity(cpu), "memory": byte_quantity(ram)},
        },
        "securityContext": container_security(limits),
        "volumeMounts": mounts,
    }
    return pod(record, step, namespace_name, owner, container, volumes, int(pod_record["timeout_seconds"]))


def pod(
    record: Record,
    step: str,
    namespace_name: str,
    owner: Manifest,
    container: Manifest,
    volumes: list[Manifest],
    deadline_seconds: int,
) -> Manifest:
    limits: Record = record["limits"]
    meta = metadata(record, names.pod_name(record["job_id"], step), namespace_name, owner)
    meta["labels"][names.LABEL_STEP] = step
    spec: Manifest = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": max(1, deadline_seconds),
        "terminationGracePeriodSeconds": int(limits["timeout_grace_seconds"]),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(limits),
        "containers": [container],
        "volumes": volumes,
    }
    if limits.get("node_selector"):
        spec["nodeSelector"] = dict(limits["node_selector"])
    if limits.get("runtime_class"):
        spec["runtimeClassName"] = limits["runtime_class"]
    if limits.get("image_pull_secrets"):
        spec["imagePullSecrets"] = [{"name": name} for name in limits["image_pull_secrets"]]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def pod_security(limits: Record) -> Manifest:
    """Every container of the pod runs as ``uid:gid``; the volume is writable by ``gid``."""
    return {
        "runAsNonRoot": True,
        "runAsUser": int(limits["uid"]),
        "runAsGroup": int(limits["gid"]),
        "fsGroup": int(limits["gid"]),
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(limits: Record) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": int(limits["uid"]),
        "runAsGroup": int(limits["gid"]),
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def mount(volume: str, path: str, sub_path: str = "", *, read_only: bool = False) -> Manifest:
    found: Manifest = {"name": volume, "mountPath": path}
    if sub_path:
        found["subPath"] = sub_path
    if read_only:
        found["readOnly"] = True
    return found


def data_volume(record: Record) -> Manifest:
    return {"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": names.claim_name(record["job_id"])}}


def memory_volume(name: str, size: int) -> Manifest:
    """A tmpfs: it counts against the container's memory limit, as Docker's tmpfs does."""
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": byte_quantity(size)}}
