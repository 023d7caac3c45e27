"""The kubelet of the double's node: one :class:`PodWorker` per pod bound to the node, woken by Docker.

The sync loop starts a worker for each new pod bound to the node, forwards deletions (a
``deletionTimestamp`` means a graceful stop within ``deletionGracePeriodSeconds``; a pod that
vanished from the API means kill and clean up at once) and forgets workers once their pod is gone.
A thread follows Docker's event stream, filtered on this double's instance label, and wakes the
worker whose container started, died or was OOM-killed, so status updates follow within
milliseconds without anyone polling the API.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import docker.errors

from .controller import Controller, log
from .node import LABEL_CONTAINER, LABEL_INSTANCE, LABEL_NAMESPACE, LABEL_POD, LABEL_POD_UID, Node
from .objects import Change, Obj, ObjectStore
from .pod_worker import PodWorker
from .resources import PODS


class Kubelet(Controller):
    watches = (PODS,)
    resync_seconds = 1.0

    def __init__(self, store: ObjectStore, node: Node) -> None:
        super().__init__(store)
        self.node = node
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._events: Any = None
        self._listener: threading.Thread | None = None

    def notice(self, change: Change) -> bool:
        return change.new["spec"].get("nodeName") == self.node.name

    def start(self) -> None:
        super().start()
        self._listener = threading.Thread(target=self._listen, name="k8s-double-docker-events", daemon=True)
        self._listener.start()

    def reconcile(self) -> None:
        pods = {
            p["metadata"]["uid"]: p
            for p in self.store.list(PODS)
            if p["spec"].get("nodeName") == self.node.name
        }
        with self._lock:
            if self.stopping:
                return
            for uid, pod in pods.items():
                worker = self._workers.get(uid)
                if worker is None:
                    worker = self._workers[uid] = PodWorker(self.node, pod)
                    worker.start()
                if pod["metadata"].get("deletionTimestamp"):
                    worker.terminate(int(pod["metadata"].get("deletionGracePeriodSeconds") or 0))
            for uid, worker in list(self._workers.items()):
                if uid not in pods:
                    worker.terminate(0, gone=True)
                    if worker.done:
                        del self._workers[uid]

    # Docker events --------------------------------------------------------------------------------

    def _listen(self) -> None:
        filters = {"type": "container", "label": f"{LABEL_INSTANCE}={self.node.instance_id}"}
        while not self.stopping:
            try:
                self._events = self.node.docker.events(decode=True, filters=filters)
                for event in self._events:
                    uid = ((event.get("Actor") or {}).get("Attributes") or {}).get(LABEL_POD_UID)
                    worker = self._workers.get(uid or "")
                    if worker is not None:
                        worker.poke()
            except Exception:
                if self.stopping:
                    return
                log.debug("Docker event stream broke; reconnecting", exc_info=True)
                time.sleep(0.5)

    # shutdown and inspection ----------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every pod's containers at once, remove them and their volumes, stop listening."""
        super().stop(timeout)
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.terminate(0, final=True)
        for worker in workers:
            worker.thread.join(timeout)
        if self._events is not None:
            with contextlib.suppress(Exception):
                self._events.close()
        self.sweep()

    def sweep(self) -> None:
        """Remove whatever Docker objects still carry this double's instance label."""
        label = f"{LABEL_INSTANCE}={self.node.instance_id}"
        for container in self.node.docker.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True, v=True)
        for volume in self.node.docker.volumes.list(filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                volume.remove(force=True)

    def container(self, pod: Obj, name: str) -> Any | None:
        """The Docker container running container ``name`` of ``pod``, if one was created."""
        found = self.node.docker.containers.list(
            all=True,
            filters={"label": [f"{LABEL_POD_UID}={pod['metadata']['uid']}", f"{LABEL_CONTAINER}={name}"]},
        )
        return found[0] if found else None

    def containers_for(self, namespace: str, pod: str) -> list[Any]:
        """Every Docker container this double made for the pod called ``pod`` (any uid)."""
        labels = [
            f"{LABEL_INSTANCE}={self.node.instance_id}",
            f"{LABEL_NAMESPACE}={namespace}",
            f"{LABEL_POD}={pod}",
        ]
        return self.node.docker.containers.list(all=True, filters={"label": labels})
