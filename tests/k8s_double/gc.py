"""Garbage collection by owner references, as kube-controller-manager's garbage collector does it.

- An object whose ``metadata.ownerReferences`` all name uids that no longer exist (in its namespace,
  or cluster-scoped) is deleted, in the background, soon after its owners went; references to gone
  owners are dropped from an object that still has a live owner. This is recursive by nature:
  deleting a dependent makes its own dependents orphans in turn.
- An owner deleted with ``propagationPolicy: Foreground`` carries the ``foregroundDeletion``
  finalizer: its dependents are deleted (foreground too) and the owner goes once they are all gone.
- An owner deleted with ``propagationPolicy: Orphan`` carries the ``orphan`` finalizer: the
  references to it are removed from its dependents, which stay, and then the owner goes.

``blockOwnerDeletion`` is not distinguished: in foreground deletion every dependent blocks.
"""

from __future__ import annotations

from typing import Any

from .api import Api, DeleteOptions
from .controller import Controller
from .errors import ApiError
from .objects import Change, Obj, ObjectStore
from .resources import ALL, Resource

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


class GarbageCollector(Controller):
    watches = ALL
    resync_seconds = 1.0

    def __init__(self, store: ObjectStore, api: Api) -> None:
        super().__init__(store)
        self.api = api

    def notice(self, change: Change) -> bool:
        metadata = change.new["metadata"]
        return change.type == "DELETED" or bool(
            metadata.get("ownerReferences") or metadata.get("deletionTimestamp")
        )

    def reconcile(self) -> None:
        objects = [(resource, obj) for resource in ALL for obj in self.store.list(resource)]
        owners = {obj["metadata"]["uid"]: obj["metadata"].get("namespace", "") for _, obj in objects}
        for resource, obj in objects:
            metadata = obj["metadata"]
            finalizers = metadata.get("finalizers") or []
            if metadata.get("deletionTimestamp") and FOREGROUND in finalizers:
                self._delete_dependents(resource, obj, objects)
            if metadata.get("deletionTimestamp") and ORPHAN in finalizers:
                self._orphan_dependents(resource, obj, objects)
            if metadata.get("ownerReferences") and not metadata.get("deletionTimestamp"):
                self._check_owners(resource, obj, owners)

    @staticmethod
    def _dependents(owner: Obj, objects: list[tuple[Resource, Obj]]) -> list[tuple[Resource, Obj]]:
        uid, namespace = owner["metadata"]["uid"], owner["metadata"].get("namespace", "")
        return [
            (resource, obj)
            for resource, obj in objects
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
            and (not namespace or obj["metadata"].get("namespace") == namespace)
        ]

    def _delete_dependents(self, resource: Resource, owner: Obj, objects: list[tuple[Resource, Obj]]) -> None:
        dependents = self._dependents(owner, objects)
        if not dependents:
            self.api.remove_finalizer(resource, owner, FOREGROUND)
            return
        for dep_resource, dependent in dependents:
            if not dependent["metadata"].get("deletionTimestamp"):
                self._delete(dep_resource, dependent, "Foreground")

    def _orphan_dependents(self, resource: Resource, owner: Obj, objects: list[tuple[Resource, Obj]]) -> None:
        uid = owner["metadata"]["uid"]
        for dep_resource, dependent in self._dependents(owner, objects):
            self.update_quietly(dep_resource, dependent, lambda obj: _drop_references(obj, {uid}))
        self.api.remove_finalizer(resource, owner, ORPHAN)

    def _check_owners(self, resource: Resource, obj: Obj, owners: dict[str, str]) -> None:
        namespace = obj["metadata"].get("namespace", "")
        references = obj["metadata"]["ownerReferences"]
        dangling = {ref.get("uid") for ref in references if owners.get(ref.get("uid")) not in ("", namespace)}
        if not dangling:
            return
        if len(dangling) == len({ref.get("uid") for ref in references}):
            self._delete(resource, obj, "Background")
        else:
            self.update_quietly(resource, obj, lambda current: _drop_references(current, dangling))

    def _delete(self, resource: Resource, obj: Obj, policy: str) -> None:
        metadata = obj["metadata"]
        options = DeleteOptions(propagation_policy=policy, preconditions={"uid": metadata["uid"]})
        try:
            self.api.delete(resource, metadata.get("namespace", ""), metadata["name"], options)
        except ApiError as exc:
            if exc.code not in (404, 409):  # gone, or replaced by a namesake meanwhile
                raise


def _drop_references(obj: dict[str, Any], uids: set[str]) -> None:
    kept = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid") not in uids]
    if kept:
        obj["metadata"]["ownerReferences"] = kept
    else:
        obj["metadata"].pop("ownerReferences", None)
