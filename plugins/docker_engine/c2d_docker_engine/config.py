"""The engine's config section (``[engines.docker]``), as Configure receives it.

Every key is optional: without any, the engine talks to the daemon the
environment names (``DOCKER_HOST``, else the local socket) and offers one
environment, ``docker-local``, sized from that daemon. Sizes left out of an
environment are measured the same way, which is why parsing yields
:class:`EnvironmentSettings` with gaps, and :func:`resolve` fills them once the
machine is known (and again when the daemon first answers). Mistakes are
reported with the key's name, so an operator can fix the config from the
message alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, struct_pb2

from c2d_docker_engine.errors import invalid
from c2d_docker_engine.gpus import Gpu

WHERE = "[engines.docker]"
DEFAULT_ENVIRONMENT_ID = "docker-local"
DEFAULT_MAX_JOB_DURATION_SECONDS = 3600
DEFAULT_STORAGE_EXPIRY_SECONDS = 7 * 24 * 3600
DISK_QUOTA_MODES = ("auto", "loop-ext4", "none")
GPUS_AUTO = "auto"

TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    "uid": 1000,
    "pids_limit": 256,
    "pull_timeout_seconds": 600,
    "pod_timeout_seconds": 600,
    "pod_ram_gib": 2,
    "timeout_grace_seconds": 2,
    "log_max_mib": 64,
    "daemon_wait_seconds": 120,
}
TOP_LEVEL_KEYS = frozenset(
    {
        *TOP_LEVEL_DEFAULTS,
        "docker_host",
        "pod_image",
        "environments",
        "disk_quota",
        "gid",
        "registry_auth",
        "pod_network",
        "network",
        "init",
    }
)
ENVIRONMENT_KEYS = frozenset(
    {
        "id",
        "description",
        "cpu",
        "ram_gib",
        "disk_gib",
        "gpus",
        "min_cpu",
        "min_ram_gib",
        "min_disk_gib",
        "min_job_duration_seconds",
        "max_job_duration_seconds",
        "storage_expiry_seconds",
        "allow_network",
        "cpu_pinning",
        "cpus",
        "max_jobs",
    }
)
REGISTRY_AUTH_KEYS = frozenset({"username", "password", "serveraddress", "email"})


@dataclass(frozen=True)
class MachineSize:
    """What the Docker daemon (or, without one, this machine) offers."""

    cpu: float
    ram_gib: float
    disk_gib: float
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True)
class EnvironmentSettings:
    """One environment as configured; None means "measure it"."""

    id: str
    description: str | None = None
    cpu: float | None = None
    ram_gib: float | None = None
    disk_gib: float | None = None
    gpus: tuple[str, ...] | None = None  # None: none; ("auto",): detected
    min_cpu: float | None = None
    min_ram_gib: float | None = None
    min_disk_gib: float | None = None
    min_job_duration_seconds: int = 0
    max_job_duration_seconds: int = DEFAULT_MAX_JOB_DURATION_SECONDS
    storage_expiry_seconds: int = DEFAULT_STORAGE_EXPIRY_SECONDS
    allow_network: bool = False
    cpu_pinning: bool = False
    cpus: tuple[int, ...] | None = None
    max_jobs: int = 0


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment, every size known: the capacity jobs share and what one job may get."""

    id: str
    description: str
    cpu: float
    ram_gib: float
    disk_gib: float
    min_cpu: float
    min_ram_gib: float
    min_disk_gib: float
    gpus: tuple[Gpu, ...] = ()
    min_job_duration_seconds: int = 0
    max_job_duration_seconds: int = DEFAULT_MAX_JOB_DURATION_SECONDS
    storage_expiry_seconds: int = DEFAULT_STORAGE_EXPIRY_SECONDS
    allow_network: bool = False
    cpu_pinning: bool = False
    cpus: tuple[int, ...] = ()
    max_jobs: int = 0

    def gpu(self, device_id: str) -> Gpu | None:
        return next((g for g in self.gpus if g.id == device_id), None)


@dataclass(frozen=True)
class RegistryAuth:
    username: str
    password: str
    serveraddress: str = ""
    email: str = ""

    def as_docker(self) -> dict[str, str]:
        """The ``auth_config`` the docker package takes."""
        return {k: v for k, v in vars(self).items() if v}

    def __repr__(self) -> str:
        """Never the password: a repr ends up in logs."""
        return f"RegistryAuth(username={self.username!r}, serveraddress={self.serveraddress!r})"


@dataclass(frozen=True)
class DockerSettings:
    """The whole section, checked; environments still to be resolved against the machine."""

    docker_host: str | None = None
    pod_image: str | None = None
    environments: tuple[EnvironmentSettings, ...] | None = None
    disk_quota: str = "auto"
    uid: int = 1000
    gid: int = 1000
    pids_limit: int = 256
    pull_timeout_seconds: int = 600
    registry_auth: RegistryAuth | None = None
    pod_timeout_seconds: int = 600
    pod_ram_gib: float = 2.0
    pod_network: str = "bridge"
    network: str = "bridge"
    timeout_grace_seconds: int = 2
    log_max_mib: int = 64
    daemon_wait_seconds: int = 120
    init: bool = True
    ignored_keys: tuple[str, ...] = field(default=())


def settings_from_struct(config: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(config)


def parse_settings(raw: Mapping[str, Any]) -> DockerSettings:
    """The section checked; INVALID_ARGUMENT naming the first bad key."""
    disk_quota = raw.get("disk_quota", "auto")
    if disk_quota not in DISK_QUOTA_MODES:
        raise invalid(f"{WHERE} disk_quota must be one of {list(DISK_QUOTA_MODES)}, got {disk_quota!r}")
    uid = _count(raw, "uid", 1000, WHERE)
    counts = {key: _count(raw, key, default, WHERE) for key, default in TOP_LEVEL_DEFAULTS.items()}
    for key in ("pids_limit", "pull_timeout_seconds", "pod_timeout_seconds", "log_max_mib"):
        if counts[key] < 1:
            raise invalid(f"{WHERE} {key} must be at least 1")
    return DockerSettings(
        docker_host=_optional_text(raw, "docker_host", WHERE),
        pod_image=_optional_text(raw, "pod_image", WHERE),
        environments=_environments(raw.get("environments")),
        disk_quota=disk_quota,
        uid=uid,
        gid=_count(raw, "gid", uid, WHERE),
        pids_limit=counts["pids_limit"],
        pull_timeout_seconds=counts["pull_timeout_seconds"],
        registry_auth=_registry_auth(raw.get("registry_auth")),
        pod_timeout_seconds=counts["pod_timeout_seconds"],
        pod_ram_gib=_positive(raw, "pod_ram_gib", 2.0, WHERE),
        pod_network=_optional_text(raw, "pod_network", WHERE) or "bridge",
        network=_optional_text(raw, "network", WHERE) or "bridge",
        timeout_grace_seconds=counts["timeout_grace_seconds"],
        log_max_mib=counts["log_max_mib"],
        daemon_wait_seconds=counts["daemon_wait_seconds"],
        init=_flag(raw, "init", True, WHERE),
        ignored_keys=tuple(sorted(set(raw) - TOP_LEVEL_KEYS)),
    )


def _environments(raw: object) -> tuple[EnvironmentSettings, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise invalid(f"{WHERE} environments must be a non-empty list of tables")
    environments = tuple(_environment(entry, i) for i, entry in enumerate(raw))
    seen: set[str] = set()
    for env in environments:
        if env.id in seen:
            raise invalid(f"{WHERE} environment id {env.id!r} appears twice")
        seen.add(env.id)
    return environments


def _environment(entry: object, index: int) -> EnvironmentSettings:
    where = f"{WHERE} environments[{index}]"
    if not isinstance(entry, dict):
        raise invalid(f"{where} must be a table, got {entry!r}")
    unknown = sorted(set(entry) - ENVIRONMENT_KEYS)
    if unknown:
        raise invalid(f"{where} has unknown keys {unknown}; known keys: {sorted(ENVIRONMENT_KEYS)}")
    env_id = entry.get("id")
    if not isinstance(env_id, str) or not env_id.strip():
        raise invalid(f"{where}.id must be a non-empty string")
    where = f"{WHERE} environment {env_id!r}"
    env = EnvironmentSettings(
        id=env_id,
        description=_optional_text(entry, "description", where),
        cpu=_optional_positive(entry, "cpu", where),
        ram_gib=_optional_positive(entry, "ram_gib", where),
        disk_gib=_optional_positive(entry, "disk_gib", where),
        gpus=_gpu_ids(entry.get("gpus"), where),
        min_cpu=_optional_positive(entry, "min_cpu", where),
        min_ram_gib=_optional_positive(entry, "min_ram_gib", where),
        min_disk_gib=_optional_positive(entry, "min_disk_gib", where),
        min_job_duration_seconds=_count(entry, "min_job_duration_seconds", 0, where),
        max_job_duration_seconds=_count(
            entry, "max_job_duration_seconds", DEFAULT_MAX_JOB_DURATION_SECONDS, where
        ),
        storage_expiry_seconds=_count(entry, "storage_expiry_seconds", DEFAULT_STORAGE_EXPIRY_SECONDS, where),
        allow_network=_flag(entry, "allow_network", False, where),
        cpu_pinning=_flag(entry, "cpu_pinning", False, where),
        cpus=_core_ids(entry.get("cpus"), where),
        max_jobs=_count(entry, "max_jobs", 0, where),
    )
    if env.max_job_duration_seconds <= 0:
        raise invalid(f"{where}: max_job_duration_seconds must be at least 1")
    if env.min_job_duration_seconds > env.max_job_duration_seconds:
        raise invalid(f"{where}: min_job_duration_seconds is above max_job_duration_seconds")
    return env


def resolve(settings: DockerSettings, machine: MachineSize) -> tuple[EnvironmentConfig, ...]:
    """The environments with every size filled in from ``machine``."""
    if settings.environments is None:
        default = EnvironmentSettings(
            id=DEFAULT_ENVIRONMENT_ID,
            description="Docker containers on this node's Docker engine",
            gpus=(GPUS_AUTO,),
        )
        return (resolve_environment(default, machine),)
    return tuple(resolve_environment(env, machine) for env in settings.environments)


def resolve_environment(env: EnvironmentSettings, machine: MachineSize) -> EnvironmentConfig:
    cpu = env.cpu if env.cpu is not None else machine.cpu
    ram = env.ram_gib if env.ram_gib is not None else machine.ram_gib
    disk = env.disk_gib if env.disk_gib is not None else machine.disk_gib
    cores = env.cpus if env.cpus is not None else tuple(range(max(1, int(machine.cpu))))
    return EnvironmentConfig(
        id=env.id,
        description=env.description or f"Docker containers ({env.id})",
        cpu=cpu,
        ram_gib=ram,
        disk_gib=disk,
        min_cpu=min(env.min_cpu if env.min_cpu is not None else 1.0, cpu),
        min_ram_gib=min(env.min_ram_gib if env.min_ram_gib is not None else 1.0, ram),
        min_disk_gib=min(env.min_disk_gib if env.min_disk_gib is not None else 1.0, disk),
        gpus=_resolve_gpus(env.gpus, machine.gpus),
        min_job_duration_seconds=env.min_job_duration_seconds,
        max_job_duration_seconds=env.max_job_duration_seconds,
        storage_expiry_seconds=env.storage_expiry_seconds,
        allow_network=env.allow_network,
        cpu_pinning=env.cpu_pinning,
        cpus=cores,
        max_jobs=env.max_jobs,
    )


def _resolve_gpus(ids: tuple[str, ...] | None, detected: tuple[Gpu, ...]) -> tuple[Gpu, ...]:
    """Configured device ids (described from detection when it knows them), or all detected ones."""
    if ids is None:
        return ()
    if ids == (GPUS_AUTO,):
        return detected
    known = {key: gpu for gpu in detected for key in (gpu.id, gpu.index)}
    return tuple(known.get(device_id) or Gpu(id=device_id) for device_id in ids)


# Value checks --------------------------------------------------------------------------------


def _gpu_ids(raw: object, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if raw == GPUS_AUTO:
        return (GPUS_AUTO,)
    if not isinstance(raw, list) or not all(isinstance(x, str | int) and str(x).strip() for x in raw):
        raise invalid(f'{where}: gpus must be "auto" or a list of device ids (UUIDs or indexes), got {raw!r}')
    ids = tuple(str(int(x)) if isinstance(x, float) else str(x) for x in raw)
    if len(set(ids)) != len(ids):
        raise invalid(f"{where}: gpus lists a device twice")
    return ids


def _core_ids(raw: object, where: str) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, list)
        or not raw
        or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 and x == int(x) for x in raw
        )
    ):
        raise invalid(f"{where}: cpus must be a non-empty list of core numbers, got {raw!r}")
    return tuple(int(x) for x in raw)


def _registry_auth(raw: object) -> RegistryAuth | None:
    if raw is None:
        return None
    where = f"{WHERE} registry_auth"
    if not isinstance(raw, dict):
        raise invalid(f"{where} must be a table with username, password and serveraddress")
    unknown = sorted(set(raw) - REGISTRY_AUTH_KEYS)
    if unknown:
        raise invalid(f"{where} has unknown keys {unknown}")
    values = {key: raw.get(key, "") for key in REGISTRY_AUTH_KEYS}
    if not all(isinstance(v, str) for v in values.values()) or not values["username"]:
        raise invalid(f"{where} needs a username and a password (strings)")
    return RegistryAuth(**values)


def _optional_text(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _flag(entry: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise invalid(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _optional_positive(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if entry.get(key) is None else _positive(entry, key, 0.0, where)


def _positive(entry: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = entry.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise invalid(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def _count(entry: Mapping[str, Any], key: str, default: int, where: str) -> int:
    """A whole number >= 0 (Struct numbers arrive as floats, so 3600.0 is fine)."""
    value = entry.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
    ):
        raise invalid(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    if value > 0xFFFFFFFF:
        raise invalid(f"{where}: {key} is too large ({value!r})")
    return int(value)
