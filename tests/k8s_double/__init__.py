"""A test double of the Kubernetes API server, whose single node runs pods as Docker containers.

No real API server can run on the development and CI machines (see ENVIRONMENT.md), so the
Kubernetes engine is tested against this double. It speaks the real REST wire protocol (JSON over
HTTP/1.1, chunked watch streams, ``Status`` error bodies) to the official ``kubernetes`` client,
and a kubelet of its own runs the pods it receives in Docker, so an engine's whole flow executes
for real: pods start, write to volumes, exit, get OOM-killed or time out, and their status and logs
come back through the API.

What it implements
    Core v1 namespaces, pods (with ``/status`` and ``/log``), persistentvolumeclaims, configmaps,
    secrets, resourcequotas, serviceaccounts, events (stored, never generated) and nodes (one node);
    networking.k8s.io/v1 networkpolicies; discovery (``/api``, ``/apis``, ``/version``). Verbs
    create, get, list (also across namespaces, with ``limit``/``continue``), watch (from a
    resourceVersion, 410 Expired when compacted, selectors, ``timeoutSeconds``), replace (with
    resourceVersion preconditions), patch (merge, strategic as merge with name-keyed lists, JSON
    patch), delete (grace periods, Foreground/Background/Orphan propagation, preconditions) and
    deletecollection; label and field selectors; validation with 422 Invalid; ResourceQuota
    admission (403 "exceeded quota") and status; owner-reference garbage collection; namespace
    termination; a scheduler checking the node's allocatable resources; a kubelet mapping container
    specs, volumes, security contexts, limits and NetworkPolicy egress denial onto Docker; optional
    bearer token authentication. Module docstrings give the details of each part.

Its limits (what a real cluster does that it does not)
    - One node, no HA: no affinity, taints/tolerations, priorities or preemption.
    - No Deployments, Jobs, Services, PersistentVolumes, StorageClasses, RBAC, admission webhooks,
      CRDs, server-side apply (415), protobuf, or ``kubectl exec/attach/port-forward``; the pod's
      service-account token is not mounted and no Events are generated.
    - Containers are never restarted: every pod follows ``restartPolicy: Never`` (an Always or
      OnFailure pod also ends Succeeded/Failed); no probes, lifecycle hooks or termination messages.
    - Each container has its own network namespace (no shared localhost within a pod); pods get
      Docker's default bridge (no cluster DNS, no pod-to-service routing). NetworkPolicy is reduced
      to "egress denied -> network none"; any egress rule allows all egress; ingress is ignored.
    - Extended resources (``nvidia.com/gpu``) are counted by the scheduler and quota but no device is
      given to the container. PVC sizes, ephemeral-storage and disk ``emptyDir.sizeLimit`` are not
      enforced; a PVC is a host directory made mode 0777 so that any non-root pod user can write it.
    - Images are pulled only from a loopback registry (with the pod's image pull secrets, see
      image_pull.py); any other missing one leaves the container waiting with ErrImagePull, then
      ImagePullBackOff, until it appears locally (whatever the imagePullPolicy).
    - ``status.podIP`` is the first container's bridge address, known only once it started (none
      with network ``none``; a ``fieldRef: status.podIP`` env var is empty).
    - ConfigMap and Secret volumes are written when the pod starts and never refreshed.
    - Pod spec immutability, validation and defaulting cover the common fields only; strategic
      merge patch has no ``$patch`` directives; list pagination is not a consistent snapshot.
    - Writes are in memory only: the double does not survive its own process (it does survive any
      client, such as an engine plugin being killed and restarted).
"""

from .double import ApiServerDouble
from .node import LABEL_CONTAINER, LABEL_INSTANCE, LABEL_NAMESPACE, LABEL_POD, LABEL_POD_UID

__all__ = [
    "LABEL_CONTAINER",
    "LABEL_INSTANCE",
    "LABEL_NAMESPACE",
    "LABEL_POD",
    "LABEL_POD_UID",
    "ApiServerDouble",
]
