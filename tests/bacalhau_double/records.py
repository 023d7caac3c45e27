"""The orchestrator's records (jobs, executions, history) and their v1.9 JSON encodings.

Encodings the client sees, exactly as Bacalhau v1.9 writes them:

- ``Job.State.StateType`` is a **string** (``JobStateType`` has ``MarshalText``);
- ``Execution.ComputeState.StateType`` and ``DesiredState.StateType`` are **integers**
  (``ExecutionStateType`` / ``ExecutionDesiredStateType`` have no text form);
- ``JobHistory.Type`` is a string (``JobLevel`` / ``ExecutionLevel``); history entries carry the
  ``Event`` only (``JobState``/``ExecutionState`` are left out, as v1.9 does for current clients);
- times: ``CreateTime``/``ModifyTime`` in Unix nanoseconds, ``Event.Timestamp``/``Time`` RFC 3339;
- ``RunOutput`` has ``Stdout`` but lower-case ``stderr`` (v1.9's json tag).
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from .spec import JobSpec, Resources, SpecConfig


class ExecutionState(IntEnum):
    """``models.ExecutionStateType``, in its declaration order (the wire value is the int)."""

    UNDEFINED = 0
    NEW = 1
    ASK_FOR_BID = 2
    ASK_FOR_BID_ACCEPTED = 3
    ASK_FOR_BID_REJECTED = 4
    BID_ACCEPTED = 5
    RUNNING = 6
    PUBLISHING = 7
    BID_REJECTED = 8
    COMPLETED = 9
    FAILED = 10
    CANCELLED = 11

    @property
    def terminal(self) -> bool:
        return self in (
            ExecutionState.ASK_FOR_BID_REJECTED,
            ExecutionState.BID_REJECTED,
            ExecutionState.COMPLETED,
            ExecutionState.FAILED,
            ExecutionState.CANCELLED,
        )


class DesiredState(IntEnum):
    """``models.ExecutionDesiredStateType``."""

    PENDING = 0
    RUNNING = 1
    STOPPED = 2


class JobState(Enum):
    """``models.JobStateType``; the wire value is the name."""

    UNDEFINED = "Undefined"
    PENDING = "Pending"
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED)


def now_ns() -> int:
    return time.time_ns()


def rfc3339(ns: int) -> str:
    """Go's time.Time JSON form (RFC 3339 with nanoseconds, UTC)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z" if nanos else f"{stamp}Z"


def go_duration(seconds: int) -> str:
    """Go's time.Duration String() for whole seconds: ``0s``, ``45s``, ``2m5s``, ``1h0m0s``."""
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def new_job_id() -> str:
    return f"j-{uuid.uuid4()}"


def new_execution_id() -> str:
    return f"e-{uuid.uuid4()}"


def new_node_id() -> str:
    return f"n-{uuid.uuid4()}"


def short_id(full: str) -> str:
    """idgen.ShortUUID: ``n-78faf114-...`` -> ``n-78faf114``."""
    prefix, _, rest = full.partition("-")
    return f"{prefix}-{rest.split('-')[0]}" if len(prefix) == 1 and rest else full


@dataclass
class Event:
    """``models.Event``: what the history shows (Topic, Message, Details)."""

    topic: str
    message: str
    details: dict[str, str] = field(default_factory=dict)
    timestamp: int = field(default_factory=now_ns)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Message": self.message,
            "Topic": self.topic,
            "Timestamp": rfc3339(self.timestamp),
        }
        if self.details:
            out["Details"] = dict(self.details)
        return out


@dataclass
class RunOutput:
    """``models.RunCommandResult``."""

    stdout: str = ""
    stdout_truncated: bool = False
    stderr: str = ""
    stderr_truncated: bool = False
    exit_code: int = 0
    error_msg: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "Stdout": self.stdout,
            "StdoutTruncated": self.stdout_truncated,
            "stderr": self.stderr,
            "StderrTruncated": self.stderr_truncated,
            "ExitCode": self.exit_code,
            "ErrorMsg": self.error_msg,
        }


@dataclass
class Job:
    """A stored job: the submitted spec plus what the orchestrator adds."""

    id: str
    spec: JobSpec
    meta: dict[str, str]
    state: JobState = JobState.PENDING
    state_message: str = ""
    version: int = 1
    revision: int = 1
    create_time: int = field(default_factory=now_ns)
    modify_time: int = 0

    def __post_init__(self) -> None:
        self.modify_time = self.modify_time or self.create_time

    def to_json(self) -> dict[str, Any]:
        out = self.spec.to_json()
        out["ID"] = self.id
        out["Meta"] = {**out["Meta"], **self.meta}
        state: dict[str, Any] = {"StateType": self.state.value}
        if self.state_message:
            state["Message"] = self.state_message
        out["State"] = state
        out["Version"] = self.version
        out["Revision"] = self.revision
        out["CreateTime"] = self.create_time
        out["ModifyTime"] = self.modify_time
        order = (
            "ID",
            "Name",
            "Namespace",
            "Type",
            "Priority",
            "Count",
            "Constraints",
            "Meta",
            "Labels",
            "Tasks",
        )
        return {key: out[key] for key in order} | {k: v for k, v in out.items() if k not in order}


@dataclass
class Execution:
    """A stored execution of a job on the (one) compute node."""

    id: str
    job: Job
    job_version: int
    node_id: str
    eval_id: str
    allocated: Resources | None = None
    compute_state: ExecutionState = ExecutionState.NEW
    compute_message: str = ""
    desired_state: DesiredState = DesiredState.PENDING
    desired_message: str = ""
    run_output: RunOutput | None = None
    published_result: SpecConfig | None = None
    revision: int = 1
    create_time: int = field(default_factory=now_ns)
    modify_time: int = 0
    job_snapshot: dict[str, Any] = field(default_factory=dict)
    started: bool = False  # the node started its container (not shown by the API, as in v1.9)

    def __post_init__(self) -> None:
        self.modify_time = self.modify_time or self.create_time
        self.job_snapshot = self.job_snapshot or self.job.to_json()

    @property
    def terminal(self) -> bool:
        return self.compute_state.terminal or self.desired_state == DesiredState.STOPPED

    def to_json(self) -> dict[str, Any]:
        def state(value: int, message: str) -> dict[str, Any]:
            out: dict[str, Any] = {"StateType": value}
            if message:
                out["Message"] = message
            return out

        tasks = {self.job.spec.task.name: self.allocated.to_json()} if self.allocated else {}
        return {
            "ID": self.id,
            "Namespace": self.job.spec.namespace,
            "EvalID": self.eval_id,
            "Name": "",
            "NodeID": self.node_id,
            "JobID": self.job.id,
            "Job": self.job_snapshot,
            "JobVersion": self.job_version,
            "AllocatedResources": {"Tasks": tasks},
            "DesiredState": state(int(self.desired_state), self.desired_message),
            "ComputeState": state(int(self.compute_state), self.compute_message),
            "PublishedResult": (self.published_result or SpecConfig()).to_json(),
            "RunOutput": (self.run_output or RunOutput()).to_json(),
            "PreviousExecution": "",
            "NextExecution": "",
            "FollowupEvalID": "",
            "Revision": self.revision,
            "CreateTime": self.create_time,
            "ModifyTime": self.modify_time,
        }


@dataclass
class HistoryEntry:
    """``models.JobHistory``: one event, job level or about one execution."""

    seq: int
    job_id: str
    job_version: int
    event: Event
    execution_id: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "SeqNum": self.seq,
            "Type": "ExecutionLevel" if self.execution_id else "JobLevel",
            "JobID": self.job_id,
            "JobVersion": self.job_version,
        }
        if self.execution_id:
            out["ExecutionID"] = self.execution_id
        out["Event"] = self.event.to_json()
        out["Time"] = rfc3339(self.event.timestamp)
        return out
