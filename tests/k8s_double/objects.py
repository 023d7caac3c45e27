"""Object storage with resourceVersions and a change log, the double's etcd and watch cache in one.

Every write takes the next value of one global counter as its ``metadata.resourceVersion`` and
appends exactly one :class:`Change` to the log, so change ``n`` sits at a known index and a watch
"from resourceVersion n" is a slice. The log keeps the last ``history`` changes; a watch from before
them is refused with 410 Expired like a real server after etcd compaction (:meth:`compact` forces
that in tests). Stored dicts are never mutated in place: each write stores a fresh copy, so the log
can hold references and readers always get copies.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import errors
from .resources import Resource

Obj = dict[str, Any]
_FIRST_RESOURCE_VERSION = 1000


def now() -> str:
    """RFC 3339 in UTC at second precision: the wire format of ``metav1.Time``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: Obj) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


@dataclass(frozen=True)
class Change:
    """One write: ``new`` is the object after it (for DELETED, its last state at the new RV)."""

    resource_version: int
    type: str  # ADDED, MODIFIED or DELETED
    resource: Resource
    old: Obj | None
    new: Obj

    @property
    def namespace(self) -> str:
        return self.new["metadata"].get("namespace", "")


Listener = Callable[[Change], None]


class ObjectStore:
    """Thread-safe storage of API objects keyed by (resource, namespace, name)."""

    def __init__(self, history: int = 10_000) -> None:
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._rv = _FIRST_RESOURCE_VERSION
        self._log: list[Change] = []
        self._compacted = _FIRST_RESOURCE_VERSION  # every change up to here has been dropped
        self._history = history
        self._listeners: list[Listener] = []
        self._closed = False

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(change)`` after every write, under the store lock: it must only take note."""
        with self.lock:
            self._listeners.append(listener)

    # reads ------------------------------------------------------------------------------------

    def find(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self._objects.get((resource.key, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        obj = self.find(resource, namespace, name)
        if obj is None:
            raise errors.not_found(resource.plural, name, resource.group)
        return obj

    def list(self, resource: Resource, namespace: str | None = None) -> list[Obj]:
        """Copies sorted by namespace then name (the real API's order); ``None`` means all namespaces."""
        with self.lock:
            found = [
                obj
                for (key, ns, _), obj in self._objects.items()
                if key == resource.key and (namespace is None or ns == namespace)
            ]
            found.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return copy.deepcopy(found)

    # writes -----------------------------------------------------------------------------------

    def create(self, resource: Resource, obj: Obj) -> Obj:
        """Store a new object, giving it a uid, creationTimestamp and resourceVersion; 409 if taken."""
        metadata = meta(obj)
        with self.lock:
            key = (resource.key, metadata.get("namespace", ""), metadata["name"])
            if key in self._objects:
                raise errors.already_exists(resource.plural, metadata["name"], resource.group)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now()
            return self._write(resource, key, None, obj, "ADDED")

    def update(self, resource: Resource, obj: Obj) -> Obj:
        """Replace an object with a new state; a no-op write keeps the resourceVersion (as the API does)."""
        metadata = meta(obj)
        with self.lock:
            key = (resource.key, metadata.get("namespace", ""), metadata["name"])
            old = self._objects.get(key)
            if old is None:
                raise errors.not_found(resource.plural, metadata["name"], resource.group)
            metadata["resourceVersion"] = old["metadata"]["resourceVersion"]
            if obj == old:
                return copy.deepcopy(old)
            return self._write(resource, key, old, obj, "MODIFIED")

    def mutate(self, resource: Resource, namespace: str, name: str, change: Callable[[Obj], None]) -> Obj:
        """Read, apply ``change`` to a copy and write it back, atomically (controllers' updates)."""
        with self.lock:
            obj = self.get(resource, namespace, name)
            change(obj)
            return self.update(resource, obj)

    def remove(self, resource: Resource, namespace: str, name: str) -> Obj:
        """Delete for good; watchers get DELETED with the last state at a new resourceVersion."""
        with self.lock:
            key = (resource.key, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise errors.not_found(resource.plural, name, resource.group)
            del self._objects[key]
            return self._write(resource, key, old, copy.deepcopy(old), "DELETED")

    def _write(
        self, resource: Resource, key: tuple[str, str, str], old: Obj | None, new: Obj, kind: str
    ) -> Obj:
        self._rv += 1
        new = copy.deepcopy(new)
        new["metadata"]["resourceVersion"] = str(self._rv)
        if kind != "DELETED":
            self._objects[key] = new
        change = Change(self._rv, kind, resource, old, new)
        self._log.append(change)
        if len(self._log) > self._history:
            self._drop(len(self._log) - self._history)
        for listener in self._listeners:
            listener(change)
        self._changed.notify_all()
        return copy.deepcopy(new)

    # the change log ---------------------------------------------------------------------------

    def compact(self) -> int:
        """Forget every change so far (etcd compaction): older resourceVersions now get 410."""
        with self.lock:
            self._drop(len(self._log))
            return self._compacted

    def _drop(self, count: int) -> None:
        if count > 0:
            self._compacted = self._log[count - 1].resource_version
            del self._log[:count]

    def changes_after(self, resource_version: int) -> list[Change]:
        """Every change with a greater resourceVersion; 410 Expired once those were compacted away."""
        with self.lock:
            if resource_version < self._compacted:
                raise errors.gone(f"too old resource version: {resource_version} ({self._compacted})")
            return self._log[max(0, resource_version - self._compacted) :]

    def wait_for_changes(self, resource_version: int, timeout: float) -> list[Change]:
        """Block until a change after ``resource_version`` exists (or timeout / close); return them."""
        with self._changed:
            if self._rv <= resource_version and not self._closed:
                self._changed.wait(timeout)
            return self.changes_after(resource_version)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every waiting watcher so that it ends its stream."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
