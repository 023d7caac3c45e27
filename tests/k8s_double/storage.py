"""PersistentVolumeClaims: each bound to a host directory, protected while in use, deleted with the claim.

A new claim gets its directory ``<work dir>/pvc-<uid>`` at once (dynamic provisioning with the
``Delete`` reclaim policy and ``Immediate`` binding), made world-writable (mode 0777) so that a pod
running as any non-root uid can write to it, as a real provisioner plus ``fsGroup`` would allow;
the claim then reports ``phase: Bound``, ``spec.volumeName: pvc-<uid>`` and its capacity. No
PersistentVolume objects or StorageClasses exist, and the requested size is not enforced (a pod can
write more than ``requests.storage``). The ``kubernetes.io/pvc-protection`` finalizer keeps a
deleted claim until no pod that has not finished uses it; the directory is removed when the claim
is gone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from .api import Api
from .controller import Controller
from .defaults import PVC_PROTECTION
from .objects import Obj, ObjectStore
from .quota import TERMINAL_PHASES
from .resources import PODS, PVCS


class StorageController(Controller):
    watches = (PVCS, PODS)
    resync_seconds = 1.0

    def __init__(self, store: ObjectStore, api: Api, root: Path) -> None:
        super().__init__(store)
        self.api = api
        self.root = root

    def directory(self, pvc: Obj) -> Path:
        """Where a claim's data lives on this machine (bind-mounted into the pods that use it)."""
        return self.root / f"pvc-{pvc['metadata']['uid']}"

    def reconcile(self) -> None:
        claims = self.store.list(PVCS)
        pods = self.store.list(PODS)
        for pvc in claims:
            metadata = pvc["metadata"]
            if (pvc.get("status") or {}).get("phase") != "Bound" and not metadata.get("deletionTimestamp"):
                self._bind(pvc)
            protected = PVC_PROTECTION in (metadata.get("finalizers") or [])
            if metadata.get("deletionTimestamp") and protected and not self._in_use(pvc, pods):
                self.api.remove_finalizer(PVCS, pvc, PVC_PROTECTION)
        self._reclaim({self.directory(pvc).name for pvc in self.store.list(PVCS)})

    def _bind(self, pvc: Obj) -> None:
        path = self.directory(pvc)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)  # any pod user may write: see the module docstring
        volume_name = path.name
        storage = pvc["spec"]["resources"]["requests"]["storage"]

        def bind(obj: dict[str, Any]) -> None:
            obj["spec"]["volumeName"] = volume_name
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations["pv.kubernetes.io/bind-completed"] = "yes"
            annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
            obj["status"] = {
                "phase": "Bound",
                "accessModes": list(obj["spec"].get("accessModes") or []),
                "capacity": {"storage": storage},
            }

        self.update_quietly(PVCS, pvc, bind)

    @staticmethod
    def _in_use(pvc: Obj, pods: list[Obj]) -> bool:
        namespace, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        return any(
            pod["metadata"]["namespace"] == namespace
            and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES
            and any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == name
                for v in pod["spec"].get("volumes") or []
            )
            for pod in pods
        )

    def _reclaim(self, live: set[str]) -> None:
        if not self.root.is_dir():
            return
        for path in self.root.glob("pvc-*"):
            if path.name not in live:
                shutil.rmtree(path, ignore_errors=True)
