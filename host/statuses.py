"""Job statuses: which failures pods refine, and the statuses' names for people.

Which statuses end a job is not a list here: the engine's event says so (``JobEvent.terminal``)
and the node records it in ``Stage.terminal``."""

from __future__ import annotations

from typing import cast

from c2d.common.v1 import common_pb2

S = common_pb2.JobStatus

# Failures a pod reports more precisely than the engine can.
POD_REFINED: frozenset[int] = frozenset(
    {
        S.JOB_STATUS_DATA_PROVISIONING_FAILED,
        S.JOB_STATUS_ALGORITHM_PROVISIONING_FAILED,
        S.JOB_STATUS_RESULTS_UPLOAD_FAILED,
    }
)


def as_job_status(status: int) -> common_pb2.JobStatus:
    """A status kept as an int (a database column) as the enum the messages' fields are typed with.

    At run time a protobuf enum value is a plain int, so this is the identity; the generated
    stubs give every enum a class of its own, which an int is not.
    """
    return cast(common_pb2.JobStatus, status)


def name(status: int) -> str:
    """``JOB_STATUS_RUNNING`` -> ``running``."""
    try:
        return S.Name(status).removeprefix("JOB_STATUS_").lower().replace("_", " ")
    except ValueError:
        return f"status {status}"
