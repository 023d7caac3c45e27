"""An engine's health as its backend (a daemon, a cluster, a service) lets it be, and a monitor to keep it current.

Jobs outlive their backend's hiccups, so engines tell "the backend is gone"
apart from "a call failed": a monitor thread re-checks the backend every few
seconds and every change of health is passed to listeners (the engine sends
its fingerprint again then), and job drivers wait here, bounded, for a backend
that went away to come back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from c2d.common.v1 import common_pb2

Health = common_pb2.EngineHealth
log = structlog.get_logger("c2d.plugin.kit.health")


@dataclass(frozen=True)
class HealthState:
    health: common_pb2.EngineHealth
    description: str


class HealthTracker:
    """The current :class:`HealthState` of one backend, its listeners and its monitor thread."""

    def __init__(self, what: str, initial: HealthState) -> None:
        self._what = what  # "docker engine", "kubernetes": for the log line of each change
        self._lock = threading.Lock()
        self._state = initial
        self._listeners: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    @property
    def state(self) -> HealthState:
        with self._lock:
            return self._state

    @property
    def healthy(self) -> bool:
        return self.state.health == Health.ENGINE_HEALTH_HEALTHY

    def problem(self) -> str | None:
        """Why no job can run now, or None."""
        state = self.state
        return None if state.health == Health.ENGINE_HEALTH_HEALTHY else state.description

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def set_state(self, state: HealthState, *, on_description: bool = False) -> None:
        """Records ``state``; listeners hear of a new health (or, with ``on_description``, any change)."""
        with self._lock:
            previous = self._state
            self._state = state
        changed = state != previous if on_description else state.health != previous.health
        if changed:
            log.info(f"{self._what} health", health=Health.Name(state.health), detail=state.description)
            for listener in self._listeners:
                listener()

    def start_ticking(self, tick: Callable[[int], object], interval: float, name: str) -> None:
        """Calls ``tick(n)`` every ``interval`` seconds from a thread of its own; a failing tick is logged."""
        with self._lock:
            if self._monitor is not None:
                return
            self._monitor = threading.Thread(
                target=self._watch, args=(tick, interval), name=name, daemon=True
            )
        self._monitor.start()

    def stop_monitor(self) -> None:
        self._stop.set()

    def _watch(self, tick: Callable[[int], object], interval: float) -> None:
        count = 0
        while not self._stop.wait(interval):
            count += 1
            try:
                tick(count)
            except Exception:
                log.exception(f"{self._what} monitor failed")


def wait_until_up(check: Callable[[], bool], timeout: float, stop: threading.Event | None = None) -> bool:
    """Calls ``check`` with growing pauses until it answers True (bounded by ``timeout``); whether it did."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        if check():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)
