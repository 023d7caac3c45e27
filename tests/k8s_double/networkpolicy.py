"""NetworkPolicy, approximated at the one decision Docker can make: bridge network or none.

A pod is *egress-isolated* when some NetworkPolicy of its namespace selects it (``podSelector``,
empty = every pod) with ``Egress`` among its ``policyTypes``. If none of the policies selecting it
has any egress rule (``egress`` absent or ``[]``), all its egress is denied and its containers run
with ``network_mode="none"`` (no interface but loopback). If any egress rule exists, whatever its
peers, CIDRs or ports, the pod gets the default bridge network with full egress: finer rules are
not enforced. Ingress rules are ignored (pods are not reachable from outside Docker's bridge anyway).
Policies are read when a pod's containers are created; later changes do not affect running pods.
"""

from __future__ import annotations

from .objects import Obj, ObjectStore
from .resources import NETWORK_POLICIES
from .selectors import LabelSelector


def egress_denied(store: ObjectStore, pod: Obj) -> bool:
    """Whether every egress of ``pod`` is denied by the policies of its namespace."""
    labels = pod["metadata"].get("labels") or {}
    selecting = [
        policy
        for policy in store.list(NETWORK_POLICIES, pod["metadata"]["namespace"])
        if "Egress" in (policy["spec"].get("policyTypes") or [])
        and LabelSelector.from_object(policy["spec"].get("podSelector") or {}).matches(labels)
    ]
    return bool(selecting) and not any(policy["spec"].get("egress") for policy in selecting)


def network_mode(store: ObjectStore, pod: Obj) -> str:
    return "none" if egress_denied(store, pod) else "bridge"
