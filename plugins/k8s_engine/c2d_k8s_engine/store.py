"""The jobs of one node in one state dir (the kit's store), and the root objects the cluster holds for it.

The job directories are the record (spec, events, steps); the cluster holds
the rest. A root ConfigMap labelled with this node whose job has no directory
here is an orphan (a state dir lost, a crash between creating and recording):
ListJobs lists it, so the node destroys it, and DestroyJob of its id deletes it
with everything it owns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c2d.plugin.kit import jobstore
from c2d.plugin.kit.jobdir import JobDir
from c2d_k8s_engine import kube, names
from c2d_k8s_engine.driver import remove_pods, remove_secrets


class JobStore(jobstore.JobStore[JobDir]):
    def __init__(self, root: Path, host_id: str) -> None:
        super().__init__(root, host_id, JobDir)

    def roots(self, core: Any, namespace: str, timeout: float) -> list[kube.Obj]:
        """This node's root ConfigMaps in ``namespace``."""
        selector = names.selector(names.node_labels(self.host_id))
        listed = kube.read(
            core.list_namespaced_config_map, namespace, label_selector=selector, _request_timeout=timeout
        )
        return [
            root
            for root in kube.items(listed)
            if kube.annotation(root, names.ANNOTATION_HOST) == self.host_id
            and kube.name_of(root) == names.job_base(kube.annotation(root, names.ANNOTATION_JOB))
        ]

    def orphans(self, core: Any, namespace: str, timeout: float) -> dict[str, str]:
        """Job id -> workflow id of this node's root objects whose job has no directory here."""
        found: dict[str, str] = {}
        for root in self.roots(core, namespace, timeout):
            job_id = kube.annotation(root, names.ANNOTATION_JOB)
            if job_id and self.lookup(job_id) is None:
                found[job_id] = kube.annotation(root, names.ANNOTATION_WORKFLOW)
        return found


def delete_job_objects(core: Any, namespace: str, host_id: str, job_id: str, timeout: float) -> bool:
    """Deletes a job's pods and Secrets at once and its root object (the garbage collector takes
    what it owns); whether there was a root. Objects of another node's job of the same id are left
    alone."""
    root_name = names.job_base(job_id)
    root = kube.read_or_none(core.read_namespaced_config_map, root_name, namespace, _request_timeout=timeout)
    if root is not None and kube.annotation(root, names.ANNOTATION_HOST) != host_id:
        return False
    remove_pods(core, namespace, job_id, timeout)
    remove_secrets(core, namespace, job_id, timeout)
    if root is None:
        return False
    kube.delete(
        core.delete_namespaced_config_map,
        root_name,
        namespace,
        propagation_policy="Background",
        _request_timeout=timeout,
    )
    return True
