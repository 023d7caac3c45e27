"""The engine's config section (``[engines.bacalhau]``), as Configure receives it.

Every key is optional. The orchestrator is at ``url``, called with ``token``
as a bearer token when set; without ``url`` the engine looks at
``http://127.0.0.1:1234`` and, when nothing answers there, reports itself
undetected (the node then runs without it).
Each environment is a **pool**: the compute nodes whose labels match its
``node_labels`` (every job of the environment carries them as constraints).
Without environments there is one, ``bacalhau``, of every compute node.
Sizes left out of an environment are measured from its nodes (their
``MaxCapacity``), which is why parsing yields :class:`EnvironmentSettings`
with gaps that :func:`resolve` fills once the nodes are known.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2d.plugin.kit import environments, values
from c2d.plugin.kit.errors import invalid

WHERE = "[engines.bacalhau]"
DEFAULT_URL = "http://127.0.0.1:1234"
DEFAULT_ENVIRONMENT_ID = "bacalhau"
NETWORKS = ("Full", "Host", "Bridge")
URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
# Bacalhau's label keys and values: letters, digits and -_. (keys may hold a / prefix).
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

COUNTS: dict[str, int] = {
    "pod_timeout_seconds": 600,
    "queue_timeout_seconds": 600,
    "api_timeout_seconds": 30,
    "api_wait_seconds": 120,
}
TOP_LEVEL_KEYS = frozenset(
    {
        *COUNTS,
        "url",
        "token",
        "work_root",
        "node_work_root",
        "pod_image",
        "pod_service_address",
        "pod_network",
        "pod_cpu",
        "pod_ram_gib",
        "pod_disk_gib",
        "poll_seconds",
        "node_labels",
        "environments",
    }
)
ENVIRONMENT_KEYS = environments.COMMON_KEYS | {"gpus", "gpu_vendor", "gpu_model", "node_labels"}


@dataclass(frozen=True)
class PoolSize:
    """What a pool's compute nodes offer together (0: not known)."""

    cpu: float = 0.0
    ram_gib: float = 0.0
    disk_gib: float = 0.0
    gpus: int = 0
    nodes: int = 0
    measured: bool = False  # the nodes were listed: no node means no capacity, not "unknown"


@dataclass(frozen=True)
class EnvironmentSettings(environments.EnvironmentSettings):
    """One environment as configured; None means "measure it"."""

    gpus: int | None = None
    gpu_vendor: str = "nvidia"
    gpu_model: str = ""
    node_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvironmentConfig(environments.EnvironmentConfig):
    """One environment, every size known: the pool's capacity and what one job may get."""

    gpus: int = 0
    gpu_vendor: str = "nvidia"
    gpu_model: str = ""
    node_labels: dict[str, str] = field(default_factory=dict)

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        """Bacalhau hands out a count of GPUs, not devices: the node grants numbered slots."""
        return tuple(f"bacalhau-gpu-{i}" for i in range(self.gpus))


@dataclass(frozen=True)
class BacalhauSettings:
    """The whole section, checked; environments still to be resolved against the nodes."""

    url: str | None = None  # None: the engine looks for an orchestrator at DEFAULT_URL
    token: str | None = None
    work_root: str | None = None
    node_work_root: str | None = None
    pod_image: str | None = None
    pod_service_address: str | None = None
    pod_network: str = "Full"
    pod_cpu: float = 1.0
    pod_ram_gib: float = 2.0
    pod_disk_gib: float = 1.0
    pod_timeout_seconds: int = 600
    queue_timeout_seconds: int = 600
    poll_seconds: float = 1.0
    api_timeout_seconds: int = 30
    api_wait_seconds: int = 120
    node_labels: dict[str, str] = field(default_factory=dict)
    environments: tuple[EnvironmentSettings, ...] | None = None
    ignored_keys: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """The orchestrator's URL: the configured one, else the default."""
        return self.url or DEFAULT_URL

    def connection(self) -> tuple[Any, ...]:
        """What identifies the orchestrator and the credentials: a Configure changing it needs a new client."""
        return (self.address, self.token, self.api_timeout_seconds)

    def work_roots(self, state_dir: Path) -> tuple[Path, str]:
        """The job folders' root as this plugin sees it, and as the compute nodes mount it."""
        local = Path(self.work_root).expanduser() if self.work_root else state_dir / "work"
        return local, self.node_work_root or str(local)


def parse_settings(raw: Mapping[str, Any]) -> BacalhauSettings:
    """The section checked; INVALID_ARGUMENT naming the first bad key."""
    counts = {key: values.count(raw, key, default, WHERE) for key, default in COUNTS.items()}
    for key in ("pod_timeout_seconds", "queue_timeout_seconds", "api_timeout_seconds"):
        if counts[key] < 1:
            raise invalid(f"{WHERE} {key} must be at least 1")
    poll = values.positive(raw, "poll_seconds", 1.0, WHERE)
    if not 0.05 <= poll <= 60:
        raise invalid(f"{WHERE} poll_seconds must be between 0.05 and 60, got {poll!r}")
    return BacalhauSettings(
        url=_url(raw),
        token=values.optional_text(raw, "token", WHERE),
        work_root=_absolute(raw, "work_root"),
        node_work_root=_absolute(raw, "node_work_root"),
        pod_image=values.optional_text(raw, "pod_image", WHERE),
        pod_service_address=values.optional_text(raw, "pod_service_address", WHERE),
        pod_network=_choice(raw, "pod_network", NETWORKS, "Full"),
        pod_cpu=values.positive(raw, "pod_cpu", 1.0, WHERE),
        pod_ram_gib=values.positive(raw, "pod_ram_gib", 2.0, WHERE),
        pod_disk_gib=values.positive(raw, "pod_disk_gib", 1.0, WHERE),
        pod_timeout_seconds=counts["pod_timeout_seconds"],
        queue_timeout_seconds=counts["queue_timeout_seconds"],
        poll_seconds=poll,
        api_timeout_seconds=counts["api_timeout_seconds"],
        api_wait_seconds=counts["api_wait_seconds"],
        node_labels=_labels(raw, WHERE),
        environments=environments.parse_list(
            raw.get("environments"), WHERE, _environment, lambda env: env.id
        ),
        ignored_keys=tuple(sorted(set(raw) - TOP_LEVEL_KEYS)),
    )


def _environment(raw: object, index: int) -> EnvironmentSettings:
    entry, where = environments.open_entry(raw, index, WHERE, ENVIRONMENT_KEYS)
    gpus = entry.get("gpus")
    return EnvironmentSettings(
        **environments.parse_common(entry, where),
        gpus=None if gpus is None else values.count(entry, "gpus", 0, where),
        gpu_vendor=values.optional_text(entry, "gpu_vendor", where) or "nvidia",
        gpu_model=values.optional_text(entry, "gpu_model", where) or "",
        node_labels=_labels(entry, where),
    )


def pool_labels(settings: BacalhauSettings, env: EnvironmentSettings | EnvironmentConfig) -> dict[str, str]:
    """The node labels a pool's nodes have: the section's, then the environment's own."""
    return {**settings.node_labels, **env.node_labels}


def resolve(settings: BacalhauSettings, sizes: Mapping[str, PoolSize]) -> tuple[EnvironmentConfig, ...]:
    """The environments with every size filled in from their pool's ``sizes`` (by environment id);
    configured sizes are capped by what was measured (a size of 0 means "not known")."""
    configured = settings.environments or (
        EnvironmentSettings(id=DEFAULT_ENVIRONMENT_ID, description="Bacalhau compute nodes"),
    )
    return tuple(resolve_environment(env, sizes.get(env.id, PoolSize()), settings) for env in configured)


def resolve_environment(
    env: EnvironmentSettings, size: PoolSize, settings: BacalhauSettings
) -> EnvironmentConfig:
    common = environments.resolved_common(
        env, size.cpu, size.ram_gib, size.disk_gib, f"Bacalhau compute nodes ({env.id})"
    )
    empty = size.measured and size.nodes == 0
    for key, measured in (("cpu", size.cpu), ("ram_gib", size.ram_gib), ("disk_gib", size.disk_gib)):
        if (measured > 0 or empty) and common[key] > measured:
            common[key] = measured
    for key, total in (("min_cpu", "cpu"), ("min_ram_gib", "ram_gib"), ("min_disk_gib", "disk_gib")):
        common[key] = min(common[key], common[total])
    gpus = size.gpus if env.gpus is None and settings.environments is None else (env.gpus or 0)
    if size.nodes or empty:
        gpus = min(gpus, size.gpus)
    return EnvironmentConfig(
        **common,
        gpus=gpus,
        gpu_vendor=env.gpu_vendor,
        gpu_model=env.gpu_model,
        node_labels=pool_labels(settings, env),
    )


# Value checks --------------------------------------------------------------------------------


def _url(raw: Mapping[str, Any]) -> str | None:
    url = values.optional_text(raw, "url", WHERE)
    if url is None:
        return None
    if not URL.match(url):
        raise invalid(f"{WHERE} url {url[:100]!r} is not an http:// or https:// address like {DEFAULT_URL}")
    return url.rstrip("/")


def _absolute(raw: Mapping[str, Any], key: str) -> str | None:
    path = values.optional_text(raw, key, WHERE)
    if path is not None and not Path(path).expanduser().is_absolute():
        raise invalid(f"{WHERE} {key} must be an absolute path, got {path[:100]!r}")
    return path


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise invalid(f"{WHERE} {key} must be one of {list(choices)}, got {value!r}")
    return str(value)


def _labels(entry: Mapping[str, Any], where: str) -> dict[str, str]:
    labels = values.text_map(entry, "node_labels", where)
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or not LABEL_VALUE.match(value):
            raise invalid(
                f"{where}: node_labels {key[:60]!r} = {value[:60]!r} is not a Bacalhau label "
                "(letters, digits and -_. only)"
            )
    return labels
