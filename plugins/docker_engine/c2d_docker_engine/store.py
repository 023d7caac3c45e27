"""The jobs of one node in one state dir (the kit's store), and the containers Docker holds for it.

Nothing here is kept in memory: every answer is read from the job
directories and from Docker's labels, so a plugin that restarts (and is
configured with the same state dir and host id) knows every job the previous
process started, and every container the node owns but no job explains (an
orphan, listed so that the node can destroy it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import docker

from c2d.plugin.kit import jobstore
from c2d_docker_engine.containers import LABEL_HOST, LABEL_JOB, LABEL_WORKFLOW
from c2d_docker_engine.jobdir import JobDir


def _no_mount(path: Path) -> bool:
    """A leftover folder may go unless the job's filesystem is still mounted in it."""
    return not os.path.ismount(path / "data")


class JobStore(jobstore.JobStore[JobDir]):
    def __init__(self, root: Path, host_id: str) -> None:
        super().__init__(root, host_id, JobDir, removable=_no_mount)

    def orphans(self, client: docker.DockerClient) -> dict[str, str]:
        """Job id -> workflow id of this node's containers whose job has no directory here."""
        found: dict[str, str] = {}
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_HOST}={self.host_id}"}):
            job_id = container.labels.get(LABEL_JOB, "")
            if job_id and self.lookup(job_id) is None:
                found[job_id] = container.labels.get(LABEL_WORKFLOW, "")
        return found

    def remove_orphan(self, client: docker.DockerClient, job_id: str) -> int:
        """Removes this node's containers of a job that has no directory; how many there were."""
        labels = [f"{LABEL_HOST}={self.host_id}", f"{LABEL_JOB}={job_id}"]
        filters: dict[str, str | list[str] | bool] = {"label": labels}
        containers = client.containers.list(all=True, filters=filters)
        for container in containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        return len(containers)
