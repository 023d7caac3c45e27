"""The keys every engine's environments share, parsed and resolved the same way.

An environment is configured as a table (``[[engines.NAME.environments]]``)
with an ``id``, its capacity (``cpu``, ``ram_gib``, ``disk_gib``; left out:
measured from the engine's backend), what one job may get at the least, its
job durations, whether algorithms may have network, and how many jobs may run
at once. Engines add their own keys (GPUs, pinning...) next to these and keep
their own dataclasses; the helpers here return plain keyword dicts for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from c2d.plugin.kit import values
from c2d.plugin.kit.errors import invalid

DEFAULT_MAX_JOB_DURATION_SECONDS = 3600
DEFAULT_STORAGE_EXPIRY_SECONDS = 7 * 24 * 3600
# The least one job may ask for, unless the environment says otherwise (or is smaller).
DEFAULT_MIN_CPU = 1.0
DEFAULT_MIN_RAM_GIB = 1.0
DEFAULT_MIN_DISK_GIB = 1.0
COMMON_KEYS = frozenset(
    {
        "id",
        "description",
        "cpu",
        "ram_gib",
        "disk_gib",
        "min_cpu",
        "min_ram_gib",
        "min_disk_gib",
        "min_job_duration_seconds",
        "max_job_duration_seconds",
        "storage_expiry_seconds",
        "allow_network",
        "max_jobs",
    }
)

T = TypeVar("T")


@dataclass(frozen=True)
class EnvironmentSettings:
    """The shared keys of one environment as configured; a size of None means "measure it".

    Engines subclass it (a frozen dataclass) with their own keys, each with a default.
    """

    id: str
    description: str | None = None
    cpu: float | None = None
    ram_gib: float | None = None
    disk_gib: float | None = None
    min_cpu: float | None = None
    min_ram_gib: float | None = None
    min_disk_gib: float | None = None
    min_job_duration_seconds: int = 0
    max_job_duration_seconds: int = DEFAULT_MAX_JOB_DURATION_SECONDS
    storage_expiry_seconds: int = DEFAULT_STORAGE_EXPIRY_SECONDS
    allow_network: bool = False
    max_jobs: int = 0


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment with every size known: the capacity jobs share and what one job may get.

    Engines subclass it (a frozen dataclass) with their own fields, each with a default.
    """

    id: str
    description: str
    cpu: float
    ram_gib: float
    disk_gib: float
    min_cpu: float
    min_ram_gib: float
    min_disk_gib: float
    min_job_duration_seconds: int = 0
    max_job_duration_seconds: int = DEFAULT_MAX_JOB_DURATION_SECONDS
    storage_expiry_seconds: int = DEFAULT_STORAGE_EXPIRY_SECONDS
    allow_network: bool = False
    max_jobs: int = 0

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """The GPU devices one job may be granted, by id (none unless the engine has GPUs)."""
        return ()


def parse_list(
    raw: object, where: str, parse_one: Callable[[object, int], T], id_of: Callable[[T], str]
) -> tuple[T, ...] | None:
    """The ``environments`` list: None when absent; each entry parsed; ids unique."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise invalid(f"{where} environments must be a non-empty list of tables")
    environments = tuple(parse_one(entry, i) for i, entry in enumerate(raw))
    seen: set[str] = set()
    for env in environments:
        if id_of(env) in seen:
            raise invalid(f"{where} environment id {id_of(env)!r} appears twice")
        seen.add(id_of(env))
    return environments


def open_entry(entry: object, index: int, where: str, known: frozenset[str]) -> tuple[Mapping[str, Any], str]:
    """Checks an entry is a table with known keys and an id; the entry and where to say it is."""
    at = f"{where} environments[{index}]"
    if not isinstance(entry, dict):
        raise invalid(f"{at} must be a table, got {entry!r}")
    unknown = sorted(set(entry) - known)
    if unknown:
        raise invalid(f"{at} has unknown keys {unknown}; known keys: {sorted(known)}")
    env_id = entry.get("id")
    if not isinstance(env_id, str) or not env_id.strip():
        raise invalid(f"{at}.id must be a non-empty string")
    return entry, f"{where} environment {env_id!r}"


def parse_common(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The shared keys as keyword arguments (sizes None: measure them); durations checked."""
    parsed: dict[str, Any] = {
        "id": entry["id"],
        "description": values.optional_text(entry, "description", where),
        "cpu": values.optional_positive(entry, "cpu", where),
        "ram_gib": values.optional_positive(entry, "ram_gib", where),
        "disk_gib": values.optional_positive(entry, "disk_gib", where),
        "min_cpu": values.optional_positive(entry, "min_cpu", where),
        "min_ram_gib": values.optional_positive(entry, "min_ram_gib", where),
        "min_disk_gib": values.optional_positive(entry, "min_disk_gib", where),
        "min_job_duration_seconds": values.count(entry, "min_job_duration_seconds", 0, where),
        "max_job_duration_seconds": values.count(
            entry, "max_job_duration_seconds", DEFAULT_MAX_JOB_DURATION_SECONDS, where
        ),
        "storage_expiry_seconds": values.count(
            entry, "storage_expiry_seconds", DEFAULT_STORAGE_EXPIRY_SECONDS, where
        ),
        "allow_network": values.flag(entry, "allow_network", False, where),
        "max_jobs": values.count(entry, "max_jobs", 0, where),
    }
    if parsed["max_job_duration_seconds"] <= 0:
        raise invalid(f"{where}: max_job_duration_seconds must be at least 1")
    if parsed["min_job_duration_seconds"] > parsed["max_job_duration_seconds"]:
        raise invalid(f"{where}: min_job_duration_seconds is above max_job_duration_seconds")
    return parsed


def resolved_common(
    env: EnvironmentSettings, cpu: float, ram_gib: float, disk_gib: float, description: str
) -> dict[str, Any]:
    """The shared fields with every size known: configured ones win over the measured ``cpu``, ``ram_gib``, ``disk_gib``."""
    cpu = env.cpu if env.cpu is not None else cpu
    ram = env.ram_gib if env.ram_gib is not None else ram_gib
    disk = env.disk_gib if env.disk_gib is not None else disk_gib
    return {
        "id": env.id,
        "description": env.description or description,
        "cpu": cpu,
        "ram_gib": ram,
        "disk_gib": disk,
        "min_cpu": min(env.min_cpu if env.min_cpu is not None else DEFAULT_MIN_CPU, cpu),
        "min_ram_gib": min(env.min_ram_gib if env.min_ram_gib is not None else DEFAULT_MIN_RAM_GIB, ram),
        "min_disk_gib": min(env.min_disk_gib if env.min_disk_gib is not None else DEFAULT_MIN_DISK_GIB, disk),
        "min_job_duration_seconds": env.min_job_duration_seconds,
        "max_job_duration_seconds": env.max_job_duration_seconds,
        "storage_expiry_seconds": env.storage_expiry_seconds,
        "allow_network": env.allow_network,
        "max_jobs": env.max_jobs,
    }
