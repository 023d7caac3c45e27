"""The orchestrator as a backend: its health, kept current by a monitor, and what its compute nodes offer.

Health comes from three calls every few seconds: ``agent/alive``,
``agent/version`` and the node list (which needs the credentials even where
the first two do not). No answer at all is UNDETECTED until the orchestrator
was seen once, then UNHEALTHY ("stopped answering"); credentials it refuses
(401, 403) are UNHEALTHY with its own message.

A pool's size is what its connected compute nodes (those whose labels match
the environment's ``node_labels``) have available now, plus what this
engine's own running jobs there hold (they are already counted as taken),
never more than the nodes' ``MaxCapacity``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from c2d.common.v1 import common_pb2
from c2d.plugin.kit.fingerprint import Usage
from c2d.plugin.kit.health import HealthState, HealthTracker, wait_until_up
from c2d_bacalhau_engine import api
from c2d_bacalhau_engine.api import BacalhauError, Connection, Obj, Orchestrator
from c2d_bacalhau_engine.config import PoolSize

Health = common_pb2.EngineHealth
GIB = float(1 << 30)
CHECK_SECONDS = 3.0


@dataclass(frozen=True)
class NodeView:
    """A compute node as the engine sizes pools from it."""

    node_id: str
    labels: dict[str, str]
    connected: bool
    maximum: tuple[float, float, float, int]  # cores, GiB of memory, GiB of disk, GPUs
    available: tuple[float, float, float, int]


def _resources(raw: object) -> tuple[float, float, float, int]:
    data = raw if isinstance(raw, dict) else {}

    def number(key: str) -> float:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    return number("CPU"), number("Memory") / GIB, number("Disk") / GIB, int(number("GPU"))


def node_view(state: Obj) -> NodeView | None:
    """A compute node of ``orchestrator/nodes``, or None for a requester or something unreadable."""
    info = state.get("Info") if isinstance(state.get("Info"), dict) else None
    if info is None or str(info.get("NodeType", "Compute")) not in ("Compute", "Hybrid"):
        return None
    compute = info.get("ComputeNodeInfo") if isinstance(info.get("ComputeNodeInfo"), dict) else {}
    labels = info.get("Labels") if isinstance(info.get("Labels"), dict) else {}
    connection = state.get("Connection")
    if isinstance(connection, dict):  # some versions write the enum as a struct
        connection = next(iter(connection.values()), "")
    maximum = _resources(compute.get("MaxCapacity"))
    available = _resources(compute.get("AvailableCapacity"))
    return NodeView(
        node_id=str(info.get("NodeID", "")),
        labels={str(k): str(v) for k, v in labels.items()},
        connected=str(connection).upper() in ("CONNECTED", "HEALTHY"),
        maximum=maximum if any(maximum) else available,
        available=available,
    )


def pool_size(nodes: list[NodeView], labels: Mapping[str, str], used: Usage) -> PoolSize:
    """What the pool's connected nodes offer: available now plus what this engine's jobs there hold."""
    members = [n for n in nodes if n.connected and all(n.labels.get(k) == v for k, v in labels.items())]
    if not members:
        return PoolSize(measured=True)
    most = [sum(n.maximum[i] for n in members) for i in range(4)]
    free = [sum(n.available[i] for n in members) for i in range(4)]
    held = (used.cpu, used.ram_gib, used.disk_gib, float(used.gpus))
    cpu, ram, disk, gpus = (min(most[i], free[i] + held[i]) for i in range(4))
    return PoolSize(cpu=cpu, ram_gib=ram, disk_gib=disk, gpus=int(gpus), nodes=len(members), measured=True)


class Backend(HealthTracker):
    """The orchestrator's client, its health and the last node list it answered."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(
            "bacalhau",
            HealthState(
                Health.ENGINE_HEALTH_UNDETECTED,
                f"not checked yet: the Bacalhau orchestrator at {connection.url}",
            ),
        )
        self.api = Orchestrator(connection)
        self.version = ""
        self._seen = False
        self._nodes: list[NodeView] = []
        self._nodes_lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.api.url

    @property
    def nodes(self) -> list[NodeView]:
        with self._nodes_lock:
            return list(self._nodes)

    def check(self) -> bool:
        """Asks the orchestrator now; whether it is healthy. Records the health and the nodes."""
        try:
            self.api.alive()
            version = self.api.version()
            listed = self.api.nodes()
        except BacalhauError as exc:
            if api.is_unreachable(exc):
                self._unreachable(exc)
            elif exc.refused_credentials:
                self._seen = True
                self.set_state(
                    HealthState(
                        Health.ENGINE_HEALTH_UNHEALTHY,
                        f"the Bacalhau orchestrator at {self.address} refused the credentials ({exc}): "
                        "set token in [engines.bacalhau]",
                    ),
                    on_description=True,
                )
            else:
                self.set_state(
                    HealthState(
                        Health.ENGINE_HEALTH_UNHEALTHY,
                        f"the Bacalhau orchestrator at {self.address} answered {exc}",
                    ),
                    on_description=True,
                )
            return False
        except Exception as exc:
            if not api.is_unreachable(exc):
                raise
            self._unreachable(exc)
            return False
        nodes = [view for view in (node_view(n) for n in listed) if view is not None]
        with self._nodes_lock:
            self._nodes = nodes
        self._seen = True
        self.version = version
        connected = sum(1 for n in nodes if n.connected)
        self.set_state(
            HealthState(
                Health.ENGINE_HEALTH_HEALTHY,
                f"Bacalhau {version} at {self.address}: {connected} connected compute node(s)",
            ),
            on_description=True,
        )
        return True

    def _unreachable(self, exc: BaseException) -> None:
        if self._seen:
            state = HealthState(
                Health.ENGINE_HEALTH_UNHEALTHY,
                f"the Bacalhau orchestrator at {self.address} stopped answering: {api.describe(exc)}",
            )
        else:
            state = HealthState(
                Health.ENGINE_HEALTH_UNDETECTED,
                f"no Bacalhau orchestrator answers at {self.address}: {api.describe(exc)}",
            )
        self.set_state(state, on_description=True)

    def start_monitor(self, tick: Callable[[int], object]) -> None:
        self.start_ticking(tick, CHECK_SECONDS, "bacalhau-monitor")

    def wait_until_up(self, timeout: float, stop: threading.Event) -> bool:
        return wait_until_up(self.check, timeout, stop)
