"""The environment of pod-configuration and pod-publishing, the same on every engine that runs pods.

The names are the seed's (``nodePeerId``, ``nodeHttpApi``, ``privateKey``)
plus ``jobId`` and the contract's ``C2D_DATA``; ``pods.env`` reads them.
"""

from __future__ import annotations

from c2d.plugin.kit.jobdir import Record
from c2d.plugin.kit.jobspec import DATA_ROOT

POD_MODULES = {"configuration": "pods.configuration", "publishing": "pods.publishing"}
PRIVATE_KEY = "privateKey"


def pod_environment(record: Record, *, with_key: bool = True) -> dict[str, str]:
    """The variables a pod of the job's record gets; ``with_key=False`` leaves the key to the engine
    (a Kubernetes Secret, say), so it never appears in an object anyone may read."""
    pod: Record = record["pod"]
    env = {
        "nodePeerId": str(pod.get("node_peer_id", "")),
        "nodeHttpApi": str(pod["node_http_api"]),
        PRIVATE_KEY: str(pod["private_key"]),
        "jobId": str(record["job_id"]),
        "C2D_DATA": DATA_ROOT,
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if not with_key:
        del env[PRIVATE_KEY]
    return env


def pod_command(role: str) -> list[str]:
    """``python3 -m pods.configuration`` or ``python3 -m pods.publishing``."""
    return ["python3", "-m", POD_MODULES[role]]
