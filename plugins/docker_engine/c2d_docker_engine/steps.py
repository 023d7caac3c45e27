"""One container of a job, run to its end: found by name or created, started, watched, stopped.

Watching is event-driven: the job's thread blocks in Docker's ``wait`` until
the container exits, with the time left before its limit as the call's
timeout, so nothing polls. Past the limit the container is stopped (SIGTERM,
grace, SIGKILL); a stop request from StopJob stops the container from the
RPC's thread, which ends the ``wait`` here.

A daemon that goes away while the container runs is waited for (bounded):
if it comes back with the container still running (``live-restore``) the
watch goes on, if the container ended with it the step reports
``daemon_lost`` so the job ends with a clear status instead of hanging.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
import structlog
from docker.models.containers import Container

from c2d_docker_engine.containers import LABEL_HOST
from c2d_docker_engine.daemon import Daemon, describe, is_connection_error, is_read_timeout
from c2d_docker_engine.outcome import DAEMON_GONE, DAEMON_LOST, STOPPED, TIMED_OUT

# Exit codes of a container ended by signals, as Docker reports them (SIGTERM, SIGKILL) or a runtime error.
SIGNAL_EXITS = (137, 143, 255)
STOP_SLACK_SECONDS = 10
DAEMON_SETTLE_SECONDS = 0.3
DEFAULT_LOG = structlog.get_logger("c2d_docker_engine.steps")


class CreationFailed(Exception):
    """The container could not be created or started (bad image, bad device request...)."""


class ContainerVanished(Exception):
    """The step's container is gone although the step had started: someone removed it."""


@dataclass(frozen=True)
class StepEnd:
    exit_code: int
    oom_killed: bool = False
    reason: str | None = None  # STOPPED, TIMED_OUT, DAEMON_LOST, DAEMON_GONE


@dataclass
class ContainerStep:
    """Runs the container ``name`` of a job; ``stopping`` says whether StopJob asked the job to stop."""

    daemon: Daemon
    client: docker.DockerClient
    name: str
    host_id: str
    stopping: Callable[[], bool]
    stop_grace: Callable[[], float]
    timeout_grace: float
    daemon_wait_seconds: float
    log: Any = DEFAULT_LOG

    def find(self) -> Container | None:
        """The step's container if it exists (a retry or a restarted plugin finds it here)."""
        try:
            container = self.client.containers.get(self.name)
        except docker.errors.NotFound:
            return None
        if container.labels.get(LABEL_HOST) != self.host_id:
            raise CreationFailed(f"a container named {self.name} exists but belongs to another node")
        return container

    def create(self, kwargs: dict[str, Any]) -> Container:
        """Creates the container, or takes the one a concurrent or earlier attempt made."""
        try:
            return self.client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # the name is taken: by our own earlier attempt
                found = self.find()
                if found is not None:
                    return found
            raise CreationFailed(f"the container could not be created: {describe(exc)}") from None

    def start(self, container: Container) -> None:
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise CreationFailed(
                f"the container could not be started: {short_runtime_error(describe(exc))}"
            ) from None

    def watch(self, container: Container, deadline: float) -> StepEnd:
        """Blocks until the container ends; stops it past ``deadline`` (time.time()) or on a stop request."""
        reason: str | None = None
        if self.stopping():
            reason = STOPPED
            self.stop(container, self.stop_grace())
        while True:
            wait_for = STOP_SLACK_SECONDS + self.stop_grace() if reason else deadline - time.time()
            try:
                result = container.wait(timeout=max(1, math.ceil(wait_for)))
            except docker.errors.NotFound:
                raise ContainerVanished(f"the container {self.name} was removed while it ran") from None
            except Exception as exc:
                if is_read_timeout(exc):
                    if reason is None and time.time() >= deadline:
                        reason = TIMED_OUT
                        self.log.info("time limit reached: stopping", container=self.name)
                        self.stop(container, self.timeout_grace)
                    elif reason is not None:
                        self.stop(container, 0)  # it outlived its grace: SIGKILL
                    continue
                if not is_connection_error(exc):
                    raise
                lost = self._after_daemon_loss(container, exc)
                if lost is not None:
                    return lost
                continue
            if self.stopping() and reason is None:
                reason = STOPPED
            return self._ended(container, int(result.get("StatusCode", -1)), reason)

    def stop(self, container: Container, grace: float) -> None:
        """SIGTERM, ``grace`` seconds, SIGKILL (Docker's stop); a container already ended is fine."""
        try:
            container.stop(timeout=max(0, math.ceil(grace)))
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            self.log.warning("stopping the container failed", container=self.name, reason=describe(exc))

    def _ended(self, container: Container, exit_code: int, reason: str | None) -> StepEnd:
        state = self._state(container)
        oom = bool(state.get("OOMKilled"))
        if reason is None and exit_code in SIGNAL_EXITS and not oom and self._daemon_going_away():
            return self._daemon_back_or_lost(container)
        return StepEnd(exit_code=exit_code, oom_killed=oom, reason=reason)

    def _daemon_going_away(self) -> bool:
        """A container killed by a signal nobody here sent: was it the daemon shutting down?"""
        time.sleep(DAEMON_SETTLE_SECONDS)
        return not self.daemon.check()

    def _after_daemon_loss(self, container: Container, exc: BaseException) -> StepEnd | None:
        """The daemon dropped the watch: None to watch again (still running), else how the step ended."""
        self.log.warning("lost the Docker engine while watching", container=self.name, reason=describe(exc))
        if not self.daemon.wait_until_up(self.daemon_wait_seconds):
            return StepEnd(exit_code=-1, reason=DAEMON_GONE)
        state = self._state(container)
        if state.get("Running"):
            return None
        exit_code = int(state.get("ExitCode", -1))
        if exit_code == 0:
            return StepEnd(exit_code=0)
        return StepEnd(exit_code=exit_code, oom_killed=bool(state.get("OOMKilled")), reason=DAEMON_LOST)

    def _daemon_back_or_lost(self, container: Container) -> StepEnd:
        if not self.daemon.wait_until_up(self.daemon_wait_seconds):
            return StepEnd(exit_code=-1, reason=DAEMON_GONE)
        state = self._state(container)
        return StepEnd(exit_code=int(state.get("ExitCode", -1)), reason=DAEMON_LOST)

    def _state(self, container: Container) -> dict[str, Any]:
        try:
            container.reload()
        except docker.errors.NotFound:
            raise ContainerVanished(f"the container {self.name} was removed while it ran") from None
        return dict(container.attrs.get("State") or {})


def short_runtime_error(text: str) -> str:
    """The useful end of an OCI runtime error (``...: exec: "/bin/sh": no such file...``)."""
    marker = "exec: "
    if marker in text:
        return text[text.rindex(marker) :].split(": unknown")[0]
    return text
