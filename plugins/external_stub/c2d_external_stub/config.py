"""The engine's config section (``[engines.external_stub]``), as Configure receives it.

Keys: ``enabled`` (bool, default false: the engine refuses to run until an
operator opts in, since it gives algorithms no isolation), ``environments``
(optional list; by default one environment, ``stub-local``, sized from this
machine), ``pod_python`` (the interpreter that runs ``-m pods.configuration``
and ``-m pods.publishing``; by default the plugin's own) and
``pod_timeout_seconds`` (how long each pod may take, default 600),
``sandbox`` (how algorithms are confined: ``auto``, the default, takes bwrap
else unshare, whichever works here; ``bwrap``, ``unshare`` or ``none``) and
``unsafe_unconfined`` (default false: without a working sandbox the engine runs
only the operator's own jobs; true runs anyone's, unconfined). Every environment
runs on this one machine, so they all draw from one pool named after it
(``pool_id``, default the host name) whose totals are the machine's
(``pool_cpu``, ``pool_ram_gib``, ``pool_disk_gib``; set them to offer less of
the machine). Mistakes are reported with the key's name, so an operator can fix
the config from the message alone.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc

from c2d.plugin.kit.values import count as _count
from c2d.plugin.kit.values import optional_text as _optional_text
from c2d.plugin.kit.values import positive as _positive
from c2d_external_stub.errors import EngineError, invalid
from c2d_external_stub.machine import MachineSize

DEFAULT_ENVIRONMENT_ID = "stub-local"
DEFAULT_MAX_JOB_DURATION_SECONDS = 3600
DEFAULT_STORAGE_EXPIRY_SECONDS = 7 * 24 * 3600
DEFAULT_POD_TIMEOUT_SECONDS = 600
DISABLED_MESSAGE = (
    "external_stub is disabled: it runs algorithms as plain processes with no container isolation; "
    "set enabled = true in [engines.external_stub] to use it (development only)"
)
TOP_LEVEL_KEYS = frozenset(
    {
        "enabled",
        "environments",
        "pod_python",
        "pod_timeout_seconds",
        "sandbox",
        "unsafe_unconfined",
        "pool_id",
        "pool_cpu",
        "pool_ram_gib",
        "pool_disk_gib",
    }
)
SANDBOX_CHOICES = ("auto", "bwrap", "unshare", "none")
ENVIRONMENT_KEYS = frozenset(
    {
        "id",
        "description",
        "cpu",
        "ram_gib",
        "disk_gib",
        "min_job_duration_seconds",
        "max_job_duration_seconds",
        "max_jobs",
        "storage_expiry_seconds",
        "allow_network",
    }
)


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment: the capacity jobs share and the limits one job gets."""

    id: str
    description: str
    cpu: float
    ram_gib: float
    disk_gib: float
    min_job_duration_seconds: int = 0
    max_job_duration_seconds: int = DEFAULT_MAX_JOB_DURATION_SECONDS
    max_jobs: int = 0
    storage_expiry_seconds: int = DEFAULT_STORAGE_EXPIRY_SECONDS
    # Whether a job's algorithm may use the network (when its datasets allow it too); a confined
    # algorithm without it gets an empty network namespace. Off by default, as on Docker and
    # Kubernetes: with it the algorithm shares the machine's network, the node's ports included.
    allow_network: bool = False


@dataclass(frozen=True)
class StubConfig:
    environments: tuple[EnvironmentConfig, ...]
    # The machine all the environments share: the node grants from it whichever environment asks.
    pool_id: str = "localhost"
    pool_cpu: float = 1.0
    pool_ram_gib: float = 1.0
    pool_disk_gib: float = 1.0
    ignored_keys: tuple[str, ...] = ()
    # The pods run as ``[pod_python, "-m", "pods.configuration"]``: an interpreter with c2d-node installed.
    pod_python: str = sys.executable
    pod_timeout_seconds: int = DEFAULT_POD_TIMEOUT_SECONDS
    sandbox: str = "auto"
    unsafe_unconfined: bool = False

    def environment(self, environment_id: str) -> EnvironmentConfig | None:
        return next((e for e in self.environments if e.id == environment_id), None)


def require_enabled(settings: Mapping[str, Any]) -> None:
    """FAILED_PRECONDITION unless the operator opted in with ``enabled = true``."""
    enabled = settings.get("enabled", False)
    if not isinstance(enabled, bool):
        raise invalid(f"[engines.external_stub] enabled must be true or false, got {enabled!r}")
    if not enabled:
        raise EngineError(grpc.StatusCode.FAILED_PRECONDITION, DISABLED_MESSAGE)


def parse_config(settings: Mapping[str, Any], machine: MachineSize) -> StubConfig:
    """The whole section, checked; INVALID_ARGUMENT naming the first bad key."""
    require_enabled(settings)
    ignored = tuple(sorted(set(settings) - TOP_LEVEL_KEYS))
    where = "[engines.external_stub]"
    pod_python = settings.get("pod_python", sys.executable)
    if not isinstance(pod_python, str) or not pod_python.strip():
        raise invalid(f"{where} pod_python must be the path of a Python interpreter, got {pod_python!r}")
    pod_timeout = _count(settings, "pod_timeout_seconds", DEFAULT_POD_TIMEOUT_SECONDS, where)
    if pod_timeout <= 0:
        raise invalid(f"{where}: pod_timeout_seconds must be at least 1")
    sandbox = settings.get("sandbox", "auto")
    if sandbox not in SANDBOX_CHOICES:
        raise invalid(f"{where} sandbox must be one of {', '.join(SANDBOX_CHOICES)}, got {sandbox!r}")
    unsafe = settings.get("unsafe_unconfined", False)
    if not isinstance(unsafe, bool):
        raise invalid(f"{where} unsafe_unconfined must be true or false, got {unsafe!r}")
    return StubConfig(
        parse_environments(settings.get("environments"), machine),
        *parse_pool(settings, machine),
        ignored,
        pod_python,
        pod_timeout,
        sandbox,
        unsafe,
    )


def parse_pool(settings: Mapping[str, Any], machine: MachineSize) -> tuple[str, float, float, float]:
    """The machine's pool (id, cpu, ram_gib, disk_gib): named after the host, the machine's size
    unless the operator offers less."""
    where = "[engines.external_stub]"
    return (
        _optional_text(settings, "pool_id", where) or socket.gethostname() or "localhost",
        _positive(settings, "pool_cpu", machine.cpu, where),
        _positive(settings, "pool_ram_gib", machine.ram_gib, where),
        _positive(settings, "pool_disk_gib", machine.disk_gib, where),
    )


def parse_environments(raw: object, machine: MachineSize) -> tuple[EnvironmentConfig, ...]:
    if raw is None:
        return (default_environment(machine),)
    if not isinstance(raw, list) or not raw:
        raise invalid("[engines.external_stub] environments must be a non-empty list of tables")
    environments = tuple(parse_environment(entry, i, machine) for i, entry in enumerate(raw))
    seen: set[str] = set()
    for env in environments:
        if env.id in seen:
            raise invalid(f"[engines.external_stub] environment id {env.id!r} appears twice")
        seen.add(env.id)
    return environments


def default_environment(machine: MachineSize) -> EnvironmentConfig:
    return EnvironmentConfig(
        id=DEFAULT_ENVIRONMENT_ID,
        description="Local processes on the node itself, sandboxed, no container (development only)",
        cpu=machine.cpu,
        ram_gib=machine.ram_gib,
        disk_gib=machine.disk_gib,
    )


def parse_environment(entry: object, index: int, machine: MachineSize) -> EnvironmentConfig:
    where = f"[engines.external_stub] environments[{index}]"
    if not isinstance(entry, dict):
        raise invalid(f"{where} must be a table, got {entry!r}")
    unknown = sorted(set(entry) - ENVIRONMENT_KEYS)
    if unknown:
        raise invalid(f"{where} has unknown keys {unknown}; known keys: {sorted(ENVIRONMENT_KEYS)}")
    env_id = entry.get("id")
    if not isinstance(env_id, str) or not env_id.strip():
        raise invalid(f"{where}.id must be a non-empty string")
    where = f"[engines.external_stub] environment {env_id!r}"
    description = entry.get("description", f"Local processes ({env_id}), sandboxed, no container")
    if not isinstance(description, str):
        raise invalid(f"{where}: description must be a string")
    env = EnvironmentConfig(
        id=env_id,
        description=description,
        cpu=_positive(entry, "cpu", machine.cpu, where),
        ram_gib=_positive(entry, "ram_gib", machine.ram_gib, where),
        disk_gib=_positive(entry, "disk_gib", machine.disk_gib, where),
        min_job_duration_seconds=_count(entry, "min_job_duration_seconds", 0, where),
        max_job_duration_seconds=_count(
            entry, "max_job_duration_seconds", DEFAULT_MAX_JOB_DURATION_SECONDS, where
        ),
        max_jobs=_count(entry, "max_jobs", 0, where),
        storage_expiry_seconds=_count(entry, "storage_expiry_seconds", DEFAULT_STORAGE_EXPIRY_SECONDS, where),
    )
    allow_network = entry.get("allow_network", False)
    if not isinstance(allow_network, bool):
        raise invalid(f"{where}: allow_network must be true or false, got {allow_network!r}")
    env = replace(env, allow_network=allow_network)
    if env.max_job_duration_seconds <= 0:
        raise invalid(f"{where}: max_job_duration_seconds must be at least 1")
    if env.min_job_duration_seconds > env.max_job_duration_seconds:
        raise invalid(f"{where}: min_job_duration_seconds is above max_job_duration_seconds")
    return env
