"""Retrying transient failures with exponential backoff, within a time budget.

A node restart while a pod provisions or publishes shows up as a burst of
UNAVAILABLE (or DEADLINE_EXCEEDED) errors; waiting and trying again rides it
out. The budget bounds how long a pod waits for a node that never comes back.
For resumable transfers the budget is about being *stuck*: every attempt that
moved the transfer forward starts the budget afresh, so a large file over a
flaky link still gets through.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

T = TypeVar("T")

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
DEFAULT_BUDGET_SECONDS = 120.0


class TransientError(Exception):
    """A failure worth another try that is not a gRPC status (a dropped HTTP connection, say)."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT_CODES


@dataclass(frozen=True)
class Backoff:
    """Waits of ``first``, ``first * factor``, … capped at ``longest``, for at most ``budget`` seconds."""

    budget: float = DEFAULT_BUDGET_SECONDS
    first: float = 0.25
    factor: float = 2.0
    longest: float = 10.0

    def run(
        self,
        attempt: Callable[[], T],
        *,
        progress: Callable[[], int] | None = None,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        """``attempt()`` until it succeeds, fails for good, or the budget is spent.

        ``progress`` (a number that rises as a transfer advances) resets the
        budget and the delay whenever it rose since the previous attempt.
        """
        deadline = time.monotonic() + self.budget
        delay = self.first
        mark = progress() if progress else 0
        while True:
            try:
                return attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if progress is not None and progress() > mark:
                    mark, delay = progress(), self.first
                    deadline = time.monotonic() + self.budget
                wait = delay * random.uniform(0.8, 1.2)
                if time.monotonic() + wait > deadline:
                    raise
                if on_retry is not None:
                    on_retry(exc, wait)
                time.sleep(wait)
                delay = min(delay * self.factor, self.longest)
