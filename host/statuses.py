"""Job statuses: which end a job, which count as success, and their names for people."""

from __future__ import annotations

from c2d.common.v1 import common_pb2

S = common_pb2.JobStatus

TERMINAL: frozenset[int] = frozenset(
    {
        S.JOB_STATUS_QUEUE_EXPIRED,
        S.JOB_STATUS_PULL_IMAGE_FAILED,
        S.JOB_STATUS_VOLUME_CREATION_FAILED,
        S.JOB_STATUS_CONTAINER_CREATION_FAILED,
        S.JOB_STATUS_DATA_PROVISIONING_FAILED,
        S.JOB_STATUS_ALGORITHM_PROVISIONING_FAILED,
        S.JOB_STATUS_ALGORITHM_FAILED,
        S.JOB_STATUS_DISK_QUOTA_EXCEEDED,
        S.JOB_STATUS_TIMED_OUT,
        S.JOB_STATUS_OUT_OF_MEMORY,
        S.JOB_STATUS_RESULTS_UPLOAD_FAILED,
        S.JOB_STATUS_FINISHED,
        S.JOB_STATUS_STOPPED,
        S.JOB_STATUS_SKIPPED,
        S.JOB_STATUS_LOST,
    }
)

# Failures a pod reports more precisely than the engine can.
POD_REFINED: frozenset[int] = frozenset(
    {
        S.JOB_STATUS_DATA_PROVISIONING_FAILED,
        S.JOB_STATUS_ALGORITHM_PROVISIONING_FAILED,
        S.JOB_STATUS_RESULTS_UPLOAD_FAILED,
    }
)


def is_terminal(status: int) -> bool:
    return status in TERMINAL


def name(status: int) -> str:
    """``JOB_STATUS_RUNNING`` -> ``running``."""
    try:
        return S.Name(status).removeprefix("JOB_STATUS_").lower().replace("_", " ")  # type: ignore[arg-type]
    except ValueError:
        return f"status {status}"
