""":class:`ApiServerDouble`: the pieces assembled into one object a test starts, inspects and closes."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from .api import Api
from .controller import Controller
from .gc import GarbageCollector
from .kubelet import Kubelet
from .namespaces import NamespaceController
from .node import Node, bridge_gateway, default_allocatable
from .objects import Obj, ObjectStore
from .quota import QuotaController
from .resources import NAMESPACES, NODES, PODS, PVCS, by_name
from .routes import Router
from .scheduler import Scheduler
from .server import ApiHttpServer
from .storage import StorageController

_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiServerDouble:
    """A Kubernetes API server on ``http://127.0.0.1:<port>`` whose one node runs pods in Docker.

    ``node_allocatable`` is the node's capacity and allocatable (``cpu``, ``memory``,
    ``ephemeral-storage``, ``pods``, extended resources such as ``nvidia.com/gpu``), this machine's
    by default; with ``token`` every call needs ``Authorization: Bearer <token>``; ``watch_history``
    is how many changes a watch can resume from before getting 410. It runs until :meth:`close`,
    whatever its clients do (an engine can be killed and restarted against the same double).
    """

    def __init__(
        self,
        docker_client: Any,
        *,
        node_allocatable: Mapping[str, str | int] | None = None,
        node_name: str = "c2d-double-node",
        node_labels: Mapping[str, str] | None = None,
        token: str | None = None,
        work_dir: Path | None = None,
        watch_history: int = 10_000,
    ) -> None:
        self.instance_id = uuid.uuid4().hex[:12]
        self.docker = docker_client
        self.token = token
        self._own_work_dir = work_dir is None
        self.work_dir = (
            Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="k8s-double-"))
        )
        self.store = ObjectStore(watch_history)
        self.api = Api(self.store)
        allocatable = {k: str(v) for k, v in (node_allocatable or default_allocatable()).items()}
        allocatable.setdefault("pods", "110")
        self.storage = StorageController(self.store, self.api, self.work_dir / "claims")
        self.node = Node(
            node_name,
            self.instance_id,
            docker_client,
            self.api,
            self.store,
            self.storage,
            self.work_dir,
            bridge_gateway(docker_client),
            allocatable,
            dict(node_labels or {}),
        )
        self.kubelet = Kubelet(self.store, self.node)
        self._controllers: list[Controller] = [
            Scheduler(self.store, node_name),
            GarbageCollector(self.store, self.api),
            NamespaceController(self.store, self.api),
            self.storage,
            QuotaController(self.store),
            self.kubelet,
        ]
        self._server: ApiHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        """Seed the system namespaces and the node, start the controllers and serve; the base URL."""
        for name in _SYSTEM_NAMESPACES:
            self.api.create(NAMESPACES, "", {"metadata": {"name": name}})
        self.api.create(NODES, "", self.node.api_object())
        for controller in self._controllers:
            controller.start()
        self._server = ApiHttpServer(Router(self.api, self.kubelet, self._address), self.token)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="k8s-double-http",
            daemon=True,
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the API server double is not started")
        return self._server.url

    def _address(self) -> str:
        return self.url.removeprefix("http://")

    def close(self) -> None:
        """Stop serving, kill and remove every container and volume it created, delete its files."""
        if self._closed:
            return
        self._closed = True
        self.store.close()
        if self._server is not None:
            self._server.close()
        for controller in self._controllers:
            controller.stop()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> ApiServerDouble:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def write_kubeconfig(
        self, path: str | Path, context: str = "c2d-double", namespace: str | None = None
    ) -> Path:
        """A kubeconfig for ``kubernetes.config.load_kube_config(config_file=path, context=context)``."""
        context_entry: dict[str, str] = {"cluster": context, "user": context}
        if namespace:
            context_entry["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": self.token} if self.token else {}}],
            "contexts": [{"name": context, "context": context_entry}],
            "current-context": context,
        }
        target = Path(path)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # inspection, for tests ----------------------------------------------------------------------

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """Stored objects of a kind (``"pods"``, ``"Pod"``, ``"pvc"``...), all namespaces by default."""
        return self.store.list(by_name(kind), namespace)

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.store.find(by_name(kind), namespace, name)

    def containers_for(self, namespace: str, pod: str) -> list[Any]:
        """The ``docker`` container objects of a pod (labelled ``c2d.k8s-double.*``)."""
        return self.kubelet.containers_for(namespace, pod)

    def all_containers(self) -> list[Any]:
        return self.docker.containers.list(all=True, filters={"label": f"c2d.k8s-double={self.instance_id}"})

    def pvc_path(self, namespace: str, name: str) -> Path:
        """The host directory holding a bound claim's data."""
        claim = self.store.get(PVCS, namespace, name)
        return self.storage.directory(claim)

    def compact(self) -> int:
        """Drop the watch history (like etcd compaction): resuming from an older RV then gives 410."""
        return self.store.compact()

    def wait_for(
        self,
        kind: str,
        namespace: str,
        name: str,
        predicate: Callable[[Obj | None], bool],
        timeout: float = 60.0,
    ) -> Obj | None:
        """Wait, woken by each change, until ``predicate(object or None)`` holds; TimeoutError after."""
        resource, deadline = by_name(kind), time.monotonic() + timeout
        while True:
            version = self.store.resource_version
            current = self.store.find(resource, namespace, name)
            if predicate(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{kind} {namespace}/{name}: condition not met in {timeout} s; last state: {current}"
                )
            self.store.wait_for_changes(version, min(remaining, 1.0))

    def wait_for_pod_phase(
        self,
        namespace: str,
        name: str,
        phases: tuple[str, ...] = ("Succeeded", "Failed"),
        timeout: float = 60.0,
    ) -> Obj:
        pod = self.wait_for(
            PODS.plural,
            namespace,
            name,
            lambda p: p is not None and p["status"].get("phase") in phases,
            timeout,
        )
        assert pod is not None
        return pod

    def wait_gone(self, kind: str, namespace: str, name: str, timeout: float = 60.0) -> None:
        self.wait_for(kind, namespace, name, lambda obj: obj is None, timeout)
