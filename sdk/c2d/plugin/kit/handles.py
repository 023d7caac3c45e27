"""The JobHandle an engine gives the node for each job, which the node hands back to RecoverJob.

An engine's durable state (job directory, containers, remote jobs) is the real
record; the handle only has to find it again, so it carries the job id and,
for people reading the node's database, where the job lives. ``state`` is
JSON, version 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from c2d.engine.v1 import engine_pb2

HANDLE_VERSION = 1


class HandleError(ValueError):
    """The handle was not made by this engine, or is damaged; the message says how."""


def encode(job_id: str, job_dir: Path, spec: dict[str, Any], **extra: str) -> engine_pb2.JobHandle:
    state = {
        "job_id": job_id,
        "job_dir": str(job_dir),
        "host_id": spec.get("host_id", ""),
        "environment_id": spec.get("environment_id", ""),
        **extra,
    }
    return engine_pb2.JobHandle(
        job_id=job_id, version=HANDLE_VERSION, state=json.dumps(state, sort_keys=True).encode()
    )


def decode(handle: engine_pb2.JobHandle, engine: str) -> str:
    """The job id a handle names; HandleError for a handle ``engine`` did not make."""
    if handle.version != HANDLE_VERSION:
        raise HandleError(
            f"job handle version {handle.version} is not one {engine} writes ({HANDLE_VERSION})"
        )
    job_id = handle.job_id
    if handle.state:
        try:
            state = json.loads(handle.state)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HandleError(f"job handle state is not the JSON {engine} writes") from None
        stored = state.get("job_id") if isinstance(state, dict) else None
        if not isinstance(stored, str) or (job_id and stored != job_id):
            raise HandleError(f"job handle state names job {stored!r}, the handle names {job_id!r}")
        job_id = stored
    if not job_id:
        raise HandleError("job handle names no job")
    return job_id
