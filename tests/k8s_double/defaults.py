"""Defaulting on create, as the API server's defaulters and default admission plugins do it.

What a client reads back differs from what it sent in ways engines notice: a pod gets
``restartPolicy: Always`` and ``terminationGracePeriodSeconds: 30`` unless it says otherwise,
requests copied from limits, a QoS class and ``status.phase: Pending``; a PVC gets the
``kubernetes.io/pvc-protection`` finalizer; a namespace the ``kubernetes`` finalizer and its
``kubernetes.io/metadata.name`` label; a Secret's ``stringData`` is folded into base64 ``data``.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from . import quantity
from .resources import NAMESPACES, NETWORK_POLICIES, PODS, PVCS, SECRETS, Resource

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's: no vowels, no look-alikes
PVC_PROTECTION = "kubernetes.io/pvc-protection"


def generate_name(prefix: str) -> str:
    """``generateName`` + 5 random characters, as the real name generator does."""
    return prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


def apply(resource: Resource, obj: dict[str, Any]) -> None:
    """Fill in the defaults of a new object in place."""
    obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
    metadata = obj.setdefault("metadata", {})
    for system_field in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ):
        metadata.pop(system_field, None)
    defaulter = _DEFAULTERS.get(resource.key)
    if defaulter is not None:
        defaulter(obj)


def _pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            _container(container)
    obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def _container(container: dict[str, Any]) -> None:
    image = container.get("image", "")
    tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
    latest = not tagged or image.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    limits = resources.get("limits") or {}
    if limits:
        requests = resources.setdefault("requests", {})
        for name, value in limits.items():
            requests.setdefault(name, value)


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed (cpu and memory limits == requests everywhere), BestEffort (none) or Burstable."""
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("limits") or r.get("requests") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or quantity.parse(requests.get(name, limits[name])) != quantity.parse(
                limits[name]
            ):
                return "Burstable"
    return "Guaranteed"


def _namespace(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}
    name = obj["metadata"].get("name")
    if name:
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def _pvc(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    finalizers = obj["metadata"].setdefault("finalizers", [])
    if PVC_PROTECTION not in finalizers:
        finalizers.append(PVC_PROTECTION)
    obj["status"] = {"phase": "Pending"}


def _secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    apply_secret_string_data(obj)


def apply_secret_string_data(obj: dict[str, Any]) -> None:
    """Fold write-only ``stringData`` into base64 ``data`` (on create and on update)."""
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(value.encode()).decode()


def _network_policy(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


_DEFAULTERS = {
    PODS.key: _pod,
    NAMESPACES.key: _namespace,
    PVCS.key: _pvc,
    SECRETS.key: _secret,
    NETWORK_POLICIES.key: _network_policy,
}
