"""Watch streams: ``?watch=true`` answered with newline-delimited JSON events, as the real server sends.

Each line is ``{"type": "ADDED"|"MODIFIED"|"DELETED"|"ERROR", "object": {...}}``. Without a
``resourceVersion`` (or with ``"0"``) the stream starts with an ADDED event per existing object;
with one it replays every change after it, or sends a single ERROR event carrying a 410 Expired
``Status`` ("too old resource version") when those changes were compacted away, and ends. With
label/field selectors, an object that starts matching arrives as ADDED and one that stops matching
as DELETED, like the real watch cache. The stream ends after ``timeoutSeconds`` (default 1800) or
when the double closes. The generator yields ``b""`` at least every second so that the HTTP layer
can notice a client that went away.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from .errors import ApiError
from .objects import Change, Obj, ObjectStore
from .resources import Resource
from .selectors import Matcher

DEFAULT_TIMEOUT = 1800.0


def start_position(
    store: ObjectStore, resource: Resource, namespace: str | None, matcher: Matcher, since: int | None
) -> tuple[int, list[Obj]]:
    """Where the stream starts and the objects to announce first; raises 410 for a compacted RV."""
    with store.lock:
        if not since:
            return store.resource_version, [obj for obj in store.list(resource, namespace) if matcher(obj)]
        store.changes_after(since)
        return since, []


def stream(
    store: ObjectStore,
    resource: Resource,
    namespace: str | None,
    matcher: Matcher,
    since: int | None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[bytes]:
    try:
        cursor, initial = start_position(store, resource, namespace, matcher, since)
    except ApiError as exc:
        yield _line("ERROR", exc.status())
        return
    for obj in initial:
        yield _line("ADDED", obj)
    deadline = time.monotonic() + timeout
    while not store.closed:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            changes = store.wait_for_changes(cursor, min(1.0, remaining))
        except ApiError as exc:  # this watcher fell behind the history kept
            yield _line("ERROR", exc.status())
            return
        for change in changes:
            cursor = change.resource_version
            event = translate(change, resource, namespace, matcher)
            if event is not None:
                yield _line(*event)
        yield b""


def translate(
    change: Change, resource: Resource, namespace: str | None, matcher: Matcher
) -> tuple[str, Obj] | None:
    """The event a watcher with this filter sees for a change, if any."""
    if change.resource != resource or (namespace is not None and change.namespace != namespace):
        return None
    matches_now = matcher(change.new)
    if change.type != "MODIFIED":
        return (change.type, change.new) if matches_now else None
    matched_before = change.old is not None and matcher(change.old)
    if matched_before and matches_now:
        return "MODIFIED", change.new
    if matches_now:
        return "ADDED", change.new
    if matched_before:
        return "DELETED", change.new
    return None


def _line(kind: str, obj: Obj) -> bytes:
    return (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()
