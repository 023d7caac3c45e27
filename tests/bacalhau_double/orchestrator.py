"""The requester side: job store, scheduler and the state transitions Bacalhau v1.9 makes.

A job is Pending on submission, then the scheduler ranks the node (label constraints, engine,
publisher, the node's maximum job size, previous executions of the job there). A suitable node
gets an execution (New, desired Pending); the compute node bids (AskForBidAccepted), the
scheduler approves it (BidAccepted, desired Running; job Running); the node runs it when its
capacity allows and reports the end: Completed or Failed, desired Stopped. As in v1.9 the
orchestrator never sees the node's own Running (6) and Publishing (7) states.

Failures follow v1.9's rules: a system error fails the execution (a non-zero exit code does not:
that execution completes with its ExitCode); the scheduler then retries once on the same node
(``PreviousExecutionsNodeRanker`` ranks a node that ran the job once as possible, twice as
unsuitable); with no suitable node left the job fails with "not enough nodes to run job", unless
its QueueTimeout has not passed yet (then it is Queued and tried again when capacity changes or
the queue timeout ends). TotalTimeout fails the job ("Job timed out"). A stop (DELETE) moves the
job to Stopped and cancels its executions. A re-submission with the same Name is an update (new
Version, previous executions stopped) or, with an identical spec, refused ("no changes detected").

Every change notifies :attr:`changed` (a Condition on the double's one lock) so that tests and
the compute node can wait for states without sleeping.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import errors
from .records import (
    DesiredState,
    Event,
    Execution,
    ExecutionState,
    HistoryEntry,
    Job,
    JobState,
    RunOutput,
    go_duration,
    new_execution_id,
    new_job_id,
    now_ns,
    short_id,
)
from .selectors import Requirement, constraint_requirements, matches_all
from .spec import JobSpec, Resources, ResourcesConfig, SpecConfig, Submission

if TYPE_CHECKING:
    from .compute import ComputeNode

# v1.9's JobDefaults for batch/ops/service/daemon tasks without resources.
DEFAULT_CPU = "500m"
DEFAULT_MEMORY = "512Mb"
SUPPORTED_PUBLISHERS = ("", "local", "noop")

TOPIC_SUBMISSION = "Submission"
TOPIC_STATE_UPDATE = "State Update"
TOPIC_SCHEDULING = "Scheduling"
TOPIC_QUEUEING = "Queueing"
TOPIC_JOB_TIMEOUT = "Job Timeout"
TOPIC_EXECUTION = "Execution"
TIMEOUT_HINT = "Increase the task timeout or allocate more resources"
_FULL_ID = re.compile(r"^[a-zA-Z]-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_TIMER_SECONDS = 10**7  # a longer timeout never ends within a test (and overflows a thread wait)


@dataclass(frozen=True)
class NodeRank:
    suitable: bool
    reason: str


def _state_event(state: JobState, message: str = "") -> Event:
    text = state.value + (f". {message}" if message else "")
    return Event(TOPIC_STATE_UPDATE, text, {"NewState": state.value})


class Orchestrator:
    """In-memory jobs, executions and history of one orchestrator with one compute node."""

    def __init__(self, lock: threading.Condition, node: ComputeNode, orchestrator_id: str) -> None:
        self.changed = lock
        self.node = node
        self.orchestrator_id = orchestrator_id
        self.jobs: dict[str, Job] = {}
        self._names: dict[tuple[str, str], str] = {}
        self.executions: dict[str, Execution] = {}
        self.history: dict[str, list[HistoryEntry]] = {}
        self._seq = 0
        self._timers: list[threading.Timer] = []
        self._closed = False

    # lookups ---------------------------------------------------------------------------------

    def find(self, id_or_name: str, namespace: str = "") -> Job:
        """GetJobByIDOrName: a Name in the namespace first, then an ID (or a unique short ID)."""
        with self.changed:
            job_id = self._names.get((namespace or "default", id_or_name))
            if job_id is None and id_or_name in self.jobs:
                job_id = id_or_name
            if job_id is None and not _FULL_ID.match(id_or_name):  # reifyJobID: a prefix of one ID
                found = [j for j in self.jobs if j.startswith(id_or_name)]
                if len(found) > 1:
                    raise errors.ApiError(
                        500, f"multiple jobs found for id {id_or_name}", "MultipleJobsFound", "JobStore"
                    )
                job_id = found[0] if found else None
            if job_id is None:
                raise errors.job_not_found(id_or_name)
            return self.jobs[job_id]

    def executions_of(self, job: Job, all_versions: bool = False) -> list[Execution]:
        with self.changed:
            return [
                e
                for e in self.executions.values()
                if e.job.id == job.id and (all_versions or e.job_version == job.version)
            ]

    def list_jobs(self, namespace: str, selector: list[Requirement]) -> list[Job]:
        with self.changed:
            return [
                job
                for job in sorted(self.jobs.values(), key=lambda j: j.create_time)
                if (namespace == "*" or job.spec.namespace == (namespace or "default"))
                and matches_all(selector, job.spec.label_map)
            ]

    def history_of(self, job: Job) -> list[HistoryEntry]:
        with self.changed:
            return list(self.history.get(job.id, []))

    # submission and stop ---------------------------------------------------------------------

    def submit(self, submission: Submission) -> tuple[str, str, list[str]]:
        """SubmitJob: create or update by Name; returns (JobID, EvaluationID, Warnings)."""
        spec = _with_defaults(submission.spec)
        _validate_for_store(spec)
        with self.changed:
            existing_id = self._names.get((spec.namespace, spec.name)) if spec.name else None
            if existing_id is not None:
                job = self.jobs[existing_id]
                if job.spec == spec:
                    raise errors.no_changes(spec.name, job.id)
                self._update(job, spec)
            else:
                job = self._create(spec)
            eval_id = str(uuid.uuid4())
            self._evaluate(job)
            self.changed.notify_all()
            return job.id, eval_id, list(submission.warnings)

    def _create(self, spec: JobSpec) -> Job:
        job_id = new_job_id()
        if not spec.name:
            spec = replace(spec, name=job_id)
        meta = {
            "bacalhau.org/orchestrator.id": self.orchestrator_id,
            "bacalhau.org/requester.id": self.orchestrator_id,
        }
        job = Job(job_id, spec, meta)
        self.jobs[job_id] = job
        self._names[(spec.namespace, spec.name)] = job_id
        self._job_event(job, Event(TOPIC_SUBMISSION, "Job submitted"))
        self._arm_timeouts(job)
        return job

    def _update(self, job: Job, spec: JobSpec) -> None:
        for execution in self.executions_of(job):
            if not execution.terminal:
                self._stop_execution(
                    execution,
                    ExecutionState.CANCELLED,
                    Event(TOPIC_SCHEDULING, "Execution stopped for job update"),
                )
        job.spec = spec
        job.version += 1
        self._set_job_state(job, JobState.PENDING, "Job update requested by user", event=False)
        self._job_event(job, Event(TOPIC_SUBMISSION, "Job updated"))
        self._arm_timeouts(job)

    def stop(self, id_or_name: str, namespace: str, reason: str) -> str:
        """StopJob: the EvaluationID ("" when it was already terminal)."""
        with self.changed:
            job = self.find(id_or_name, namespace)
            if job.state == JobState.STOPPED:
                return ""
            if job.state == JobState.COMPLETED:
                raise errors.cannot_stop(job.state.value)
            was_terminal = job.state.terminal
            self._set_job_state(job, JobState.STOPPED, reason, event=False)
            self._job_event(
                job, Event(TOPIC_SCHEDULING, "Job requested to stop before completion", {"Reason": reason})
            )
            self._evaluate(job)
            self.changed.notify_all()
            return "" if was_terminal else str(uuid.uuid4())

    # the compute node's reports -------------------------------------------------------------

    def bid_accepted(self, execution_id: str, allocated: Resources) -> bool:
        """The node bid: approve it (desired Running), job Running. False when it was cancelled meanwhile."""
        with self.changed:
            execution = self.executions[execution_id]
            if execution.terminal:
                return False
            execution.allocated = allocated
            self._set_execution(execution, ExecutionState.ASK_FOR_BID_ACCEPTED)
            # the scheduler's approval (AppendApprovedExecution): desired Running, BidAccepted
            execution.desired_state = DesiredState.RUNNING
            self._execution_event(execution, Event(TOPIC_EXECUTION, "Running"))
            self._set_execution(execution, ExecutionState.BID_ACCEPTED)
            if execution.job.state in (JobState.PENDING, JobState.QUEUED):
                self._set_job_state(execution.job, JobState.RUNNING)
            self.changed.notify_all()
            return True

    def execution_wanted(self, execution_id: str) -> bool:
        """Whether the node should still start the execution (not cancelled meanwhile)."""
        with self.changed:
            return not self.executions[execution_id].terminal

    def container_started(self, execution_id: str) -> None:
        """The node started the container. v1.9's node does not report Running (6) or Publishing (7)
        to the orchestrator: the API keeps showing BidAccepted (5) until the run completes or fails."""
        with self.changed:
            self.executions[execution_id].started = True
            self.changed.notify_all()

    def execution_completed(self, execution_id: str, output: RunOutput, published: SpecConfig | None) -> None:
        with self.changed:
            execution = self.executions[execution_id]
            if execution.terminal:
                return
            execution.run_output = output
            execution.published_result = published
            execution.desired_state = DesiredState.STOPPED
            execution.desired_message = "execution completed"
            self._set_execution(execution, ExecutionState.COMPLETED)
            self._execution_event(execution, Event(TOPIC_EXECUTION, "Completed successfully"))
            self._evaluate(execution.job)
            self.changed.notify_all()

    def execution_failed(self, execution_id: str, message: str, event: Event) -> None:
        with self.changed:
            execution = self.executions[execution_id]
            if execution.terminal:
                return
            execution.desired_state = DesiredState.STOPPED
            execution.desired_message = "execution failed"
            self._set_execution(execution, ExecutionState.FAILED, message)
            self._execution_event(execution, event)
            self._evaluate(execution.job)
            self.changed.notify_all()

    def capacity_freed(self) -> None:
        """Queued jobs may fit now (the node's available capacity grew)."""
        with self.changed:
            for job in list(self.jobs.values()):
                if job.state == JobState.QUEUED:
                    self._evaluate(job)
            self.changed.notify_all()

    # scheduling ------------------------------------------------------------------------------

    def _evaluate(self, job: Job) -> None:
        """One pass of the batch scheduler over a job (called with the lock held)."""
        current = self.executions_of(job)
        active = [e for e in current if not e.terminal]
        if job.state.terminal:
            stop_event = (
                Event(TOPIC_SCHEDULING, "Execution stop requested because job has been stopped")
                if job.state == JobState.STOPPED
                else Event(TOPIC_SCHEDULING, "Execution stopped due to job failure")
            )
            for execution in active:
                self._stop_execution(execution, ExecutionState.CANCELLED, stop_event)
            return
        if any(e.compute_state == ExecutionState.COMPLETED for e in current):
            self._set_job_state(job, JobState.COMPLETED)
            return
        if active:
            return
        rank = self._rank(job, current)
        requested = max(job.spec.count, 1)  # one node holds one partition of a job
        if rank.suitable and requested == 1:
            self._create_execution(job)
            return
        comment = (
            f"not enough nodes to run job. requested: {requested}, available: 1, suitable: {int(rank.suitable)}."
            f"\n• Node {short_id(self.node.node_id)}: {rank.reason}"
        )
        queue_timeout = job.spec.task.timeouts.queue
        if queue_timeout > 0 and time.time_ns() - job.create_time < queue_timeout * 1_000_000_000:
            if job.state != JobState.QUEUED:
                self._set_job_state(job, JobState.QUEUED, comment, event=False)
                self._job_event(job, Event(TOPIC_QUEUEING, f"Job queued. {comment}"))
            return
        details = {
            "IsError": "true",
            "NodesRequested": str(requested),
            "NodesAvailable": "1",
            "NodesSuitable": str(int(rank.suitable)),
        }
        self._fail_job(job, Event(TOPIC_SCHEDULING, comment, details))

    def _rank(self, job: Job, current: list[Execution]) -> NodeRank:
        """The rankers that can rule the one node out, in v1.9's words."""
        spec, node = job.spec, self.node
        if not matches_all(constraint_requirements(spec.constraints), node.labels):
            constraints = " ".join(f"{c.key} {c.operator} {list(c.values)}" for c in spec.constraints)
            labels = " ".join(f"{k}:{v}" for k, v in sorted(node.labels.items()))
            return NodeRank(False, f"labels map[{labels}] don't match required selectors [{constraints}]")
        if spec.task.engine.type.lower() != "docker":
            return NodeRank(False, f"does not support {spec.task.engine.type} engine")
        if spec.task.publisher.type.lower() not in SUPPORTED_PUBLISHERS:
            return NodeRank(False, f"does not support {spec.task.publisher.type} publisher")
        wanted = spec.task.resources.to_resources()
        if not wanted.fits(node.max_capacity):
            return NodeRank(False, _too_big(wanted, node.max_capacity))
        if len(current) > 1:
            return NodeRank(False, "job already executed on this node more than once")
        if any(e.compute_state == ExecutionState.ASK_FOR_BID_REJECTED for e in current):
            return NodeRank(False, "job rejected")
        return NodeRank(True, "job already executed on this node" if current else "job not executed yet")

    def _create_execution(self, job: Job) -> None:
        execution = Execution(new_execution_id(), job, job.version, self.node.node_id, str(uuid.uuid4()))
        self.executions[execution.id] = execution
        self._execution_event(
            execution,
            Event(
                TOPIC_SCHEDULING,
                f"Requested execution on {short_id(self.node.node_id)}",
                {"NodeID": self.node.node_id},
            ),
        )
        self.node.start(execution)

    def _stop_execution(self, execution: Execution, state: ExecutionState, event: Event) -> None:
        execution.desired_state = DesiredState.STOPPED
        execution.desired_message = event.message
        self._set_execution(execution, state, event.message)
        self._execution_event(execution, event)
        self.node.cancel(execution.id)

    def _fail_job(self, job: Job, event: Event) -> None:
        self._set_job_state(job, JobState.FAILED, event.message, event=False)
        self._job_event(job, event)
        self._evaluate(job)

    def _arm_timeouts(self, job: Job) -> None:
        """TotalTimeout fails the job; QueueTimeout's end re-evaluates a queued one."""
        version = job.version
        timeouts = job.spec.task.timeouts
        if timeouts.total > 0:
            self._timer(timeouts.total, lambda: self._total_timeout(job, version, timeouts.total))
        if timeouts.queue > 0:
            self._timer(timeouts.queue, lambda: self._queue_timeout(job, version))

    def _timer(self, seconds: float, action: Callable[[], None]) -> None:
        if self._closed or seconds > MAX_TIMER_SECONDS:
            return
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _total_timeout(self, job: Job, version: int, seconds: int) -> None:
        with self.changed:
            if self._closed or job.version != version or job.state.terminal:
                return
            message = f"Job timed out. Job took longer than {go_duration(seconds)}"
            details = {"IsError": "true", "Hint": TIMEOUT_HINT, "FailsExecution": "true"}
            self._fail_job(job, Event(TOPIC_JOB_TIMEOUT, message, details))
            self.changed.notify_all()

    def _queue_timeout(self, job: Job, version: int) -> None:
        with self.changed:
            if not self._closed and job.version == version and job.state == JobState.QUEUED:
                self._evaluate(job)
                self.changed.notify_all()

    # state bookkeeping -----------------------------------------------------------------------

    def _set_job_state(self, job: Job, state: JobState, message: str = "", event: bool = True) -> None:
        if job.state == state and not message:
            return
        job.state = state
        job.state_message = message
        job.revision += 1
        job.modify_time = now_ns()
        if event:
            self._job_event(job, _state_event(state, message))

    def _set_execution(self, execution: Execution, state: ExecutionState, message: str = "") -> None:
        execution.compute_state = state
        execution.compute_message = message
        execution.revision += 1
        execution.modify_time = now_ns()

    def _job_event(self, job: Job, event: Event) -> None:
        self._seq += 1
        self.history.setdefault(job.id, []).append(HistoryEntry(self._seq, job.id, job.version, event))

    def _execution_event(self, execution: Execution, event: Event) -> None:
        self._seq += 1
        entry = HistoryEntry(self._seq, execution.job.id, execution.job_version, event, execution.id)
        self.history.setdefault(execution.job.id, []).append(entry)

    def close(self) -> None:
        with self.changed:
            self._closed = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()


def _validate_for_store(spec: JobSpec) -> None:
    """The job store's full ``Job.Validate`` beyond ValidateSubmission: 400 BadRequest, JobStore."""
    task, problems = spec.task, []
    if task.result_paths and task.publisher.is_empty():
        problems.append("publisher must be set if result paths are set")
    timeouts = task.timeouts
    if timeouts.total > 0 and timeouts.execution + timeouts.queue > timeouts.total:
        problems.append(
            f"task timeouts validation failed: execution timeout {go_duration(timeouts.effective_execution)} and "
            f"queue timeout {go_duration(timeouts.queue)} should be less than total timeout {go_duration(timeouts.total)}"
        )
    if problems:
        message = f"task {task.name} validation failed: " + "\n".join(problems)
        raise errors.ApiError(400, message, "BadRequest", "JobStore")


def _with_defaults(spec: JobSpec) -> JobSpec:
    """DefaultsApplier: tasks without CPU or memory get 500m and 512Mb."""
    resources = spec.task.resources
    if resources.cpu and resources.memory:
        return spec
    filled = ResourcesConfig(
        resources.cpu or DEFAULT_CPU, resources.memory or DEFAULT_MEMORY, resources.disk, resources.gpu
    )
    return replace(spec, task=replace(spec.task, resources=filled))


def _too_big(wanted: Resources, maximum: Resources) -> str:
    reasons = []
    if wanted.cpu > maximum.cpu:
        reasons.append(f"more CPU ({wanted.cpu:g}) than the maximum available ({maximum.cpu:g})")
    if wanted.memory > maximum.memory:
        reasons.append(
            f"more memory ({_human(wanted.memory)}) than the maximum available ({_human(maximum.memory)})"
        )
    if wanted.disk > maximum.disk:
        reasons.append(
            f"more disk ({_human(wanted.disk)}) than the maximum available ({_human(maximum.disk)})"
        )
    if wanted.gpu > maximum.gpu:
        reasons.append(f"more GPUs ({wanted.gpu}) than the maximum available ({maximum.gpu})")
    return "job requires " + " and ".join(reasons)


def _human(size: int) -> str:
    """go-humanize's Bytes (SI units): ``512 MB``."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 10 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
