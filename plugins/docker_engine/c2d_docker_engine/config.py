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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from c2d.plugin.kit import environments, pullcreds
from c2d.plugin.kit.values import count as _count
from c2d.plugin.kit.values import flag as _flag
from c2d.plugin.kit.values import optional_text as _optional_text
from c2d.plugin.kit.values import positive as _positive
from c2d_docker_engine import drm
from c2d_docker_engine.errors import invalid
from c2d_docker_engine.gpus import Gpu

WHERE = "[engines.docker]"
DEFAULT_ENVIRONMENT_ID = "docker-local"
DISK_QUOTA_MODES = ("auto", "loop-ext4", "none")
GPUS_AUTO = "auto"
log = structlog.get_logger("c2d_docker_engine.config")
GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]{1,10}")

TOP_LEVEL_DEFAULTS: dict[str, Any] = {
    "uid": 1000,
    "pids_limit": 256,
    "pull_timeout_seconds": 600,
    "build_timeout_seconds": 600,
    "pod_timeout_seconds": 600,
    "pod_ram_gib": 2,
    "timeout_grace_seconds": 2,
    "log_max_mib": 64,
    "daemon_wait_seconds": 120,
    "image_retention_days": 7,
    "image_retention_check_seconds": 3600,
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
        "registries",
        "pod_network",
        "network",
        "init",
        "sysfs_gpu_vendors",
        "gpu_groups",
        "host_root",
    }
)
ENVIRONMENT_KEYS = environments.COMMON_KEYS | {"gpus", "cpu_pinning", "cpus"}
REGISTRY_AUTH_KEYS = frozenset({"username", "password", "serveraddress", "email"})


@dataclass(frozen=True)
class MachineSize:
    """What the Docker daemon (or, without one, this machine) offers; ``pool_id`` names that
    machine (the daemon's ID, else the host name): every environment draws from its one pool."""

    cpu: float
    ram_gib: float
    disk_gib: float
    gpus: tuple[Gpu, ...] = ()
    pool_id: str = ""


@dataclass(frozen=True)
class EnvironmentSettings(environments.EnvironmentSettings):
    """One environment as configured; None means "measure it"."""

    gpus: tuple[str, ...] | None = None  # None: none; ("auto",): detected
    cpu_pinning: bool = False
    cpus: tuple[int, ...] | None = None


@dataclass(frozen=True)
class EnvironmentConfig(environments.EnvironmentConfig):
    """One environment, every size known: the capacity jobs share and what one job may get."""

    gpus: tuple[Gpu, ...] = ()
    cpu_pinning: bool = False
    cpus: tuple[int, ...] = ()

    def gpu(self, device_id: str) -> Gpu | None:
        return next((g for g in self.gpus if g.id == device_id), None)

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        return tuple(g.id for g in self.gpus)


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
    registries: tuple[RegistryAuth, ...] = ()  # one per registry host (serveraddress)
    # The longest building an algorithm's image from its Dockerfile may take.
    build_timeout_seconds: int = 600
    pod_timeout_seconds: int = 600
    pod_ram_gib: float = 2.0
    pod_network: str = "bridge"
    network: str = "bridge"
    timeout_grace_seconds: int = 2
    log_max_mib: int = 64
    daemon_wait_seconds: int = 120
    # Algorithm images the engine pulled go after this many days unused (0: never); checked this often.
    image_retention_days: int = 7
    image_retention_check_seconds: int = 3600
    init: bool = True
    gpu_sysfs: drm.SysfsSettings = field(default_factory=drm.SysfsSettings)
    ignored_keys: tuple[str, ...] = field(default=())


def parse_settings(raw: Mapping[str, Any]) -> DockerSettings:
    """The section checked; INVALID_ARGUMENT naming the first bad key."""
    disk_quota = raw.get("disk_quota", "auto")
    if disk_quota not in DISK_QUOTA_MODES:
        raise invalid(f"{WHERE} disk_quota must be one of {list(DISK_QUOTA_MODES)}, got {disk_quota!r}")
    uid = _count(raw, "uid", 1000, WHERE)
    counts = {key: _count(raw, key, default, WHERE) for key, default in TOP_LEVEL_DEFAULTS.items()}
    for key in (
        "pids_limit",
        "pull_timeout_seconds",
        "build_timeout_seconds",
        "pod_timeout_seconds",
        "log_max_mib",
        "image_retention_check_seconds",
    ):
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
        registries=_registries(raw.get("registries")),
        build_timeout_seconds=counts["build_timeout_seconds"],
        pod_timeout_seconds=counts["pod_timeout_seconds"],
        pod_ram_gib=_positive(raw, "pod_ram_gib", 2.0, WHERE),
        pod_network=_optional_text(raw, "pod_network", WHERE) or "bridge",
        network=_optional_text(raw, "network", WHERE) or "bridge",
        timeout_grace_seconds=counts["timeout_grace_seconds"],
        log_max_mib=counts["log_max_mib"],
        daemon_wait_seconds=counts["daemon_wait_seconds"],
        image_retention_days=counts["image_retention_days"],
        image_retention_check_seconds=counts["image_retention_check_seconds"],
        init=_flag(raw, "init", True, WHERE),
        gpu_sysfs=_gpu_sysfs(raw),
        ignored_keys=tuple(sorted(set(raw) - TOP_LEVEL_KEYS)),
    )


def _environments(raw: object) -> tuple[EnvironmentSettings, ...] | None:
    return environments.parse_list(raw, WHERE, _environment, lambda env: env.id)


def _environment(raw: object, index: int) -> EnvironmentSettings:
    entry, where = environments.open_entry(raw, index, WHERE, ENVIRONMENT_KEYS)
    return EnvironmentSettings(
        **environments.parse_common(entry, where),
        gpus=_gpu_ids(entry.get("gpus"), where),
        cpu_pinning=_flag(entry, "cpu_pinning", False, where),
        cpus=_core_ids(entry.get("cpus"), where),
    )


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
    cores = env.cpus if env.cpus is not None else tuple(range(max(1, int(machine.cpu))))
    common = environments.resolved_common(
        env, machine.cpu, machine.ram_gib, machine.disk_gib, f"Docker containers ({env.id})"
    )
    return EnvironmentConfig(
        **common,
        gpus=_resolve_gpus(env.gpus, machine.gpus),
        cpu_pinning=env.cpu_pinning,
        cpus=cores,
    )


def _resolve_gpus(ids: tuple[str, ...] | None, detected: tuple[Gpu, ...]) -> tuple[Gpu, ...]:
    """Configured device ids (described from detection when it knows them), or all detected ones."""
    if ids is None:
        return ()
    if ids == (GPUS_AUTO,):
        return detected
    known = {key: gpu for gpu in detected for key in (gpu.id, gpu.index) if key}
    chosen = []
    for configured in ids:
        pci = drm.PCI_ADDRESS.fullmatch(configured)
        device_id = configured.lower() if pci else configured
        if device_id in known:
            chosen.append(known[device_id])
        elif pci:
            # Such a GPU is passed by its device nodes, which only detection knows.
            log.warning("configured GPU not found in sysfs, not offered", gpu=device_id)
        else:
            chosen.append(Gpu(id=device_id))
    return tuple({gpu.id: gpu for gpu in chosen}.values())  # a GPU listed twice (UUID and index) once


# Value checks --------------------------------------------------------------------------------


def _gpu_ids(raw: object, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if raw == GPUS_AUTO:
        return (GPUS_AUTO,)
    if not isinstance(raw, list) or not all(isinstance(x, str | int) and str(x).strip() for x in raw):
        raise invalid(
            f'{where}: gpus must be "auto" or a list of device ids (UUIDs, indexes or PCI addresses), got {raw!r}'
        )
    ids = tuple(str(int(x)) if isinstance(x, float) else str(x) for x in raw)
    if len(set(ids)) != len(ids):
        raise invalid(f"{where}: gpus lists a device twice")
    return ids


def _gpu_sysfs(raw: Mapping[str, Any]) -> drm.SysfsSettings:
    """Which GPUs sysfs detection looks for, the groups their containers get, where the host's files are."""
    vendors = raw.get("sysfs_gpu_vendors", list(drm.DEFAULT_VENDORS))
    if not isinstance(vendors, list) or not all(v in drm.DEFAULT_VENDORS for v in vendors):
        raise invalid(
            f"{WHERE} sysfs_gpu_vendors must be a list of {list(drm.DEFAULT_VENDORS)} ([] turns sysfs "
            f"detection off), got {vendors!r}"
        )
    groups = raw.get("gpu_groups", list(drm.DEFAULT_GROUPS))
    if not isinstance(groups, list) or not all(
        isinstance(g, str | int) and not isinstance(g, bool) and GROUP_NAME.fullmatch(str(g)) for g in groups
    ):
        raise invalid(f"{WHERE} gpu_groups must be a list of group names or gids, got {groups!r}")
    host_root = raw.get("host_root", "/")
    if not isinstance(host_root, str) or not host_root.startswith("/"):
        raise invalid(f"{WHERE} host_root must be an absolute path, got {host_root!r}")
    return drm.SysfsSettings(
        vendors=tuple(dict.fromkeys(vendors)), groups=tuple(str(g) for g in groups), host_root=host_root
    )


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


def _registries(raw: object) -> tuple[RegistryAuth, ...]:
    """``registries = [{server, username, password}, ...]``: each registry host once."""
    return tuple(
        RegistryAuth(username=entry.username, password=entry.password, serveraddress=entry.server)
        for entry in pullcreds.parse_registries(raw, WHERE)
    )
