"""The JobHandle the node stores for each job and hands back to RecoverJob.

The job directory and the containers are the real state; the handle only
has to find them again, so it carries the job id and, for people reading the
node's database, where the job lives. ``state`` is JSON (version 1).
"""

from __future__ import annotations

import json

from c2d.engine.v1 import engine_pb2
from c2d_docker_engine.errors import invalid
from c2d_docker_engine.jobdir import JobDir, Record

HANDLE_VERSION = 1


def encode(job: JobDir, spec: Record) -> engine_pb2.JobHandle:
    state = {
        "job_id": job.job_id,
        "job_dir": str(job.path),
        "host_id": spec.get("host_id", ""),
        "environment_id": spec.get("environment_id", ""),
        "containers": "c2d-<job_id>-{configuration,algorithm,publishing}",
    }
    return engine_pb2.JobHandle(
        job_id=job.job_id, version=HANDLE_VERSION, state=json.dumps(state, sort_keys=True).encode()
    )


def decode(handle: engine_pb2.JobHandle) -> str:
    """The job id a handle names; INVALID_ARGUMENT for a handle this plugin did not make."""
    if handle.version != HANDLE_VERSION:
        raise invalid(
            f"job handle version {handle.version} is not one the docker engine writes ({HANDLE_VERSION})"
        )
    job_id = handle.job_id
    if handle.state:
        try:
            state = json.loads(handle.state)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise invalid("job handle state is not the JSON the docker engine writes") from None
        stored = state.get("job_id") if isinstance(state, dict) else None
        if not isinstance(stored, str) or (job_id and stored != job_id):
            raise invalid(f"job handle state names job {stored!r}, the handle names {job_id!r}")
        job_id = stored
    if not job_id:
        raise invalid("job handle names no job")
    return job_id
