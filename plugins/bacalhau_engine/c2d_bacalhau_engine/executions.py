"""A Bacalhau job and its executions, as the job driver reads them.

Mind the encodings: a job's ``State.StateType`` is a string ("Pending",
"Queued", "Running", "Completed", "Failed", "Stopped"), an execution's
``ComputeState.StateType`` and ``DesiredState.StateType`` are integers
(Bacalhau's ``ExecutionStateType`` and ``ExecutionDesiredStateType`` enums,
by position). Either is read in the other encoding too, so an orchestrator
that writes them otherwise is still understood.

An execution's ``RunOutput`` (``Stdout``, ``Stderr``, ``ExitCode``,
``ErrorMsg``) is there once it has run: that is where the exit code and the
algorithm's log come from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

Obj = dict[str, Any]

# models.JobStateType, by position.
JOB_STATES = ("Undefined", "Pending", "Queued", "Running", "Completed", "Failed", "Stopped")
TERMINAL_JOB_STATES = frozenset({"Completed", "Failed", "Stopped"})
# models.ExecutionStateType (v1.9), by position.
EXECUTION_STATES = (
    "Undefined",
    "New",
    "AskForBid",
    "AskForBidAccepted",
    "AskForBidRejected",
    "BidAccepted",
    "Running",
    "Publishing",
    "BidRejected",
    "Completed",
    "Failed",
    "Cancelled",
)
# v1.9's API shows BidAccepted for a running execution (the node's own Running and Publishing
# stay on the node); it is also what an accepted execution waiting for the node's capacity shows.
RUNNING_EXECUTION_STATES = frozenset({"BidAccepted", "Running", "Publishing"})
ENDED_EXECUTION_STATES = frozenset({"Completed", "Failed", "Cancelled", "BidRejected", "AskForBidRejected"})
# The job state an ended execution stands for.
EXECUTION_ENDS = {"Completed": "Completed", "Cancelled": "Stopped"}
# models.ExecutionDesiredStateType, by position.
DESIRED_STATES = ("Pending", "Running", "Stopped")
TIMEOUT_WORDS = ("timed out", "timeout", "deadline exceeded")
PULL_WORDS = ("pull", "no such image", "manifest unknown", "not found: manifest", "image not found")
OOM_WORDS = ("oomkilled", "oom-killed", "out of memory", "memory limit exceeded")


def state_name(raw: object, names: tuple[str, ...]) -> str:
    """A state's ``StateType`` by name, whether it came as the enum's name or its number."""
    value = raw.get("StateType") if isinstance(raw, dict) else raw
    if isinstance(value, bool):
        return names[0]
    if isinstance(value, int | float):
        index = int(value)
        return names[index] if 0 <= index < len(names) else names[0]
    text = str(value or "")
    by_lower = {name.lower(): name for name in names}
    return by_lower.get(text.lower(), text or names[0])


def _dict(raw: Obj, key: str) -> Obj:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _message(raw: object) -> str:
    return str(raw.get("Message") or "") if isinstance(raw, dict) else ""


@dataclass(frozen=True)
class ExecutionView:
    execution_id: str
    node_id: str
    state: str  # an EXECUTION_STATES name
    desired: str  # a DESIRED_STATES name
    message: str
    exit_code: int | None
    stdout: str
    stderr: str
    error: str
    modify_time: int

    @property
    def running(self) -> bool:
        return self.state in RUNNING_EXECUTION_STATES

    @property
    def ended(self) -> bool:
        return self.state in ENDED_EXECUTION_STATES


def execution_view(raw: Obj) -> ExecutionView:
    output = _dict(raw, "RunOutput")
    code = output.get("ExitCode")
    return ExecutionView(
        execution_id=str(raw.get("ID", "")),
        node_id=str(raw.get("NodeID", "")),
        state=state_name(raw.get("ComputeState"), EXECUTION_STATES),
        desired=state_name(raw.get("DesiredState"), DESIRED_STATES),
        message=_message(raw.get("ComputeState")),
        exit_code=int(code) if isinstance(code, int | float) and not isinstance(code, bool) else None,
        stdout=str(output.get("Stdout") or ""),
        stderr=str(output.get("Stderr") or output.get("stderr") or ""),
        error=str(output.get("ErrorMsg") or ""),
        modify_time=int(raw.get("ModifyTime") or raw.get("CreateTime") or 0),
    )


@dataclass(frozen=True)
class JobView:
    """What the driver needs of ``GET /jobs/{id}?include=executions``."""

    job_id: str
    state: str  # a JOB_STATES name
    message: str
    execution: ExecutionView | None  # the latest one, if any
    first_ended: ExecutionView | None = None  # the first execution that ended, if any

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES

    @property
    def running(self) -> bool:
        return self.execution is not None and (self.execution.running or self.execution.ended)

    def settled(self) -> JobView | None:
        """The job as its step ended, or None while it runs: the job's own end, or its execution's.

        Bacalhau retries a failed execution (once, on the same node): a step must not run twice,
        so an execution that ended is the step's end even while the job waits for a retry."""
        if self.terminal:
            return self
        execution = self.first_ended
        if execution is None:
            return None
        return replace(self, state=EXECUTION_ENDS.get(execution.state, "Failed"), execution=execution)

    def words(self) -> str:
        """Every message the job and its execution carry, lower-cased (to tell a timeout from a pull failure)."""
        parts = [self.message]
        if self.execution is not None:
            parts += [self.execution.message, self.execution.error]
        return " ".join(p for p in parts if p).lower()

    @property
    def timed_out(self) -> bool:
        return self.state == "Failed" and any(w in self.words() for w in TIMEOUT_WORDS)

    @property
    def pull_failed(self) -> bool:
        return self.state == "Failed" and any(w in self.words() for w in PULL_WORDS)

    @property
    def oom_killed(self) -> bool:
        return any(w in self.words() for w in OOM_WORDS)

    def reason(self) -> str:
        """The most telling message, for an operator."""
        if self.execution is not None and (self.execution.error or self.execution.message):
            return self.execution.error or self.execution.message
        return self.message or f"the Bacalhau job {self.job_id} ended {self.state}"


def job_view(answer: Obj) -> JobView:
    job = _dict(answer, "Job")
    executions = answer.get("Executions")
    items = executions.get("Items") if isinstance(executions, dict) else executions
    views = [execution_view(e) for e in items or [] if isinstance(e, dict)]
    ended = [e for e in views if e.ended]
    return JobView(
        job_id=str(job.get("ID", "")),
        state=state_name(job.get("State"), JOB_STATES),
        message=_message(job.get("State")),
        execution=max(views, key=lambda e: e.modify_time) if views else None,
        first_ended=min(ended, key=lambda e: e.modify_time) if ended else None,
    )
