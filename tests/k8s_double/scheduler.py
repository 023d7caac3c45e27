"""The scheduler: binds pending pods to the double's single node when they fit, else reports why not.

Fit is the real scheduler's resource fit: the pod's effective requests plus those of the pods bound
to the node that have not finished must stay within ``status.allocatable`` (cpu, memory,
ephemeral-storage, extended resources such as ``nvidia.com/gpu``, and the ``pods`` count), the
node's labels must match ``spec.nodeSelector``, and every PVC must exist and be bound. A pod that
does not fit stays Pending with condition ``PodScheduled=False, reason=Unschedulable`` and the real
message (``0/1 nodes are available: 1 Insufficient cpu.``), and is retried whenever pods finish.
Affinity, taints/tolerations, priorities and preemption are not implemented.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

from . import quantity
from .controller import Controller
from .objects import Change, Obj, ObjectStore, now
from .quota import TERMINAL_PHASES, pod_resources
from .resources import NODES, PODS, PVCS


class Scheduler(Controller):
    watches = (PODS, PVCS, NODES)
    resync_seconds = 1.0

    def __init__(self, store: ObjectStore, node_name: str) -> None:
        super().__init__(store)
        self.node_name = node_name

    def notice(self, change: Change) -> bool:
        if change.resource != PODS:
            return True
        pod = change.new
        return (
            not pod["spec"].get("nodeName")
            or change.type == "DELETED"
            or pod["status"].get("phase") in TERMINAL_PHASES
        )

    def reconcile(self) -> None:
        node = self.store.find(NODES, "", self.node_name)
        if node is None:
            return
        allocatable = {
            k: quantity.parse(v) for k, v in (node.get("status") or {}).get("allocatable", {}).items()
        }
        pods = self.store.list(PODS)
        used: Counter[str] = Counter()
        for pod in pods:
            if (
                pod["spec"].get("nodeName") == self.node_name
                and pod["status"].get("phase") not in TERMINAL_PHASES
            ):
                used.update(self._demand(pod))
        pending = [
            p for p in pods if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        for pod in sorted(pending, key=lambda p: int(p["metadata"]["resourceVersion"])):
            reasons = self._misfit(pod, node, allocatable, used)
            if reasons:
                self._mark_unschedulable(pod, f"0/1 nodes are available: {reasons}.")
            else:
                used.update(self._demand(pod))
                self._bind(pod)

    @staticmethod
    def _demand(pod: Obj) -> dict[str, Fraction]:
        demand = pod_resources(pod.get("spec") or {}, "requests")
        demand["pods"] = Fraction(1)
        return demand

    def _misfit(self, pod: Obj, node: Obj, allocatable: dict[str, Fraction], used: Counter[str]) -> str:
        claims = self._claim_problems(pod)
        if claims:
            return claims
        selector = pod["spec"].get("nodeSelector") or {}
        labels = node["metadata"].get("labels") or {}
        if any(labels.get(key) != value for key, value in selector.items()):
            return "1 node(s) didn't match Pod's node affinity/selector"
        short = []
        for name, amount in sorted(self._demand(pod).items()):
            if amount > 0 and used.get(name, 0) + amount > allocatable.get(name, Fraction(0)):
                short.append("1 Too many pods" if name == "pods" else f"1 Insufficient {name}")
        return ", ".join(short)

    def _claim_problems(self, pod: Obj) -> str:
        namespace = pod["metadata"]["namespace"]
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            pvc = self.store.find(PVCS, namespace, claim)
            if pvc is None:
                return f'persistentvolumeclaim "{claim}" not found'
            if pvc["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{claim}" is being deleted'
            if (pvc.get("status") or {}).get("phase") != "Bound":
                return "pod has unbound immediate PersistentVolumeClaims"
        return ""

    def _bind(self, pod: Obj) -> None:
        def bind(obj: dict[str, Any]) -> None:
            obj["spec"]["nodeName"] = self.node_name
            _set_condition(obj, {"type": "PodScheduled", "status": "True"})

        self.update_quietly(PODS, pod, bind)

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        current = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
        if current and current[0].get("message") == message:
            return
        self.update_quietly(PODS, pod, lambda obj: _set_condition(obj, condition))


def _set_condition(pod: dict[str, Any], condition: dict[str, Any]) -> None:
    conditions = [c for c in pod["status"].get("conditions") or [] if c["type"] != condition["type"]]
    conditions.append({**condition, "lastProbeTime": None, "lastTransitionTime": now()})
    pod["status"]["conditions"] = conditions
