"""This engine's job handles: the SDK kit's, naming the job's containers for people reading them."""

from __future__ import annotations

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import handles
from c2d_docker_engine.errors import invalid
from c2d_docker_engine.jobdir import JobDir, Record

ENGINE = "the docker engine"


def encode(job: JobDir, spec: Record) -> engine_pb2.JobHandle:
    return handles.encode(
        job.job_id, job.path, spec, containers="c2d-<job_id>-{configuration,algorithm,publishing}"
    )


def decode(handle: engine_pb2.JobHandle) -> str:
    """The job id a handle names; INVALID_ARGUMENT for a handle this plugin did not make."""
    try:
        return handles.decode(handle, ENGINE)
    except handles.HandleError as exc:
        raise invalid(str(exc)) from None
