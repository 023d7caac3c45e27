"""A job's pods as the API last said, kept current by a watch: the job driver's only way to wait.

Nothing polls. The driver lists the job's pods once (by its label selector)
and then blocks in a watch from the list's ``resourceVersion``; each event
updates the cache and wakes the driver, which re-checks what it waits for. A
watch ends after ``timeout_seconds`` (so the driver can look at its own
deadlines) and resumes from the last ``resourceVersion`` seen; a version the
server no longer has (410 Gone) means listing again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from c2d_k8s_engine import kube

T = TypeVar("T")
WATCH_SECONDS = 30.0
# The client's read timeout exceeds the server's watch timeout by this much: a silent server
# (or one that ignores timeoutSeconds) still lets the driver look at its deadlines.
READ_SLACK_SECONDS = 5.0


class JobPods:
    """The pods of one job (one label selector) in one namespace."""

    def __init__(self, core: Any, namespace: str, selector: str, timeout: float) -> None:
        self.core = core
        self.namespace = namespace
        self.selector = selector
        self.timeout = timeout
        self.pods: dict[str, kube.Obj] = {}
        self.version: str | None = None

    def refresh(self) -> None:
        """Lists the job's pods anew: the cache and the version to watch from."""
        listed = kube.read(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            _request_timeout=self.timeout,
        )
        self.pods = {kube.name_of(pod): pod for pod in kube.items(listed)}
        self.version = str((listed.get("metadata") or {}).get("resourceVersion") or "") or None

    def get(self, name: str) -> kube.Obj | None:
        if self.version is None:
            self.refresh()
        return self.pods.get(name)

    def put(self, pod: kube.Obj) -> None:
        """A pod this driver just created, known before its first event arrives."""
        self.pods[kube.name_of(pod)] = pod

    def wait(self, ready: Callable[[], T | None], timeout: float) -> T | None:
        """``ready()``'s first answer other than None, asked again after every change; None past ``timeout``."""
        deadline = time.monotonic() + timeout
        if self.version is None:
            self.refresh()
        while True:
            found = ready()
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            for _ in self._changes(min(remaining, WATCH_SECONDS)):
                found = ready()
                if found is not None:
                    return found

    def _changes(self, seconds: float) -> Iterator[str]:
        """Applies the watch's events to the cache, yielding after each; ends when the watch does."""
        watcher = watch.Watch()
        stream = watcher.stream(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            resource_version=self.version,
            timeout_seconds=max(1, int(seconds)),
            allow_watch_bookmarks=True,
            _request_timeout=seconds + READ_SLACK_SECONDS,
        )
        try:
            for event in stream:
                if self._apply(event):
                    yield str(event.get("type"))
        except ApiException as exc:
            if exc.status != kube.GONE:
                raise
            self.refresh()  # the version expired: what happened meanwhile is in the new list
            yield "RELISTED"
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            # Nothing came for longer than the watch was asked to last, or the stream was cut:
            # the caller watches again (and a server really gone fails that call).
            return
        finally:
            watcher.stop()
            stream.close()

    def _apply(self, event: dict[str, Any]) -> bool:
        """Updates the cache from one event; whether a pod changed (bookmarks only move the version)."""
        obj = event.get("raw_object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.version = str(version)
        kind = event.get("type")
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return False
        name = kube.name_of(obj)
        if kind == "DELETED":
            self.pods.pop(name, None)
        else:
            self.pods[name] = obj
        return True
