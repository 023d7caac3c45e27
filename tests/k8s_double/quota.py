"""ResourceQuota: admission of pods, PVCs and counted objects, and the ``status.used`` it reports.

Usage follows the real quota evaluators: a pod uses ``pods``, ``count/pods``, ``requests.*``
(also spelled ``cpu``/``memory``) and ``limits.*`` of its effective requests (the larger of the
sum over containers and the largest init container), and ``requests.<extended>`` such as
``requests.nvidia.com/gpu``; pods that reached Succeeded or Failed stop counting. A PVC uses
``persistentvolumeclaims`` and ``requests.storage``; ConfigMaps and Secrets count. Admission is
checked against live usage under the store lock, so two concurrent creations cannot both squeeze
under the limit. Denials carry the real wording: ``exceeded quota: NAME, requested: ..., used: ...,
limited: ...`` and ``failed quota: NAME: must specify limits.cpu for: c``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from . import errors, quantity
from .controller import Controller
from .objects import Change, ObjectStore
from .resources import CONFIGMAPS, PODS, PVCS, QUOTAS, SECRETS, Resource

_COMPUTE = ("cpu", "memory", "ephemeral-storage")
_COUNTED = (PODS, PVCS, CONFIGMAPS, SECRETS)
TERMINAL_PHASES = ("Succeeded", "Failed")


def pod_resources(spec: Mapping[str, Any], kind: str) -> dict[str, Fraction]:
    """Effective ``requests`` or ``limits`` of a pod: max(sum of containers, max of init containers)."""
    total: dict[str, Fraction] = {}
    for container in spec.get("containers") or []:
        for name, value in ((container.get("resources") or {}).get(kind) or {}).items():
            total[name] = total.get(name, Fraction(0)) + quantity.parse(value)
    for container in spec.get("initContainers") or []:
        for name, value in ((container.get("resources") or {}).get(kind) or {}).items():
            total[name] = max(total.get(name, Fraction(0)), quantity.parse(value))
    return total


def usage(resource: Resource, obj: Mapping[str, Any]) -> dict[str, Fraction]:
    """What one object counts against a quota."""
    if resource == PODS:
        return _pod_usage(obj)
    counted = {resource.plural: Fraction(1), f"count/{resource.plural}": Fraction(1)}
    if resource == PVCS:
        storage = (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0")
        counted["requests.storage"] = quantity.parse(storage)
    return counted if resource in _COUNTED else {}


def _pod_usage(pod: Mapping[str, Any]) -> dict[str, Fraction]:
    if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return {"count/pods": Fraction(1)}
    spec = pod.get("spec") or {}
    used = {"pods": Fraction(1), "count/pods": Fraction(1)}
    for name, value in pod_resources(spec, "requests").items():
        used[f"requests.{name}"] = value
        if name in _COMPUTE:
            used[name] = value
    for name, value in pod_resources(spec, "limits").items():
        if name in _COMPUTE:
            used[f"limits.{name}"] = value
    return used


def namespace_usage(store: ObjectStore, namespace: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for resource in _COUNTED:
        for obj in store.list(resource, namespace):
            total.update(usage(resource, obj))
    return total


def hard_limits(quota: Mapping[str, Any]) -> dict[str, Fraction]:
    return {
        name: quantity.parse(value) for name, value in ((quota.get("spec") or {}).get("hard") or {}).items()
    }


def _fmt(name: str, value: Fraction) -> str:
    return f"{name}={quantity.format_quantity(value, quantity.is_bytes(name))}"


def admit(store: ObjectStore, resource: Resource, obj: Mapping[str, Any]) -> None:
    """403 Forbidden when creating ``obj`` would exceed a quota of its namespace (call under the lock)."""
    if resource not in _COUNTED:
        return
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    quotas = store.list(QUOTAS, namespace)
    if not quotas:
        return
    wanted = usage(resource, obj)
    used = namespace_usage(store, namespace)
    for quota in quotas:
        hard = hard_limits(quota)
        if resource == PODS:
            _require_specified(quota["metadata"]["name"], hard, obj, resource)
        exceeded = sorted(k for k in hard if k in wanted and used.get(k, 0) + wanted[k] > hard[k])
        if exceeded:
            why = (
                f"exceeded quota: {quota['metadata']['name']}, "
                f"requested: {','.join(_fmt(k, wanted[k]) for k in exceeded)}, "
                f"used: {','.join(_fmt(k, used.get(k, Fraction(0))) for k in exceeded)}, "
                f"limited: {','.join(_fmt(k, hard[k]) for k in exceeded)}"
            )
            raise errors.forbidden(resource.plural, name, why, resource.group)


def _require_specified(
    quota_name: str, hard: Mapping[str, Fraction], pod: Mapping[str, Any], resource: Resource
) -> None:
    """A quota on cpu/memory requests or limits makes every container state them (else 403)."""
    missing: list[str] = []
    for key in sorted(hard):
        kind, _, compute = key.rpartition(".")
        if compute not in _COMPUTE or kind not in ("", "requests", "limits"):
            continue
        section = "limits" if kind == "limits" else "requests"
        lacking = [
            c["name"]
            for c in _all_containers(pod)
            if compute not in ((c.get("resources") or {}).get(section) or {})
        ]
        if lacking:
            missing.append(f"{key} for: {','.join(lacking)}")
    if missing:
        why = f"failed quota: {quota_name}: must specify {'; '.join(missing)}"
        raise errors.forbidden(resource.plural, pod["metadata"]["name"], why, resource.group)


def _all_containers(pod: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


class QuotaController(Controller):
    """Keeps every quota's ``status.hard`` and ``status.used`` up to date, like kube-controller-manager."""

    watches = (*_COUNTED, QUOTAS)
    resync_seconds = 2.0

    def __init__(self, store: ObjectStore) -> None:
        super().__init__(store)
        self._dirty: set[str] = set()

    def notice(self, change: Change) -> bool:
        self._dirty.add(change.namespace)
        return True

    def reconcile(self) -> None:
        with self.store.lock:
            namespaces, self._dirty = self._dirty, set()
        for namespace in namespaces:
            quotas = self.store.list(QUOTAS, namespace)
            if not quotas:
                continue
            used = namespace_usage(self.store, namespace)
            for quota in quotas:
                self._publish(quota, used)

    def _publish(self, quota: Mapping[str, Any], used: Counter[str]) -> None:
        hard = (quota.get("spec") or {}).get("hard") or {}
        status = {
            "hard": dict(hard),
            "used": {
                k: quantity.format_quantity(Fraction(used.get(k, 0)), quantity.is_bytes(k)) for k in hard
            },
        }
        if quota.get("status") != status:
            self.update_quietly(QUOTAS, quota, lambda obj: obj.__setitem__("status", status))
