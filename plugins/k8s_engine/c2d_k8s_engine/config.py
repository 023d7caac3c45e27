"""The engine's config section (``[engines.kubernetes]``), as Configure receives it.

Every key is optional. Credentials are the service account's when the plugin
runs in a pod (``KUBERNETES_SERVICE_HOST`` is set), else a kubeconfig
(``kubeconfig``, default ``$KUBECONFIG`` or ``~/.kube/config``) and its
``context``. Environments left out mean one environment, ``k8s-cluster``,
sized from the cluster; sizes left out of an environment are measured the
same way (the ready nodes' allocatable resources, bounded by the namespace's
resource quotas), which is why parsing yields :class:`EnvironmentSettings`
with gaps that :func:`resolve` fills once the cluster is known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from c2d.plugin.kit import environments, pullcreds, values
from c2d.plugin.kit.errors import invalid

WHERE = "[engines.kubernetes]"
DEFAULT_ENVIRONMENT_ID = "k8s-cluster"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
IN_CLUSTER_MODES = ("auto", True, False)
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany")
# An extended resource name: an optional DNS prefix, a slash, a name.
RESOURCE_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

COUNTS: dict[str, int] = {
    "uid": 1000,
    "pod_timeout_seconds": 600,
    "pending_timeout_seconds": 600,
    "timeout_grace_seconds": 2,
    "log_max_mib": 64,
    "api_timeout_seconds": 30,
    "api_wait_seconds": 120,
}
TOP_LEVEL_KEYS = frozenset(
    {
        *COUNTS,
        "gid",
        "kubeconfig",
        "context",
        "in_cluster",
        "namespace",
        "create_namespace",
        "manage_quota",
        "storage_class",
        "volume_access_mode",
        "pod_image",
        "pod_service_address",
        "image_pull_policy",
        "image_pull_secrets",
        "registries",
        "node_selector",
        "runtime_class",
        "gpu_resource",
        "pod_cpu",
        "pod_ram_gib",
        "environments",
    }
)
ENVIRONMENT_KEYS = environments.COMMON_KEYS | {"gpus", "gpu_resource", "gpu_model", "node_selector"}


@dataclass(frozen=True)
class ClusterSize:
    """What the cluster offers this node: the ready nodes' allocatable resources, bounded by quotas."""

    cpu: float = 0.0
    ram_gib: float = 0.0
    disk_gib: float = 0.0
    gpus: dict[str, int] = field(default_factory=dict)  # by extended resource name


@dataclass(frozen=True)
class EnvironmentSettings(environments.EnvironmentSettings):
    """One environment as configured; None means "measure it"."""

    gpus: int | None = None  # None: none (the default environment: every GPU the cluster has)
    gpu_resource: str | None = None
    gpu_model: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvironmentConfig(environments.EnvironmentConfig):
    """One environment, every size known: the capacity jobs share and what one job may get."""

    gpus: int = 0
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    gpu_model: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """GPUs are counted, not named, in Kubernetes: the node grants slots, the pod asks for as many."""
        return tuple(f"{self.gpu_resource}-{i}" for i in range(self.gpus))

    @property
    def gpu_vendor(self) -> str:
        return self.gpu_resource.split("/", 1)[0].split(".", 1)[0] if self.gpus else ""


@dataclass(frozen=True)
class KubernetesSettings:
    """The whole section, checked; environments still to be resolved against the cluster."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool | str = "auto"
    namespace: str | None = None
    create_namespace: bool = True
    manage_quota: bool = True
    storage_class: str | None = None
    volume_access_mode: str = "ReadWriteOnce"
    pod_image: str | None = None
    pod_service_address: str | None = None
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    # Per registry: made into a job's own pull Secret when its algorithm image is on that registry.
    registries: tuple[pullcreds.Credentials, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    runtime_class: str | None = None
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    uid: int = 1000
    gid: int = 1000
    pod_cpu: float = 1.0
    pod_ram_gib: float = 2.0
    pod_timeout_seconds: int = 600
    pending_timeout_seconds: int = 600
    timeout_grace_seconds: int = 2
    log_max_mib: int = 64
    api_timeout_seconds: int = 30
    api_wait_seconds: int = 120
    environments: tuple[EnvironmentSettings, ...] | None = None
    ignored_keys: tuple[str, ...] = ()

    def connection(self) -> tuple[Any, ...]:
        """What identifies the API server and credentials: a Configure changing it needs a new client."""
        return (self.kubeconfig, self.context, self.in_cluster, self.api_timeout_seconds)


def parse_settings(raw: Mapping[str, Any]) -> KubernetesSettings:
    """The section checked; INVALID_ARGUMENT naming the first bad key."""
    counts = {key: values.count(raw, key, default, WHERE) for key, default in COUNTS.items()}
    for key in ("pod_timeout_seconds", "pending_timeout_seconds", "log_max_mib", "api_timeout_seconds"):
        if counts[key] < 1:
            raise invalid(f"{WHERE} {key} must be at least 1")
    gpu_resource = _resource_name(raw, "gpu_resource", WHERE) or DEFAULT_GPU_RESOURCE
    return KubernetesSettings(
        kubeconfig=values.optional_text(raw, "kubeconfig", WHERE),
        context=values.optional_text(raw, "context", WHERE),
        in_cluster=_in_cluster(raw.get("in_cluster", "auto")),
        namespace=_namespace(raw),
        create_namespace=values.flag(raw, "create_namespace", True, WHERE),
        manage_quota=values.flag(raw, "manage_quota", True, WHERE),
        storage_class=values.optional_text(raw, "storage_class", WHERE),
        volume_access_mode=_choice(raw, "volume_access_mode", ACCESS_MODES, "ReadWriteOnce"),
        pod_image=values.optional_text(raw, "pod_image", WHERE),
        pod_service_address=values.optional_text(raw, "pod_service_address", WHERE),
        image_pull_policy=_choice(raw, "image_pull_policy", PULL_POLICIES, "IfNotPresent"),
        image_pull_secrets=values.text_list(raw, "image_pull_secrets", WHERE),
        registries=pullcreds.parse_registries(raw.get("registries"), WHERE),
        node_selector=values.text_map(raw, "node_selector", WHERE),
        runtime_class=values.optional_text(raw, "runtime_class", WHERE),
        gpu_resource=gpu_resource,
        uid=counts["uid"],
        gid=values.count(raw, "gid", counts["uid"], WHERE),
        pod_cpu=values.positive(raw, "pod_cpu", 1.0, WHERE),
        pod_ram_gib=values.positive(raw, "pod_ram_gib", 2.0, WHERE),
        pod_timeout_seconds=counts["pod_timeout_seconds"],
        pending_timeout_seconds=counts["pending_timeout_seconds"],
        timeout_grace_seconds=counts["timeout_grace_seconds"],
        log_max_mib=counts["log_max_mib"],
        api_timeout_seconds=counts["api_timeout_seconds"],
        api_wait_seconds=counts["api_wait_seconds"],
        environments=environments.parse_list(
            raw.get("environments"), WHERE, _environment, lambda env: env.id
        ),
        ignored_keys=tuple(sorted(set(raw) - TOP_LEVEL_KEYS)),
    )


def _environment(raw: object, index: int) -> EnvironmentSettings:
    entry, where = environments.open_entry(raw, index, WHERE, ENVIRONMENT_KEYS)
    gpus = entry.get("gpus")
    return EnvironmentSettings(
        **environments.parse_common(entry, where),
        gpus=None if gpus is None else values.count(entry, "gpus", 0, where),
        gpu_resource=_resource_name(entry, "gpu_resource", where),
        gpu_model=values.optional_text(entry, "gpu_model", where) or "",
        node_selector=values.text_map(entry, "node_selector", where),
    )


def resolve(settings: KubernetesSettings, cluster: ClusterSize) -> tuple[EnvironmentConfig, ...]:
    """The environments with every size filled in from ``cluster``; configured sizes are capped by it
    where the cluster was measured (a size of 0, or a GPU resource left out, means "not known")."""
    if settings.environments is None:
        gpus = cluster.gpus.get(settings.gpu_resource, 0)
        default = EnvironmentSettings(
            id=DEFAULT_ENVIRONMENT_ID,
            description="Kubernetes pods in this node's namespace",
            gpus=gpus,
        )
        return (resolve_environment(default, cluster, settings),)
    return tuple(resolve_environment(env, cluster, settings) for env in settings.environments)


def resolve_environment(
    env: EnvironmentSettings, cluster: ClusterSize, settings: KubernetesSettings
) -> EnvironmentConfig:
    common = environments.resolved_common(
        env, cluster.cpu, cluster.ram_gib, cluster.disk_gib, f"Kubernetes pods ({env.id})"
    )
    for key, measured in (("cpu", cluster.cpu), ("ram_gib", cluster.ram_gib), ("disk_gib", cluster.disk_gib)):
        if measured > 0 and common[key] > measured:
            common[key] = measured
    for key, total in (("min_cpu", "cpu"), ("min_ram_gib", "ram_gib"), ("min_disk_gib", "disk_gib")):
        common[key] = min(common[key], common[total])
    gpu_resource = env.gpu_resource or settings.gpu_resource
    gpus = env.gpus or 0
    if gpu_resource in cluster.gpus:
        gpus = min(gpus, cluster.gpus[gpu_resource])
    return EnvironmentConfig(
        **common,
        gpus=gpus,
        gpu_resource=gpu_resource,
        gpu_model=env.gpu_model,
        node_selector={**settings.node_selector, **env.node_selector},
    )


def total_capacity(environments_: tuple[EnvironmentConfig, ...]) -> dict[str, Any]:
    """What the environments together offer: the managed ResourceQuota's hard limits come from it."""
    gpus: dict[str, int] = {}
    for env in environments_:
        if env.gpus:
            gpus[env.gpu_resource] = gpus.get(env.gpu_resource, 0) + env.gpus
    return {
        "cpu": sum(env.cpu for env in environments_),
        "ram_gib": sum(env.ram_gib for env in environments_),
        "disk_gib": sum(env.disk_gib for env in environments_),
        "gpus": gpus,
    }


# Value checks --------------------------------------------------------------------------------


def _in_cluster(value: object) -> bool | str:
    if value not in IN_CLUSTER_MODES or (isinstance(value, int | float) and not isinstance(value, bool)):
        raise invalid(f'{WHERE} in_cluster must be "auto", true or false, got {value!r}')
    return value


def _namespace(raw: Mapping[str, Any]) -> str | None:
    namespace = values.optional_text(raw, "namespace", WHERE)
    if namespace is not None and not NAMESPACE.match(namespace):
        raise invalid(
            f"{WHERE} namespace {namespace!r} is not a valid namespace name "
            "(lower-case letters, digits and '-', at most 63)"
        )
    return namespace


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise invalid(f"{WHERE} {key} must be one of {list(choices)}, got {value!r}")
    return str(value)


def _resource_name(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    name = values.optional_text(entry, key, where)
    if name is not None and not RESOURCE_NAME.match(name):
        raise invalid(f"{where}: {key} {name!r} is not a resource name like nvidia.com/gpu")
    return name
