"""The jobs of one node in one state dir: ``<state_dir>/jobs/<job_id>/``, and the containers Docker holds for it.

Nothing here is kept in memory: every answer is read from the job
directories and from Docker's labels, so a plugin that restarts (and is
configured with the same state dir and host id) knows every job the previous
process started, and every container the node owns but no job explains (an
orphan, listed so that the node can destroy it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import grpc

from c2d_docker_engine.containers import LABEL_HOST, LABEL_JOB, LABEL_WORKFLOW
from c2d_docker_engine.errors import EngineError, not_found
from c2d_docker_engine.jobdir import JobDir, Record

STAGING_PREFIX = ".new-"
TRASH_PREFIX = ".trash-"
PROBE_PREFIX = ".probe-"
STALE_STAGING_SECONDS = 300.0


class JobStore:
    def __init__(self, root: Path, host_id: str) -> None:
        self.root = root
        self.host_id = host_id

    # Finding jobs ------------------------------------------------------------------

    def find(self, job_id: str) -> tuple[JobDir, Record] | None:
        """The job with this id, whichever node it belongs to."""
        job = JobDir(self.root / job_id)
        spec = job.read_spec()
        return None if spec is None else (job, spec)

    def lookup(self, job_id: str) -> tuple[JobDir, Record] | None:
        """This node's job with this id, or None."""
        found = self.find(job_id)
        if found is None or found[1].get("host_id") != self.host_id:
            return None
        return found

    def get(self, job_id: str) -> tuple[JobDir, Record]:
        """This node's job, or NOT_FOUND."""
        found = self.lookup(job_id)
        if found is None:
            raise not_found(job_id)
        return found

    def jobs(self) -> Iterator[tuple[JobDir, Record]]:
        """Every job of this node, ended ones included, in job id order."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith("."):
                found = self.lookup(name)
                if found is not None:
                    yield found

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
        filters = {"label": [f"{LABEL_HOST}={self.host_id}", f"{LABEL_JOB}={job_id}"]}
        containers = client.containers.list(all=True, filters=filters)
        for container in containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        return len(containers)

    # Making and removing -----------------------------------------------------------

    def create(self, spec: Record) -> JobDir:
        """Writes the job directory off to the side, then renames it into place in one step."""
        job = JobDir(self.root / spec["job_id"])
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{job.job_id[:60]}-", dir=self.root))
        try:
            os.chmod(staging, 0o700)
            JobDir(staging).write_spec(spec)
            os.rename(staging, job.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return job

    def remove(self, job: JobDir) -> None:
        """Renames the directory away first, so the job disappears at once and never half-way."""
        trash = self.root / f"{TRASH_PREFIX}{job.job_id[:60]}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(job.path, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise EngineError(grpc.StatusCode.INTERNAL, f"cannot remove job {job.job_id!r}: {exc}") from None
        shutil.rmtree(trash, ignore_errors=True)

    def sweep(self) -> None:
        """Removes what crashes left half-made or half-removed (never a folder with a mount in it)."""
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.root):
                path = self.root / name
                stale = (
                    name.startswith((STAGING_PREFIX, PROBE_PREFIX))
                    and now - _mtime(path) > STALE_STAGING_SECONDS
                )
                if (name.startswith(TRASH_PREFIX) or stale) and not os.path.ismount(path / "data"):
                    shutil.rmtree(path, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
