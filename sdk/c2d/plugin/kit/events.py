"""Job events: the JSON lines of ``events.jsonl`` as the protocol's JobEvent.

Job drivers write plain JSON (a process shim need not import protobuf);
statuses are ``c2d.common.v1.JobStatus`` names without their ``JOB_STATUS_``
prefix, so the file stays readable and independent of enum numbers.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import timestamp_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2

Record = dict[str, Any]

FLAGS = ("oom_killed", "timed_out", "disk_quota_exceeded", "stopped")
TIMES = ("time", "algorithm_started", "algorithm_finished")


def status_of(name: object) -> common_pb2.JobStatus:
    """The JobStatus number of a status name, UNSPECIFIED for a name this version does not know."""
    try:
        # protobuf's stubs type Value() as a plain int; it is a JobStatus number by construction.
        return cast(common_pb2.JobStatus, common_pb2.JobStatus.Value(f"JOB_STATUS_{name}"))
    except ValueError:
        return common_pb2.JOB_STATUS_UNSPECIFIED


def to_proto(job_id: str, record: Record) -> engine_pb2.JobEvent:
    event = engine_pb2.JobEvent(
        job_id=job_id,
        sequence=int(record.get("sequence", 0)),
        status=status_of(record.get("status")),
        message=str(record.get("message", "")),
        terminal=bool(record.get("terminal", False)),
        image_digest=str(record.get("image_digest", "")),
    )
    if isinstance(record.get("exit_code"), int):
        event.exit_code = record["exit_code"]
    if isinstance(record.get("build_seconds"), (int, float)):
        event.build_seconds = float(record["build_seconds"])
    for flag in FLAGS:
        setattr(event, flag, bool(record.get(flag, False)))
    for name in TIMES:
        stamp = _timestamp(record.get(name))
        if stamp is not None:
            getattr(event, name).CopyFrom(stamp)
    details = record.get("details")
    if isinstance(details, dict):
        event.details.update({str(k): str(v) for k, v in details.items()})
    return event


def not_started(job_id: str) -> engine_pb2.JobEvent:
    """What RecoverJob answers for a job that has reported nothing yet: sequence 0, no status."""
    return engine_pb2.JobEvent(
        job_id=job_id, sequence=0, message="starting: the job has reported nothing yet"
    )


def _timestamp(value: object) -> timestamp_pb2.Timestamp | None:
    if not isinstance(value, str):
        return None
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromJsonString(value)
    except ValueError:
        return None
    return stamp
