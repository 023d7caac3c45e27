"""The resource types the double serves, and the discovery documents that describe them.

A :class:`Resource` is what a URL segment like ``pods`` or ``networkpolicies`` resolves to: its
group/version, kind, whether it lives in a namespace, its subresources and the field selectors the
real API accepts for it. Discovery (``/api``, ``/apis``, ``/api/v1``...) is generated from the same
table, so what the double advertises is exactly what it routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_POD_FIELDS = _COMMON_FIELDS | {
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
}
_EVENT_FIELDS = _COMMON_FIELDS | {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-c2d-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Resource:
    """One REST resource: ``pods`` in core v1, ``networkpolicies`` in networking.k8s.io/v1..."""

    plural: str
    kind: str
    namespaced: bool = True
    group: str = ""
    version: str = "v1"
    subresources: frozenset[str] = frozenset()
    field_labels: frozenset[str] = _COMMON_FIELDS
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Unique across groups: ``pods``, ``networkpolicies.networking.k8s.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        """Whether writes to the main resource leave ``status`` alone (it has a /status subresource)."""
        return "status" in self.subresources

    def __str__(self) -> str:
        return self.key


PODS = Resource(
    "pods", "Pod", subresources=frozenset({"status", "log"}), field_labels=_POD_FIELDS, short_names=("po",)
)
NAMESPACES = Resource(
    "namespaces",
    "Namespace",
    namespaced=False,
    subresources=frozenset({"status", "finalize"}),
    field_labels=_COMMON_FIELDS | {"status.phase"},
    short_names=("ns",),
)
NODES = Resource("nodes", "Node", namespaced=False, subresources=frozenset({"status"}), short_names=("no",))
PVCS = Resource(
    "persistentvolumeclaims",
    "PersistentVolumeClaim",
    subresources=frozenset({"status"}),
    short_names=("pvc",),
)
CONFIGMAPS = Resource("configmaps", "ConfigMap", short_names=("cm",))
SECRETS = Resource("secrets", "Secret", field_labels=_COMMON_FIELDS | {"type"})
QUOTAS = Resource(
    "resourcequotas", "ResourceQuota", subresources=frozenset({"status"}), short_names=("quota",)
)
EVENTS = Resource("events", "Event", field_labels=_EVENT_FIELDS, short_names=("ev",))
SERVICE_ACCOUNTS = Resource("serviceaccounts", "ServiceAccount", short_names=("sa",))
NETWORK_POLICIES = Resource(
    "networkpolicies", "NetworkPolicy", group="networking.k8s.io", short_names=("netpol",)
)

ALL = (PODS, NAMESPACES, NODES, PVCS, CONFIGMAPS, SECRETS, QUOTAS, EVENTS, SERVICE_ACCOUNTS, NETWORK_POLICIES)
_BY_PATH = {(r.group, r.version, r.plural): r for r in ALL}
_BY_NAME = {name: r for r in ALL for name in (r.plural, r.kind, r.kind.lower(), r.key, *r.short_names)}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at ``/api[s]/{group}/{version}/{plural}``, if any."""
    return _BY_PATH.get((group, version, plural))


def by_name(name: str) -> Resource:
    """For test helpers: ``"pods"``, ``"Pod"``, ``"pvc"``, ``"networkpolicies"`` all work."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"the double serves no resource called {name!r}") from None


# discovery -----------------------------------------------------------------------------------


def group_versions() -> list[str]:
    """Every ``group/version`` served besides core ``v1``, in a stable order."""
    return sorted({r.api_version for r in ALL if r.group})


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(name: str) -> dict[str, Any] | None:
    """``GET /apis/{group}``, or None for a group the double does not serve."""
    versions = [
        {"groupVersion": gv, "version": gv.split("/")[1]}
        for gv in group_versions()
        if gv.split("/")[0] == name
    ]
    if not versions:
        return None
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> dict[str, Any]:
    """``GET /apis``."""
    groups = sorted({gv.split("/")[0] for gv in group_versions()})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(name) for name in groups]}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/{group}/{version}``."""
    served = [r for r in ALL if r.group == group and r.version == version]
    if not served:
        return None
    resources: list[dict[str, Any]] = []
    for resource in served:
        entry = {
            "name": resource.plural,
            "singularName": resource.kind.lower(),
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(_VERBS),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        resources.append(entry)
        for sub in sorted(resource.subresources):
            verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
            resources.append(
                {
                    "name": f"{resource.plural}/{sub}",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": verbs,
                }
            )
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }
