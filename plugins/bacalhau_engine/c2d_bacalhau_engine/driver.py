"""The job driver: one thread per job that carries it through its steps, as Bacalhau jobs.

Steps, in order (the pods only when the job has them):

1. the job's folder on the work root (CONFIGURING_VOLUMES), with the pod key;
2. pod-configuration (PROVISIONING), one Bacalhau job;
3. the algorithm (RUNNING), one Bacalhau job with its time limit as the
   execution timeout; its ``RunOutput`` becomes the job's log;
4. pod-publishing (PUBLISHING), after a failed or timed-out algorithm too,
   never after a stop;
5. the pod key removed, then one terminal event (the folder stays until DestroyJob).

Each step's Bacalhau job id is written to ``steps.json`` as soon as the
orchestrator names it, and each submission carries an idempotency token
derived from the job id, so a driver started again (a plugin restart, a
re-sent StartJob) re-attaches to the job it submitted and never runs a step
twice. Bacalhau's API offers no watch, so the driver asks for the job every
``poll_seconds``. A step whose Bacalhau job is gone although it was
submitted is LOST.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from c2d.plugin.kit.driver import ENDED, OUTCOME, JobDriverBase, JobGone
from c2d.plugin.kit.jobdir import JobDir, Record, utc_now
from c2d.plugin.kit.outcome import STOPPED, TIMED_OUT, Ending, algorithm_times, classify, publishing_failed
from c2d_bacalhau_engine import api, names, tasks, workdir
from c2d_bacalhau_engine.api import BacalhauError, Orchestrator
from c2d_bacalhau_engine.backend import Backend
from c2d_bacalhau_engine.executions import JobView, job_view

STARTED = "started"
RUNNING_SINCE = "running_since"
# What a process killed for memory exits with (128 + SIGKILL), when the orchestrator gives no code.
OOM_EXIT_CODE = 137
BACKEND = "the Bacalhau orchestrator"
# Past a step's own time limit (Bacalhau's ExecutionTimeout) and this slack, the driver stops it itself.
DEADLINE_SLACK_SECONDS = 15.0
# A Bacalhau job asked to stop that has not ended this long after is given up on.
STOP_SLACK_SECONDS = 30.0


@dataclass(frozen=True)
class Runtime:
    """What every driver shares: the orchestrator, the node, and whom to tell about new events."""

    backend: Backend
    host_id: str
    changed: Callable[[], None]


@dataclass(frozen=True)
class StepEnd:
    """How a step's Bacalhau job ended: what the orchestrator last said, and the driver's own reason."""

    view: JobView | None
    reason: str | None = None  # STOPPED or TIMED_OUT when the driver ended it
    failure: tuple[str, str] | None = None  # (status, message) when it could not be submitted or started

    @property
    def exit_code(self) -> int:
        execution = self.view.execution if self.view is not None else None
        if execution is None or execution.exit_code is None:
            return -1
        return execution.exit_code

    @property
    def succeeded(self) -> bool:
        return (
            self.reason is None
            and self.failure is None
            and self.view is not None
            and self.view.state == "Completed"
            and self.exit_code in (0, -1)
        )


class StepVanished(Exception):
    """The step's Bacalhau job is gone although it was submitted."""


def submit(orchestrator: Orchestrator, job: JobDir, record: Record, step: str) -> str:
    """Submits ``step`` (idempotently) and records its Bacalhau job id; the id."""
    state = job.steps().get(step, {})
    if state.get("bacalhau_job"):
        return str(state["bacalhau_job"])
    bacalhau_id = orchestrator.put_job(tasks.job_body(record, step), tasks.idempotency_token(record, step))
    job.record_step(
        step,
        {"state": STARTED, "bacalhau_job": bacalhau_id, "started": utc_now(), "started_epoch": time.time()},
    )
    return bacalhau_id


def first_step(record: Record) -> str:
    return names.CONFIGURATION if record.get("pod") else names.ALGORITHM


def prepare_folder(record: Record) -> Path:
    folder = Path(str(record["limits"]["local_folder"]))
    pod = record.get("pod")
    workdir.lay_out(folder, str(pod["private_key"]) if pod else None)
    return folder


def bacalhau_jobs(job: JobDir, *, running_only: bool = False) -> dict[str, str]:
    """Step -> Bacalhau job id of every step submitted so far (or of those not known to have ended)."""
    return {
        step: str(state["bacalhau_job"])
        for step, state in job.steps().items()
        if isinstance(state, dict)
        and state.get("bacalhau_job")
        and not (running_only and state.get("state") == ENDED)
    }


class JobDriver(JobDriverBase):
    """Drives one job from wherever it is to its terminal event."""

    engine = "the bacalhau engine plugin"
    backend_wait_key = "api_wait_seconds"

    def __init__(self, runtime: Runtime, job: JobDir, record: Record) -> None:
        super().__init__(job, record, runtime.changed, "c2d_bacalhau_engine.driver")
        self.runtime = runtime
        self.api = runtime.backend.api
        self.poll = float(self.limits.get("poll_seconds", 1.0))
        self.folder = Path(str(self.limits["local_folder"]))

    def unreachable(self, exc: Exception) -> bool:
        """An outage, or credentials refused (the operator may fix them): both are waited out."""
        return api.is_unreachable(exc) or (isinstance(exc, BacalhauError) and exc.refused_credentials)

    def describe(self, exc: Exception) -> str:
        return api.describe(exc)

    def wait_for_backend(self, timeout: float) -> bool:
        return self.runtime.backend.wait_until_up(timeout, self.cancelled)

    def lost_message(self, exc: Exception) -> str:
        if isinstance(exc, BacalhauError) and exc.refused_credentials:
            return (
                f"the Bacalhau orchestrator at {self.runtime.backend.address} refused the credentials "
                f"({exc}) and did not take them again in time; the job could not be carried on"
            )
        return (
            f"the Bacalhau orchestrator at {self.runtime.backend.address} stopped answering "
            f"({api.describe(exc)}) and the job could not be carried on"
        )

    def drive(self) -> None:
        if self.job.is_ended():
            return
        early = self.stopped_before_start()
        if early is not None:
            self.finish(early)
            return
        pod = self.record.get("pod")
        outcome: Record | None = self.job.steps().get(OUTCOME)
        self.emit_once("CONFIGURING_VOLUMES", f"making the job's folder on the work root: {self.folder}")
        try:
            prepare_folder(self.record)
        except OSError as exc:
            self.finish(
                {"status": "VOLUME_CREATION_FAILED", "message": f"the job's folder could not be made: {exc}"}
            )
            return
        try:
            if outcome is None and pod:
                outcome = self.configure()
            if outcome is None:
                outcome = self.algorithm()
            if pod and not outcome.get("stopped"):
                outcome = self.publish(outcome)
        except StepVanished as exc:
            outcome = {**algorithm_times(outcome or {}), "status": "LOST", "message": str(exc)}
        self.finish(outcome)

    def finish(self, outcome: Record) -> None:
        workdir.forget_key(self.folder)
        self.end(**outcome)

    def settle(self, step: str, outcome: Record) -> Record:
        """Records a step's end and the job's outcome, keeping the step's Bacalhau job id (handles name it)."""
        self.job.record_step(
            step, {**self.job.steps().get(step, {}), "state": ENDED, "status": outcome.get("status")}
        )
        self.job.record_step(OUTCOME, outcome)
        return outcome

    # Steps -------------------------------------------------------------------------

    def configure(self) -> Record | None:
        """pod-configuration; the job's outcome when it failed (the algorithm is then skipped), else None."""
        if self.job.steps().get(names.CONFIGURATION, {}).get("state") == ENDED:
            return None
        self.emit_once("PROVISIONING", "pod-configuration started: fetching the inputs and the algorithm")
        ended = self.run_step(names.CONFIGURATION, float(self.record["pod"]["timeout_seconds"]))
        if ended is None or ended.reason == STOPPED:
            return self.settle(names.CONFIGURATION, self.stopped("during provisioning"))
        if ended.succeeded:
            self.job.record_step(
                names.CONFIGURATION,
                {**self.job.steps().get(names.CONFIGURATION, {}), "state": ENDED, "exit_code": 0},
            )
            return None
        return self.settle(
            names.CONFIGURATION,
            {
                "status": "DATA_PROVISIONING_FAILED",
                "message": step_failure(names.CONFIGURATION, ended, self.record),
            },
        )

    def algorithm(self) -> Record:
        """The algorithm to its end; the job's outcome so far (recorded before anything else happens)."""
        times: Record = {}

        def on_started(view: JobView) -> None:
            # When the driver first saw it run (to within poll_seconds), kept for a resumed driver:
            # the submission's time would bill the time it waited for a node.
            state = self.job.steps().get(names.ALGORITHM, {})
            started = str(state.get(RUNNING_SINCE) or utc_now())
            if RUNNING_SINCE not in state:
                self.job.record_step(names.ALGORITHM, {**state, RUNNING_SINCE: started})
            times["algorithm_started"] = started
            self.emit_once("RUNNING", "the algorithm is running", algorithm_started=started)

        ended = self.run_step(names.ALGORITHM, float(self.record["time_limit_seconds"]), on_started)
        if ended is None:
            return self.settle(names.ALGORITHM, self.stopped("before the algorithm started"))
        if "algorithm_started" not in times and self.job.has_status("RUNNING"):
            state = self.job.steps().get(names.ALGORITHM, {})
            times["algorithm_started"] = state.get(RUNNING_SINCE) or state.get("started") or utc_now()
        if ended.failure is not None:
            status, message = ended.failure
            return self.settle(names.ALGORITHM, {"status": status, "message": message, **times})
        self.collect_log(ended.view)
        view = ended.view
        assert view is not None
        if ended.reason is None and view.state == "Stopped":
            return self.settle(
                names.ALGORITHM,
                {
                    **times,
                    "status": "LOST",
                    "message": f"the Bacalhau job {view.job_id} was stopped by someone else: {view.reason()}",
                    "algorithm_finished": utc_now(),
                },
            )
        if (
            ended.reason is None
            and view.state == "Failed"
            and view.execution is not None
            and view.pull_failed
        ):
            return self.settle(
                names.ALGORITHM,
                {"status": "PULL_IMAGE_FAILED", "message": f"the image could not be pulled: {view.reason()}"},
            )
        timed_out = ended.reason == TIMED_OUT or (ended.reason is None and view.timed_out)
        # A failed execution without an exit code of its own (Bacalhau writes 0 then) never ran to its end.
        never_ran = view.state == "Failed" and ended.exit_code in (-1, 0) and not view.oom_killed
        if ended.reason is None and not timed_out and never_ran:
            return self.settle(
                names.ALGORITHM,
                {
                    **times,
                    "status": "CONTAINER_CREATION_FAILED",
                    "message": f"the algorithm could not run: {view.reason()}",
                },
            )
        exit_code = ended.exit_code
        if view.oom_killed and exit_code in (-1, 0):  # v1.9 reports the kill, not its exit code
            exit_code = OOM_EXIT_CODE
        ending = Ending(
            exit_code=exit_code,
            oom_killed=view.oom_killed,
            reason=TIMED_OUT if timed_out else ended.reason,
        )
        outcome = classify(
            ending, self.record["grant"], int(self.record["time_limit_seconds"]), self.stop_reason(), BACKEND
        )
        return self.settle(names.ALGORITHM, {**outcome, **times, "algorithm_finished": utc_now()})

    def publish(self, outcome: Record) -> Record:
        """pod-publishing; the outcome, changed only when publishing failed or was stopped."""
        state = self.job.steps().get(names.PUBLISHING, {})
        if state.get("state") == ENDED:
            return dict(state.get(OUTCOME) or outcome)
        self.emit_once("PUBLISHING", "pod-publishing started: uploading the results and the logs")
        ended = self.run_step(names.PUBLISHING, float(self.record["pod"]["timeout_seconds"]))
        if ended is None or ended.reason == STOPPED:
            result = {**algorithm_times(outcome), **self.stopped("during publishing")}
        elif ended.succeeded:
            result = outcome
        else:
            result = publishing_failed(outcome, step_failure(names.PUBLISHING, ended, self.record))
        self.job.record_step(names.PUBLISHING, {**state, "state": ENDED, OUTCOME: result})
        return result

    def collect_log(self, view: JobView | None) -> None:
        """The algorithm's RunOutput (stdout, then stderr) as the job's log and ``logs/algorithm.log``."""
        execution = view.execution if view is not None else None
        data = (execution.stdout + execution.stderr).encode() if execution is not None else b""
        partial = self.job.log_path.with_name(self.job.log_path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(self.job.log_path)
        workdir.write_algorithm_log(self.folder, data)

    # One Bacalhau job ----------------------------------------------------------------

    def run_step(
        self, step: str, limit_seconds: float, on_started: Callable[[JobView], None] | None = None
    ) -> StepEnd | None:
        """Submits (or re-attaches to) the step's Bacalhau job and follows it to its end; None if stopped first."""
        state = self.job.steps().get(step, {})
        if not state.get("bacalhau_job"):
            if self.stopping():
                return None
            try:
                submit(self.api, self.job, self.record, step)
            except BacalhauError as exc:
                if api.is_unreachable(exc):
                    raise
                return StepEnd(
                    None,
                    failure=("CONTAINER_CREATION_FAILED", f"the orchestrator refused the {step} job: {exc}"),
                )
            state = self.job.steps()[step]
            self.log.info("bacalhau job submitted", step=step, bacalhau_job=state["bacalhau_job"])
        return self.follow(
            step, str(state["bacalhau_job"]), float(state["started_epoch"]), limit_seconds, on_started
        )

    def follow(
        self,
        step: str,
        bacalhau_id: str,
        started: float,
        limit_seconds: float,
        on_started: Callable[[JobView], None] | None,
    ) -> StepEnd:
        """Asks for the Bacalhau job every ``poll_seconds`` until it ends; stops it when it must stop.

        Bacalhau enforces the time limit (ExecutionTimeout) and the queue time itself; the driver's own
        deadlines, later by a slack, only catch an orchestrator that does not."""
        queue = float(self.limits.get("queue_timeout_seconds", 600))
        pending_deadline = started + queue + DEADLINE_SLACK_SECONDS
        run_deadline: float | None = None
        reason: str | None = None
        give_up = 0.0
        while True:
            view = self.read(step, bacalhau_id)
            now = time.time()
            if view.running and run_deadline is None:
                run_deadline = now + limit_seconds + DEADLINE_SLACK_SECONDS
                if on_started is not None:
                    on_started(view)
            ended = view.settled()
            if ended is not None:
                if not view.terminal:  # the execution ended, the job did not: no retry of a step
                    self.stop(bacalhau_id, "the step has ended")
                stopped = self.stopping() and ended.state == "Stopped"
                return StepEnd(ended, reason or (STOPPED if stopped else None))
            if reason is None and self.stopping():
                reason, give_up = STOPPED, now + STOP_SLACK_SECONDS
                self.stop(bacalhau_id, self.stop_reason())
            elif reason is None and run_deadline is not None and now >= run_deadline:
                self.log.info("time limit reached: stopping the bacalhau job", step=step)
                reason, give_up = TIMED_OUT, now + STOP_SLACK_SECONDS
                self.stop(bacalhau_id, "time limit reached")
            elif reason is None and run_deadline is None and now >= pending_deadline:
                self.stop(bacalhau_id, "not started in time")
                return StepEnd(
                    view,
                    failure=(
                        "CONTAINER_CREATION_FAILED",
                        f"no compute node started the {step} job within {queue:g} s: {view.reason()}",
                    ),
                )
            elif reason is not None and now >= give_up:
                self.log.warning("the bacalhau job did not end after a stop: giving up on it", step=step)
                return StepEnd(view, reason)
            if self.cancelled.wait(self.poll):
                raise JobGone

    def read(self, step: str, bacalhau_id: str) -> JobView:
        if self.cancelled.is_set() or not self.job.exists():
            raise JobGone
        try:
            return job_view(self.api.get_job(bacalhau_id))
        except BacalhauError as exc:
            if exc.status == api.NOT_FOUND:
                raise StepVanished(
                    f"the {step} job {bacalhau_id} disappeared from the orchestrator"
                ) from None
            raise

    def stop(self, bacalhau_id: str, reason: str) -> None:
        stop_quietly(self.api, bacalhau_id, reason)


def stop_quietly(orchestrator: Orchestrator, bacalhau_id: str, reason: str) -> None:
    """Stops a Bacalhau job; one already ended (or gone) is fine. An unreachable orchestrator raises."""
    try:
        orchestrator.stop_job(bacalhau_id, reason[:200])
    except BacalhauError as exc:
        if api.is_unreachable(exc):
            raise
        # v1.9 answers 500 "cannot stop job in state Completed" for a job that has ended.
        if exc.status not in (400, api.NOT_FOUND, 409) and "cannot stop" not in exc.message.lower():
            raise


def step_failure(step: str, ended: StepEnd, record: Record) -> str:
    """What went wrong with a pod's Bacalhau job, in a few words."""
    name = f"pod-{step}"
    if ended.failure is not None:
        return f"{name}: {ended.failure[1]}"
    view = ended.view
    if ended.reason == TIMED_OUT or (view is not None and view.timed_out):
        return f"{name} ran past its time limit of {record['pod']['timeout_seconds']} s"
    if view is not None and view.state != "Completed":
        return f"{name} ended {view.state}: {view.reason()}"
    return f"{name} exited with code {ended.exit_code}"
