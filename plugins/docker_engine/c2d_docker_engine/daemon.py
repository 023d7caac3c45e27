"""The Docker daemon: how to reach it, whether it answers, and how big it is.

Jobs outlive the daemon's hiccups, so everything here is about telling
"the daemon is gone" apart from "the call failed": health is tracked by a
monitor thread that pings the daemon and reports every change (the
fingerprint is re-sent then), and job drivers wait here, bounded, for a
daemon that went away to come back.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import docker
import requests
import structlog
import urllib3

from c2d.common.v1 import common_pb2
from c2d.plugin.kit import health
from c2d.plugin.kit.health import HealthState, HealthTracker
from c2d_docker_engine.config import MachineSize
from c2d_docker_engine.gpus import Gpu

# DeviceRequests need API 1.40 (Docker 19.03); pinning it avoids a version probe per client.
API_VERSION = "1.40"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
CALL_TIMEOUT_SECONDS = 60
POOL_SIZE = 32
PING_TIMEOUT_SECONDS = 5
MONITOR_INTERVAL_SECONDS = 2.0
GIB = 1 << 30

log = structlog.get_logger("c2d_docker_engine.daemon")
Health = common_pb2.EngineHealth

__all__ = ["Daemon", "HealthState", "describe", "is_connection_error", "is_read_timeout"]


def is_read_timeout(exc: BaseException) -> bool:
    """Whether a failed call only ran past its own read timeout (the daemon is fine)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
            return True
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        stack.extend((current.__cause__, current.__context__))
    return False


def is_connection_error(exc: BaseException) -> bool:
    """Whether a call failed because the daemon could not be reached (not a read timeout)."""
    unreachable = (
        requests.exceptions.RequestException,  # refused, reset, a response cut short
        urllib3.exceptions.HTTPError,
        ConnectionError,
        docker.errors.DockerException,
    )
    return (
        isinstance(exc, unreachable)
        and not isinstance(exc, docker.errors.APIError)
        and not is_read_timeout(exc)
    )


class Daemon(HealthTracker):
    """The connection settings of one daemon, its health, and clients to talk to it."""

    def __init__(self, docker_host: str | None) -> None:
        self.docker_host = docker_host
        self.address = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
        super().__init__(
            "docker engine",
            HealthState(Health.ENGINE_HEALTH_UNDETECTED, f"no Docker engine at {self.address} yet"),
        )
        self._client: docker.DockerClient | None = None
        self._ping_client: docker.DockerClient | None = None
        self._clients_lock = threading.Lock()
        self._seen = False

    # Clients -----------------------------------------------------------------------

    def new_client(self, timeout: int = CALL_TIMEOUT_SECONDS) -> docker.DockerClient:
        """A client of its own, for a thread that blocks in long calls (wait, follow, pull)."""
        options: dict[str, Any] = {"version": API_VERSION, "timeout": timeout, "max_pool_size": POOL_SIZE}
        if self.docker_host:
            return docker.DockerClient(base_url=self.docker_host, **options)
        return docker.from_env(**options)

    @property
    def client(self) -> docker.DockerClient:
        """The shared client for short calls."""
        with self._clients_lock:
            if self._client is None:
                self._client = self.new_client()
            return self._client

    def _pinger(self) -> docker.DockerClient:
        """A client with a short timeout: a hung daemon must not hang the health check."""
        with self._clients_lock:
            if self._ping_client is None:
                self._ping_client = self.new_client(timeout=PING_TIMEOUT_SECONDS)
            return self._ping_client

    # Health ------------------------------------------------------------------------

    def check(self) -> bool:
        """Pings the daemon now and records the answer; whether it is healthy."""
        try:
            self._pinger().ping()
        except Exception as exc:
            reason = describe(exc)
            health = Health.ENGINE_HEALTH_UNHEALTHY if self._seen else Health.ENGINE_HEALTH_UNDETECTED
            verb = "stopped answering" if self._seen else "answers"
            self.set_state(HealthState(health, f"no Docker engine {verb} at {self.address}: {reason}"))
            return False
        self._seen = True
        self.set_state(HealthState(Health.ENGINE_HEALTH_HEALTHY, f"Docker engine at {self.address}"))
        return True

    def start_monitor(self) -> None:
        """Pings the daemon every few seconds from a thread of its own, so health changes are noticed."""
        self.start_ticking(lambda _: self.check(), MONITOR_INTERVAL_SECONDS, "docker-health")

    def wait_until_up(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Waits (bounded) for the daemon to answer again; whether it did."""
        return health.wait_until_up(self.check, timeout, stop)

    # Size --------------------------------------------------------------------------

    def measure(self, state_dir: Path, gpus: tuple[Gpu, ...]) -> MachineSize:
        """CPUs and memory as the daemon reports them (this machine's without a daemon), free disk,
        and the machine's name for its pool: the daemon's ID (the host name without a daemon)."""
        cpu, ram, machine = _local_cpu(), _local_ram_gib(), socket.gethostname() or "localhost"
        try:
            info = self.client.info()
            cpu = float(info.get("NCPU") or cpu)
            ram = _floor(float(info.get("MemTotal") or ram * GIB) / GIB)
            machine = str(info.get("ID") or machine)
        except Exception as exc:
            log.info("sizing from this machine: the Docker engine does not answer", reason=describe(exc))
        return MachineSize(
            cpu=cpu,
            ram_gib=ram,
            disk_gib=_floor(shutil.disk_usage(state_dir).free / GIB),
            gpus=gpus,
            pool_id=machine,
        )


def describe(exc: BaseException) -> str:
    """A short reason for an operator: the innermost cause, not a urllib3 repr."""
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied", "timed out"):
        if marker in text:
            return marker.lower() if marker != "timed out" else "the call timed out"
    return text[:300] or type(exc).__name__


def _local_cpu() -> float:
    try:
        return float(len(os.sched_getaffinity(0)) or 1)
    except AttributeError:
        return float(os.cpu_count() or 1)


def _local_ram_gib() -> float:
    return _floor(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB)


def _floor(gib: float) -> float:
    """Rounded down to 0.01 GiB: never advertise more than there is."""
    return math.floor(gib * 100) / 100
