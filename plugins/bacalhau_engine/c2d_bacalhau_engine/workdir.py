"""The job's folder on the work root that this plugin and the compute nodes share.

Bacalhau's jobs of one stage hand data to each other through it:
pod-configuration writes ``inputs/`` and ``transformations/``, the algorithm
reads them and writes ``outputs/``, pod-publishing uploads ``outputs/`` and
``logs/``. Each job mounts it as ``localDirectory`` input sources, so the
compute nodes must list the work root in ``Compute.AllowListedLocalPaths``
and see it at ``node_work_root`` (the same machine, or a shared filesystem).

The pod key is written to ``.pod/key`` here, a folder only the pods' jobs
mount: it never appears in a job spec the orchestrator keeps and shows, and
the algorithm's job mounts the four contract folders only, never the
folder above them. The key is removed once the pods have run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

CONTRACT_FOLDERS = ("inputs", "transformations", "outputs", "logs")
POD_FOLDER = ".pod"
KEY_FILE = "key"
ALGORITHM_LOG = "logs/algorithm.log"
# The containers run as whatever user their image says (the pod image: 1000), so the folders are open.
OPEN = 0o777


def lay_out(folder: Path, private_key: str | None) -> None:
    """Makes the folder, its contract folders and (for a job with pods) the key; idempotent."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o711, exist_ok=True)
    for name in CONTRACT_FOLDERS:
        path = folder / name
        path.mkdir(exist_ok=True)
        path.chmod(OPEN)
    if private_key is None:
        return
    pod = folder / POD_FOLDER
    pod.mkdir(exist_ok=True)
    pod.chmod(0o755)
    key = pod / KEY_FILE
    partial = pod / f".{KEY_FILE}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(private_key)
    os.replace(partial, key)


def forget_key(folder: Path) -> None:
    """Removes the pod key: once the pods have run nobody needs it."""
    with contextlib.suppress(FileNotFoundError):
        (folder / POD_FOLDER / KEY_FILE).unlink()


def write_algorithm_log(folder: Path, data: bytes) -> None:
    """The algorithm's output, for pod-publishing to upload with the results."""
    target = folder / ALGORITHM_LOG
    if target.parent.is_dir():
        target.write_bytes(data)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
