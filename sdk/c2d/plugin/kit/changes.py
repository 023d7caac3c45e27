"""A version number that rises on every change, and a way to wait for the next one.

WatchFingerprint and WatchJob streams sleep on it instead of polling: an
engine bumps it when a job writes an event, starts or ends, or its backend's
health changes.
"""

from __future__ import annotations

import threading


class Changes:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._version = 0

    @property
    def version(self) -> int:
        with self._condition:
            return self._version

    def bump(self) -> None:
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Blocks until the version differs from ``seen`` or ``timeout`` passes; the version then."""
        with self._condition:
            self._condition.wait_for(lambda: self._version != seen, timeout)
            return self._version
