"""When to restart a failed plugin, and when to stop trying."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    """Exponential backoff with jitter, and crash-loop detection over a sliding window.

    Jitter keeps several crashed plugins (or several nodes sharing a backend)
    from restarting in lock step; the crash-loop limit keeps a plugin that can
    never come up from being restarted forever.
    """

    initial_seconds: float
    max_seconds: float
    crash_loop_restarts: int
    crash_loop_window_seconds: float
    rng: random.Random = field(default_factory=random.Random)
    _crashes: deque[float] = field(default_factory=deque)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based): half fixed, half random."""
        ceiling = min(self.max_seconds, self.initial_seconds * (2**attempt))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def record_crash(self, now: float) -> bool:
        """Records a crash at ``now``; True when the plugin is crash-looping."""
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.crash_loop_window_seconds:
            self._crashes.popleft()
        return len(self._crashes) > self.crash_loop_restarts

    def crashes_in_window(self) -> int:
        return len(self._crashes)
