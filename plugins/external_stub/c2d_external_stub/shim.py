"""The job's supervisor: ``python -m c2d_external_stub.shim <job_dir>``.

Like containerd-shim, it runs in its own session, so it outlives the plugin
(a crash, a SIGKILL of the plugin's process group, an upgrade). It starts the
algorithm (between pod-configuration and pod-publishing when the job has
pods), enforces the time limits, carries out stop requests and records what
happened in the job directory, which is all a new plugin process needs to
re-attach. The shim owns the whole sequence, so a plugin restart at any step
changes nothing. Every child runs in a process group of its own, so stopping
it reaches every process it started.

Standard library only (no gRPC), so it starts fast and depends on nothing
that a plugin upgrade could change under a running job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c2d_external_stub import podsteps, priority
from c2d_external_stub.jobdir import ALGORITHM, POD, SHIM, SHIM_LOG, JobDir, Record, utc_now
from c2d_external_stub.procinfo import (
    ProcessRef,
    children_of,
    group_members,
    parents_first,
    signal_group,
    signal_name,
)
from c2d_external_stub.sandbox import Sandbox

POLL_SECONDS = 0.05
TIMEOUT_GRACE_SECONDS = 2.0
DEFAULT_STOP_GRACE_SECONDS = 10.0
DEFAULT_POD_TIMEOUT_SECONDS = 600.0
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A process that ignores SIGXCPU gets SIGKILL this many CPU seconds later.
CPU_HARD_MARGIN_SECONDS = 1
# The shell reports a child killed by signal N as exit status 128 + N.
SHELL_SIGNAL_BASE = 128
LOCK_FILE = "shim.lock"
RESET_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class TerminateFlag:
    """Set by SIGTERM: the plugin's nudge after writing a stop request (anyone else's SIGTERM stops too)."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        """Installed before anything else, so an early SIGTERM cannot kill the shim unrecorded."""
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _set(self, *_: object) -> None:
        self.requested = True


class Supervisor:
    """Runs one job to its end (the pods around the algorithm, when it has them) and writes its events."""

    def __init__(self, job: JobDir, spec: Record, terminate: TerminateFlag) -> None:
        self.job = job
        self.spec = spec
        self.rlimits: dict[str, int] = dict(spec.get("rlimits") or {})
        self.terminate = terminate
        self.sandbox = Sandbox.from_json(spec.get("sandbox"))
        # The sandbox's own processes (the outer tool and the namespace's pid 1) under a confined
        # algorithm: SIGTERM goes past them to the algorithm, as in a container (they would die of it).
        self.wrapped: int | None = None

    def run(self) -> int:
        if self.stopping():
            self.end(status="STOPPED", stopped=True, message="stopped before it started")
            return 0
        pod = self.spec.get("pod")
        outcome = self.run_with_pods(pod) if pod else self.run_algorithm()
        self.end(**outcome)
        return 1 if outcome["status"] == "CONTAINER_CREATION_FAILED" else 0

    def stopping(self) -> bool:
        return self.terminate.requested or self.job.stop_requested()

    def end(self, **fields: Any) -> None:
        """The job's one terminal event."""
        self.job.append_event({**fields, "terminal": True})

    # The algorithm -----------------------------------------------------------------

    def run_algorithm(self) -> Record:
        """Runs the algorithm to its end; the fields of the terminal event, not written yet."""
        if self.stopping():
            return self.stopped("before the algorithm started")
        started = utc_now()
        try:
            process = self.spawn()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:  # ValueError: an unbindable path
            return {"status": "CONTAINER_CREATION_FAILED", "message": f"could not start the algorithm: {exc}"}
        self.record_start(process, started)
        self.wrapped = process.pid if self.sandbox.confined else None
        try:
            returncode, reason = self.supervise(process, float(self.spec["time_limit_seconds"]))
        finally:
            self.wrapped = None
        return {
            **self.classify(returncode, reason),
            "algorithm_started": started,
            "algorithm_finished": utc_now(),
        }

    def record_start(self, process: subprocess.Popen[bytes], started: str) -> None:
        """The algorithm's identity first (so a new plugin can kill it), then the RUNNING event."""
        ref = ProcessRef.of(process.pid)
        if ref is not None:
            self.job.write_process(ALGORITHM, ref)
        self.job.append_event(
            {
                "status": "RUNNING",
                "algorithm_started": started,
                "message": "algorithm started",
                "details": {"pid": str(process.pid)},
            }
        )

    def spawn(self) -> subprocess.Popen[bytes]:
        """Starts ``/bin/sh -c <command>`` in the job directory, limited, in a new session and group,
        confined by the job's sandbox (see :mod:`c2d_external_stub.sandbox`)."""
        env = {"PATH": BASE_PATH, "HOME": str(self.job.path), "LANG": "C.UTF-8"}
        env.update(self.spec.get("env") or {})
        env["C2D_DATA"] = str(self.job.path)
        self.sandbox.prepare(self.job.path)
        network = bool(self.spec.get("allow_network", False))
        argv = self.sandbox.argv(self.spec["command"], self.job.path, network)
        return self.start(argv, env, self.job.log_path, self.rlimits)

    def start(
        self, argv: list[str], env: dict[str, str], output: Path, rlimits: dict[str, int]
    ) -> subprocess.Popen[bytes]:
        """A child in the job directory, in a session and process group of its own, output to ``output``."""
        with open(output, "ab") as log:
            return subprocess.Popen(
                argv,
                cwd=self.job.path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
                preexec_fn=limiter(rlimits),
            )

    # The pods ----------------------------------------------------------------------

    def run_with_pods(self, pod: Record) -> Record:
        """pod-configuration, the algorithm, pod-publishing; the terminal event's fields.

        Publishing runs after a failed provisioning or algorithm too, so that the
        logs reach the node; only a stop skips it. The first failure decides the
        status, so a failed publishing turns FINISHED into RESULTS_UPLOAD_FAILED
        but leaves an earlier failure standing (and says so in the message).
        """
        self.job.append_event({"status": "PROVISIONING", "message": "pod-configuration started"})
        step = self.run_pod(pod, podsteps.CONFIGURATION)
        if step.stopped:
            return self.stopped("during provisioning")
        if step.failure:
            outcome: Record = {"status": "DATA_PROVISIONING_FAILED", "message": step.failure}
        else:
            outcome = self.run_algorithm()
        if outcome.get("stopped"):
            return outcome
        self.job.append_event({"status": "PUBLISHING", "message": "pod-publishing started"})
        step = self.run_pod(pod, podsteps.PUBLISHING)
        if step.stopped:
            return {**algorithm_times(outcome), **self.stopped("during publishing")}
        if step.failure:
            return publishing_failed(outcome, step.failure)
        return outcome

    def run_pod(self, pod: Record, step: str) -> podsteps.StepEnd:
        """One pod process to its end, under the stop requests and the pod time limit."""
        if self.stopping():
            return podsteps.StepEnd(stopped=True)
        env = {"PATH": BASE_PATH, "HOME": str(self.job.path), "LANG": "C.UTF-8"}
        env.update(podsteps.environment(pod, self.job.job_id, self.job.path, os.environ))
        argv = podsteps.argv(pod, step)
        try:
            if self.sandbox.confined:
                self.sandbox.prepare_pods(self.job.path)
                argv = self.sandbox.pod_argv(argv, self.job.path)
            process = self.start(argv, env, self.job.path / SHIM_LOG, {})
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            sys.stderr.write(f"{podsteps.name(step)} could not be started: {exc}\n")
            return podsteps.StepEnd(failure=f"{podsteps.name(step)} could not be started")
        ref = ProcessRef.of(process.pid)
        if ref is not None:
            self.job.write_process(POD, ref)
        limit = float(pod.get("timeout_seconds") or DEFAULT_POD_TIMEOUT_SECONDS)
        self.wrapped = process.pid if self.sandbox.confined else None
        try:
            returncode, reason = self.supervise(process, limit)
        finally:
            self.wrapped = None
        return podsteps.ended(step, returncode, reason, limit)

    def stopped(self, when: str) -> Record:
        """A STOPPED outcome with the stop request's reason."""
        request = self.job.stop_request() or {}
        why = request.get("reason") or "stop requested"
        return {"status": "STOPPED", "stopped": True, "message": f"stopped {when}: {why}"}

    # Supervision -------------------------------------------------------------------

    def supervise(self, process: subprocess.Popen[bytes], limit_seconds: float) -> tuple[int, str | None]:
        """Waits for a child, ending it on a stop request or past ``limit_seconds``.

        The leader is only reaped after the whole group got SIGKILL: until
        then its pid (the group id) cannot be reused, so no stray process is
        ever signalled.
        """
        pgid = process.pid
        deadline = time.monotonic() + limit_seconds
        reason: str | None = None
        kill_at = float("inf")
        while not _exited(process.pid):
            now = time.monotonic()
            if reason is None and self.stopping():
                reason, kill_at = "stopped", now + self.stop_grace()
                self.terminate_group(pgid)
            elif reason is None and now >= deadline:
                reason, kill_at = "timed_out", now + TIMEOUT_GRACE_SECONDS
                self.terminate_group(pgid)
            elif now >= kill_at:
                signal_group(pgid, signal.SIGKILL)
                kill_at = float("inf")
            time.sleep(POLL_SECONDS)
        signal_group(pgid, signal.SIGKILL)  # whatever the child left behind in its group
        _, status = os.waitpid(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return process.returncode, reason

    def terminate_group(self, pgid: int) -> None:
        """SIGTERM to the child's group; to a sandboxed algorithm's processes only, not to its wrappers."""
        if self.wrapped is None:
            signal_group(pgid, signal.SIGTERM)
            return
        wrappers = {self.wrapped, *children_of(self.wrapped)}
        for pid in parents_first(group_members(pgid)):
            if pid not in wrappers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)

    def stop_grace(self) -> float:
        request = self.job.stop_request() or {}
        grace = request.get("grace_seconds", DEFAULT_STOP_GRACE_SECONDS)
        return float(grace) if isinstance(grace, int | float) and grace >= 0 else DEFAULT_STOP_GRACE_SECONDS

    def classify(self, returncode: int, reason: str | None) -> Record:
        """The terminal event's status from how the algorithm ended."""
        exit_code = returncode if returncode >= 0 else SHELL_SIGNAL_BASE - returncode
        signum = -returncode if returncode < 0 else returncode - SHELL_SIGNAL_BASE
        outcome: Record = {"exit_code": exit_code}
        if reason == "stopped":
            return {**outcome, **self.stopped("while the algorithm ran")}
        if reason == "timed_out":
            limit = self.spec["time_limit_seconds"]
            return {
                **outcome,
                "status": "TIMED_OUT",
                "timed_out": True,
                "message": f"ran past its time limit of {limit} s",
            }
        if (
            returncode != 0
            and "RLIMIT_FSIZE" in self.rlimits
            and (signum == signal.SIGXFSZ or self.file_at_size_limit())
        ):
            return {
                **outcome,
                "status": "DISK_QUOTA_EXCEEDED",
                "disk_quota_exceeded": True,
                "message": f"a file reached the disk limit of {self.rlimits['RLIMIT_FSIZE']} bytes",
            }
        if "RLIMIT_CPU" in self.rlimits and signum == signal.SIGXCPU:
            return {
                **outcome,
                "status": "TIMED_OUT",
                "timed_out": True,
                "message": f"used up its CPU time of {self.rlimits['RLIMIT_CPU']} s",
            }
        if returncode == 0:
            return {**outcome, "status": "FINISHED", "message": "exited with code 0"}
        how = f"killed by {signal_name(-returncode)}" if returncode < 0 else f"exited with code {returncode}"
        return {**outcome, "status": "ALGORITHM_FAILED", "message": how}

    def file_at_size_limit(self) -> bool:
        """Whether a write hit RLIMIT_FSIZE in a program that ignores SIGXFSZ (Python does: EFBIG)."""
        limit = self.rlimits["RLIMIT_FSIZE"]
        for root, dirs, files in os.walk(self.job.path):
            if root == str(self.job.path) and "inputs" in dirs:
                dirs.remove("inputs")  # provisioned for the algorithm, not written by it
            for name in files:
                try:
                    if os.lstat(os.path.join(root, name)).st_size >= limit:
                        return True
                except OSError:
                    continue
        return False


def limiter(rlimits: dict[str, int]) -> Callable[[], None]:
    """A preexec_fn applying the limits; computed up front so the forked child does little."""
    limits: list[tuple[int, int, int]] = []
    for name, value in rlimits.items():
        which = getattr(resource, name)
        hard = value + CPU_HARD_MARGIN_SECONDS if name == "RLIMIT_CPU" else value
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
        limits.append((which, min(value, hard), hard))

    def apply() -> None:
        # Ignored signals survive exec: the algorithm starts with default dispositions, as in a container.
        for signum in RESET_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        priority.lower_session()  # Popen's setsid made the child a session, and so a group, of its own
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))

    return apply


def algorithm_times(outcome: Record) -> Record:
    """The billing timestamps of an outcome, when the algorithm ran."""
    return {k: outcome[k] for k in ("algorithm_started", "algorithm_finished", "exit_code") if k in outcome}


def publishing_failed(outcome: Record, failure: str) -> Record:
    """The outcome once publishing failed: RESULTS_UPLOAD_FAILED, unless something failed before."""
    if outcome["status"] == "FINISHED":
        return {**outcome, "status": "RESULTS_UPLOAD_FAILED", "message": failure}
    details = {**(outcome.get("details") or {}), "publishing": "failed"}
    return {**outcome, "message": f"{outcome.get('message', '')}; then {failure}", "details": details}


def take_job_lock(job: JobDir) -> int | None:
    """An exclusive lock held for the shim's whole life: a job never runs twice, even if started twice."""
    fd = os.open(job.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _exited(pid: int) -> bool:
    """Whether the child has ended, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m c2d_external_stub.shim <job_dir>\n")
        return 2
    terminate = TerminateFlag()
    terminate.install()
    priority.lower_for_job()
    job = JobDir(Path(args[0]).resolve())
    lock = take_job_lock(job)
    if lock is None or job.read_events():
        sys.stderr.write(f"{job.path}: the job already has a shim or has run; nothing to do\n")
        return 0
    job.write_process(SHIM, ProcessRef.of_self())
    spec = job.read_spec()
    if spec is None:
        sys.stderr.write(f"{job.spec_path}: missing or unreadable job spec\n")
        job.append_event(
            {
                "status": "CONTAINER_CREATION_FAILED",
                "terminal": True,
                "message": "job spec missing or unreadable",
            }
        )
        return 1
    try:
        return Supervisor(job, spec, terminate).run()
    except FileNotFoundError:
        if not job.path.exists():
            return 0  # destroyed under us: nobody is left to report to
        raise


if __name__ == "__main__":
    sys.exit(main())
