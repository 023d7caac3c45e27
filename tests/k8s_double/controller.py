"""The loop every background controller of the double runs: reconcile when woken, and every few seconds.

Controllers (scheduler, kubelet, garbage collector, namespace, storage and quota controllers) work
like their real counterparts: they observe stored objects and write back, asynchronously to the
request that caused the change. The store calls :meth:`Controller.notice` under its lock for each
change of a watched resource; that only takes note and wakes the thread, which then reconciles
outside the lock. A periodic resync makes them converge even if a wake-up raced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from .errors import ApiError
from .objects import Change, ObjectStore
from .resources import Resource

log = logging.getLogger("k8s_double")


class Controller:
    """Subclasses set ``watches`` and implement :meth:`reconcile`."""

    watches: ClassVar[tuple[Resource, ...]] = ()
    resync_seconds: ClassVar[float] = 1.0

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        store.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.resource in self.watches and self.notice(change):
            self._wake.set()

    def notice(self, change: Change) -> bool:
        """Called under the store lock for each change of a watched resource; True wakes the loop."""
        return True

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"k8s-double-{type(self).__name__}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.resync_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.reconcile()
            except Exception:  # a controller must survive anything and retry at the next resync
                log.exception("%s: reconcile failed", type(self).__name__)

    def reconcile(self) -> None:
        raise NotImplementedError

    def update_quietly(
        self, resource: Resource, obj: dict[str, Any], change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Mutate the stored ``obj``, unless it vanished (or was replaced by a namesake) meanwhile."""
        uid = obj["metadata"].get("uid")

        def guarded(current: dict[str, Any]) -> None:
            if uid and current["metadata"].get("uid") != uid:
                raise _Vanished
            change(current)

        try:
            self.store.mutate(
                resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], guarded
            )
        except _Vanished:
            pass
        except ApiError as exc:
            if exc.code != 404:
                raise


class _Vanished(Exception):
    """The object a controller meant to update is not the one stored under its name any more."""
