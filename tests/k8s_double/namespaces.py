"""The namespace controller: empties a Terminating namespace, then lets it go.

Deleting a namespace sets its phase to Terminating (creating anything in it is then refused with 403);
this controller deletes every object in it with the default options (pods get their own grace
period, PVCs wait for their pods), and once nothing is left clears ``spec.finalizers`` so that the
namespace object itself is removed, which is when a watch sees it DELETED.
"""

from __future__ import annotations

from .api import Api, DeleteOptions
from .controller import Controller
from .errors import ApiError
from .objects import Change, ObjectStore
from .resources import ALL, NAMESPACES


class NamespaceController(Controller):
    watches = ALL
    resync_seconds = 1.0

    def __init__(self, store: ObjectStore, api: Api) -> None:
        super().__init__(store)
        self.api = api

    def notice(self, change: Change) -> bool:
        return change.resource == NAMESPACES or change.type == "DELETED"

    def reconcile(self) -> None:
        for namespace in self.store.list(NAMESPACES):
            if namespace["metadata"].get("deletionTimestamp"):
                self._empty(namespace)

    def _empty(self, namespace: dict) -> None:
        name = namespace["metadata"]["name"]
        remaining = 0
        for resource in (r for r in ALL if r.namespaced):
            for obj in self.store.list(resource, name):
                remaining += 1
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    self.api.delete(resource, name, obj["metadata"]["name"], DeleteOptions())
                except ApiError as exc:
                    if exc.code != 404:
                        raise
        if remaining == 0:
            self.api.finish_namespace(namespace)
