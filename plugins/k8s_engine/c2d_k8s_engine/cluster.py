"""The Kubernetes API: credentials, whether it answers, what the cluster offers, the node's namespace.

Credentials are found, not assumed: the service account's when the plugin
runs in a pod, else the kubeconfig (and context) of the config. Credentials
the operator named but that cannot be used fail Configure (FAILED_PRECONDITION,
saying what to set); none at all, where none was asked for (no kubeconfig set,
no ``$KUBECONFIG``, no ``~/.kube/config``, not in a pod), is an engine with
nothing to drive: Configure fails as *undetected*, which the host logs as
information and does not retry. An API that does not answer, or refuses the credentials, is a health
(UNDETECTED or UNHEALTHY, with the reason), tracked by a monitor thread that
re-checks every few seconds and sets up the namespace and its quota once the
API answers. Jobs outlive the API's hiccups: drivers wait here, bounded, for
it to come back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes
import structlog
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from c2d.common.v1 import common_pb2
from c2d.plugin.kit import health
from c2d.plugin.kit.errors import precondition, undetected
from c2d.plugin.kit.health import HealthState, HealthTracker
from c2d_k8s_engine import kube, manifests, names
from c2d_k8s_engine.config import ClusterSize, KubernetesSettings

PING_TIMEOUT_SECONDS = 5
MONITOR_INTERVAL_SECONDS = 3.0
POOL_SIZE = 64
GIB = Decimal(1 << 30)
IN_CLUSTER_VARIABLE = "KUBERNETES_SERVICE_HOST"

log = structlog.get_logger("c2d_k8s_engine.cluster")
Health = common_pb2.EngineHealth

__all__ = ["Cluster", "HealthState", "api_client"]


def kubeconfig_path(settings: KubernetesSettings) -> Path:
    return Path(os.path.expanduser(settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"))


def uses_in_cluster(settings: KubernetesSettings) -> bool:
    if settings.in_cluster == "auto":
        return bool(os.environ.get(IN_CLUSTER_VARIABLE))
    return bool(settings.in_cluster)


def api_client(settings: KubernetesSettings) -> tuple[kubernetes.client.ApiClient, str]:
    """A client with this config's credentials, and where they came from; FAILED_PRECONDITION without any."""
    configuration = type.__call__(kubernetes.client.Configuration)
    if uses_in_cluster(settings):
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise precondition(
                f"[engines.kubernetes] in-cluster credentials cannot be used: {exc}; "
                "set in_cluster = false and a kubeconfig, or run the plugin in a pod with a service account"
            ) from None
        source = "the pod's service account"
    else:
        path = kubeconfig_path(settings)
        if not path.is_file():
            refusal = precondition if settings.kubeconfig or os.environ.get("KUBECONFIG") else undetected
            raise refusal(
                f"no Kubernetes credentials: {path} does not exist and the plugin does not run in a cluster; "
                "set kubeconfig (and context) in [engines.kubernetes]"
            )
        try:
            kubernetes.config.load_kube_config(
                config_file=str(path),
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise precondition(f"[engines.kubernetes] cannot use the kubeconfig {path}: {exc}") from None
        source = f"{path}" + (f" (context {settings.context})" if settings.context else "")
    configuration.connection_pool_maxsize = POOL_SIZE
    return kubernetes.client.ApiClient(configuration), source


class Cluster(HealthTracker):
    """One API server with one set of credentials: its clients, its health, its size."""

    def __init__(self, settings: KubernetesSettings) -> None:
        self.client, self.source = api_client(settings)
        self.address = str(self.client.configuration.host)
        super().__init__(
            "kubernetes",
            HealthState(Health.ENGINE_HEALTH_UNDETECTED, f"no Kubernetes API at {self.address} yet"),
        )
        self.timeout = settings.api_timeout_seconds
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.networking = kubernetes.client.NetworkingV1Api(self.client)
        self._version = kubernetes.client.VersionApi(self.client)
        self._seen = False
        self._nodes_forbidden = False
        self._problem: str | None = None
        self._answering: HealthState | None = None

    # Health ------------------------------------------------------------------------

    def check(self, namespace: str) -> bool:
        """Asks the API now (its version, then the namespace's pods: the credentials and RBAC); whether it
        answered (the health stays UNHEALTHY while a :meth:`report`-ed problem lasts)."""
        try:
            version = kube.read(self._version.get_code, _request_timeout=PING_TIMEOUT_SECONDS)
        except Exception as exc:
            gone = f"the Kubernetes API at {self.address} stopped answering"
            return self._failed(exc, gone if self._seen else f"no Kubernetes API answers at {self.address}")
        try:
            kube.read(
                self.core.list_namespaced_pod, namespace, limit=1, _request_timeout=PING_TIMEOUT_SECONDS
            )
        except Exception as exc:
            return self._failed(
                exc, f"the Kubernetes API at {self.address} refused to list pods in {namespace}"
            )
        self._seen = True
        release = " ".join(filter(None, ("Kubernetes", str(version.get("gitVersion") or ""))))
        self._answering = HealthState(
            Health.ENGINE_HEALTH_HEALTHY, f"{release} at {self.address}, namespace {namespace}"
        )
        problem = self._problem
        self._set(
            self._answering if problem is None else HealthState(Health.ENGINE_HEALTH_UNHEALTHY, problem)
        )
        return True

    def report(self, problem: str) -> None:
        """The API answers but the engine cannot use it (its namespace cannot be made...): UNHEALTHY
        until :meth:`resolved`, however well the API answers meanwhile."""
        self._problem = problem
        self._set(HealthState(Health.ENGINE_HEALTH_UNHEALTHY, problem))

    def resolved(self) -> None:
        """The reported problem is gone: healthy again if the API answered last time."""
        self._problem = None
        if self._answering is not None and self.state.health == Health.ENGINE_HEALTH_UNHEALTHY:
            self._set(self._answering)

    def _failed(self, exc: Exception, what: str) -> bool:
        status = kube.status_of(exc)
        if status == kube.UNAUTHORIZED:
            reason = f"{what}: the credentials from {self.source} were refused ({kube.describe(exc)})"
            level = Health.ENGINE_HEALTH_UNHEALTHY
        elif status == kube.FORBIDDEN:
            reason = f"{what}: forbidden ({kube.describe(exc)}); see the RBAC rules in the engine's README"
            level = Health.ENGINE_HEALTH_UNHEALTHY
        else:
            reason = f"{what}: {kube.describe(exc)}"
            level = Health.ENGINE_HEALTH_UNHEALTHY if self._seen else Health.ENGINE_HEALTH_UNDETECTED
        self._set(HealthState(level, reason))
        return False

    def _set(self, state: HealthState) -> None:
        self.set_state(state, on_description=True)

    def start_monitor(self, tick: Callable[[int], None]) -> None:
        """Calls ``tick(n)`` every few seconds from a thread of its own (it checks health, re-measures...)."""
        self.start_ticking(tick, MONITOR_INTERVAL_SECONDS, "k8s-health")

    def wait_until_up(self, namespace: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """Waits (bounded) for the API to answer again; whether it did."""
        return health.wait_until_up(lambda: self.check(namespace), timeout, stop)

    # Size --------------------------------------------------------------------------

    def measure(self, namespace: str, gpu_resources: set[str]) -> ClusterSize:
        """The ready, schedulable nodes' allocatable resources, bounded by the namespace's quotas
        (all but the one this engine manages, which follows from this measure)."""
        cpu, ram, disk = Decimal(0), Decimal(0), Decimal(0)
        gpus = dict.fromkeys(gpu_resources, Decimal(0))
        nodes = self._nodes()
        measured = nodes is not None
        for node in nodes or ():
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            cpu += kube.quantity(allocatable.get("cpu", 0))
            ram += kube.quantity(allocatable.get("memory", 0))
            disk += kube.quantity(allocatable.get("ephemeral-storage", 0))
            for resource in gpus:
                gpus[resource] += kube.quantity(allocatable.get(resource, 0))
        for hard in self._quota_limits(namespace):
            cpu = _bounded(cpu, hard, measured, "requests.cpu", "cpu")
            ram = _bounded(ram, hard, measured, "requests.memory", "memory")
            disk = _bounded(disk, hard, False, "requests.storage")
            for resource in gpus:
                gpus[resource] = _bounded(gpus[resource], hard, measured, f"requests.{resource}")
        return ClusterSize(
            cpu=_floor(cpu),
            ram_gib=_floor(ram / GIB),
            disk_gib=_floor(disk / GIB),
            # Only what was seen: GPUs of nodes this account may not list are not "none".
            gpus={resource: int(count) for resource, count in gpus.items() if measured or count > 0},
        )

    def _nodes(self) -> list[kube.Obj] | None:
        """The ready, schedulable nodes; None when this service account may not list them."""
        if self._nodes_forbidden:
            return None
        try:
            listed = kube.read(self.core.list_node, _request_timeout=self.timeout)
        except ApiException as exc:
            if exc.status != kube.FORBIDDEN:
                raise
            self._nodes_forbidden = True
            log.warning(
                "may not list nodes: the cluster's size is taken from the namespace's quotas and the config",
                reason=kube.describe(exc),
            )
            return None
        return [node for node in kube.items(listed) if _schedulable(node)]

    def _quota_limits(self, namespace: str) -> list[dict[str, Any]]:
        listed = kube.read(self.core.list_namespaced_resource_quota, namespace, _request_timeout=self.timeout)
        return [
            dict((quota.get("spec") or {}).get("hard") or {})
            for quota in kube.items(listed)
            if kube.name_of(quota) != names.QUOTA_NAME
        ]

    # The node's namespace ----------------------------------------------------------

    def ensure_namespace(self, namespace: str, host_id: str, create: bool) -> None:
        """Creates the namespace when it is missing (and allowed to); one we may not read is taken as there."""
        try:
            if (
                kube.read_or_none(self.core.read_namespace, namespace, _request_timeout=self.timeout)
                is not None
            ):
                return
        except ApiException as exc:
            if exc.status == kube.FORBIDDEN:
                return
            raise
        if not create:
            raise precondition(
                f"namespace {namespace} does not exist; create it or set create_namespace = true"
            )
        try:
            kube.read(
                self.core.create_namespace,
                manifests.namespace(namespace, host_id),
                _request_timeout=self.timeout,
            )
            log.info("namespace created", namespace=namespace)
        except ApiException as exc:
            if exc.status != kube.CONFLICT:
                raise

    def ensure_quota(self, namespace: str, host_id: str, totals: dict[str, Any]) -> None:
        """Makes the managed ResourceQuota say ``totals`` (created or replaced)."""
        body = manifests.quota(namespace, host_id, totals)
        existing = kube.read_or_none(
            self.core.read_namespaced_resource_quota,
            names.QUOTA_NAME,
            namespace,
            _request_timeout=self.timeout,
        )
        if existing is None:
            kube.create(
                self.core.create_namespaced_resource_quota,
                self.core.read_namespaced_resource_quota,
                namespace,
                body,
                _request_timeout=self.timeout,
            )
        elif (existing.get("spec") or {}).get("hard") != body["spec"]["hard"]:
            body["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
            kube.read(
                self.core.replace_namespaced_resource_quota,
                names.QUOTA_NAME,
                namespace,
                body,
                _request_timeout=self.timeout,
            )
        else:
            return
        log.info("resource quota set", namespace=namespace, hard=body["spec"]["hard"])


def _schedulable(node: kube.Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _bounded(value: Decimal, hard: dict[str, Any], measured: bool, *keys: str) -> Decimal:
    """``value`` capped by the quota's first key present; the quota itself when nothing was measured."""
    for key in keys:
        if key in hard:
            limit = kube.quantity(hard[key])
            return min(value, limit) if measured or value > 0 else limit
    return value


def _floor(value: Decimal) -> float:
    """Rounded down to 0.01: never advertise more than there is."""
    return float(int(value * 100)) / 100
