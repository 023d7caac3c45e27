"""What a pod is told by its engine: the node's address, the stage's key and id, the data root.

The variable names are the seed's (``nodePeerId``, ``nodeHttpApi``,
``privateKey``) plus ``jobId`` and the contract's ``C2D_DATA``. Tuning knobs a
test or an operator may set are read here too, so nothing else reads the
environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pods.retry import DEFAULT_BUDGET_SECONDS

DEFAULT_DATA_ROOT = "/data"
REQUIRED = ("nodeHttpApi", "privateKey", "jobId")
# How long (seconds) a pod keeps retrying a node that does not answer.
RETRY_BUDGET_VARIABLE = "C2D_POD_RETRY_SECONDS"


class PodEnvError(Exception):
    """The engine started the pod without what it needs; nothing can be reported to the node."""


@dataclass(frozen=True)
class PodEnv:
    node_peer_id: str
    node_http_api: str
    private_key: str
    job_id: str
    data: Path
    retry_budget: float = DEFAULT_BUDGET_SECONDS

    def __repr__(self) -> str:
        """Never the key: a repr ends up in tracebacks and logs."""
        return (
            f"PodEnv(job_id={self.job_id!r}, node_http_api={self.node_http_api!r}, data={str(self.data)!r})"
        )

    @property
    def inputs(self) -> Path:
        return self.data / "inputs"

    @property
    def outputs(self) -> Path:
        return self.data / "outputs"

    @property
    def logs(self) -> Path:
        return self.data / "logs"

    @property
    def transformations(self) -> Path:
        return self.data / "transformations"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PodEnv:
        env = os.environ if environ is None else environ
        missing = [name for name in REQUIRED if not env.get(name)]
        if missing:
            raise PodEnvError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            node_peer_id=env.get("nodePeerId", ""),
            node_http_api=grpc_target(env["nodeHttpApi"]),
            private_key=env["privateKey"],
            job_id=env["jobId"],
            data=Path(env.get("C2D_DATA") or DEFAULT_DATA_ROOT),
            retry_budget=_seconds(env.get(RETRY_BUDGET_VARIABLE), DEFAULT_BUDGET_SECONDS),
        )


def grpc_target(node_http_api: str) -> str:
    """``host:port``; ``http://host:port/`` (the seed's form of nodeHttpApi) is taken as its host:port.

    The PodService is plain gRPC, so an ``https://`` value is left as is and fails to connect.
    """
    target = node_http_api.strip()
    if target.lower().startswith("http://"):
        target = target[len("http://") :]
    return target.rstrip("/")


def _seconds(value: str | None, default: float) -> float:
    try:
        seconds = float(value) if value else default
    except ValueError:
        return default
    return seconds if seconds >= 0 else default
