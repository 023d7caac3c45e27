"""The double's single node: its identity and API object, and how it names and labels what it runs.

Every Docker container and volume the kubelet creates carries ``c2d.k8s-double=<instance id>`` plus
the pod's namespace, name and uid and the container's name, so that tests can find them and
:meth:`ApiServerDouble.close` can remove everything one double created, and only that.
"""

from __future__ import annotations

import os
import platform
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import Api
from .objects import Obj, ObjectStore, now
from .resources import VERSION_INFO
from .storage import StorageController

LABEL_INSTANCE = "c2d.k8s-double"
LABEL_NAMESPACE = "c2d.k8s-double.namespace"
LABEL_POD = "c2d.k8s-double.pod"
LABEL_POD_UID = "c2d.k8s-double.pod-uid"
LABEL_CONTAINER = "c2d.k8s-double.container"


@dataclass
class Node:
    """What a pod worker needs to know about the machine it runs pods on."""

    name: str
    instance_id: str
    docker: Any
    api: Api
    store: ObjectStore
    storage: StorageController
    work_dir: Path
    host_ip: str
    allocatable: dict[str, str]
    labels_extra: dict[str, str] = field(default_factory=dict)

    def labels(self, pod: Obj, container: str | None = None) -> dict[str, str]:
        labels = {
            LABEL_INSTANCE: self.instance_id,
            LABEL_NAMESPACE: pod["metadata"]["namespace"],
            LABEL_POD: pod["metadata"]["name"],
            LABEL_POD_UID: pod["metadata"]["uid"],
        }
        if container is not None:
            labels[LABEL_CONTAINER] = container
        return labels

    @staticmethod
    def container_name(pod: Obj, container: str) -> str:
        """``k8sd-<ns>.<pod>.<container>-<uid prefix>``: readable in ``docker ps``, unique per pod uid."""
        metadata = pod["metadata"]
        name = f"k8sd-{metadata['namespace']}.{metadata['name']}.{container}"
        return re.sub(r"[^a-zA-Z0-9_.-]", "-", name)[:200] + "-" + metadata["uid"][:8]

    def pod_dir(self, pod: Obj) -> Path:
        return self.work_dir / "pods" / pod["metadata"]["uid"]

    def api_object(self) -> Obj:
        """The Node as ``GET /api/v1/nodes/<name>`` shows it: Ready, with the configured allocatable."""
        return {
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": _arch(),
                    **self.labels_extra,
                },
            },
            "spec": {},
            "status": {
                "capacity": dict(self.allocatable),
                "allocatable": dict(self.allocatable),
                "conditions": [_ready_condition()],
                "addresses": [
                    {"type": "InternalIP", "address": self.host_ip},
                    {"type": "Hostname", "address": self.name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": _node_info(),
            },
        }


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _ready_condition() -> dict[str, Any]:
    stamp = now()
    return {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status (the API server double runs pods as Docker containers)",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }


def _node_info() -> dict[str, str]:
    return {
        "architecture": _arch(),
        "bootID": str(uuid.uuid4()),
        "containerRuntimeVersion": "docker://c2d-k8s-double",
        "kernelVersion": platform.release(),
        "kubeProxyVersion": VERSION_INFO["gitVersion"],
        "kubeletVersion": VERSION_INFO["gitVersion"],
        "machineID": uuid.uuid4().hex,
        "operatingSystem": "linux",
        "osImage": "c2d Kubernetes API server double",
        "systemUUID": str(uuid.uuid4()),
    }


def default_allocatable() -> dict[str, str]:
    """This machine's CPUs and memory, 100Gi of ephemeral storage and 110 pods (kubelet's default)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory // 2**20}Mi",
        "ephemeral-storage": "100Gi",
        "pods": "110",
    }


def bridge_gateway(client: Any) -> str:
    """The host's address on Docker's default bridge, where pods reach the host (its hostIP here)."""
    try:
        configs = (client.networks.get("bridge").attrs.get("IPAM") or {}).get("Config") or []
    except Exception:
        return "127.0.0.1"
    for config in configs:
        if config.get("Gateway"):
            return str(config["Gateway"]).split("/")[0]
    return "127.0.0.1"
