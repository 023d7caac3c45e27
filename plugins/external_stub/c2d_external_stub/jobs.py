"""The plugin's view of its jobs: the directories under ``<state_dir>/jobs/`` and their shims.

Nothing here is kept in memory: every answer is read from the job directories,
so a plugin that restarts (and is configured with the same state dir) knows
every job the previous process started. A job belongs to the node whose
``host_id`` its spec names; other nodes' jobs are invisible.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import structlog

from c2d.plugin.kit import jobstore
from c2d_external_stub.forkserver import ForkServer, shim_argv
from c2d_external_stub.jobdir import CHILDREN, SHIM, SHIM_LOG, JobDir, Record
from c2d_external_stub.procinfo import ProcessRef

# A job whose shim left no record this long after its spec was written never got a shim.
START_GRACE_SECONDS = 30.0
POLL_SECONDS = 0.05
DESTROY_WAIT_SECONDS = 5.0
# The plugin's handshake variables mean nothing to a shim; it must not look like a plugin.
PLUGIN_ENV_PREFIXES = ("C2D_PLUGIN_", "PLUGIN_")
# One per plugin process, shared by every configuration of it: it forks the shims.
FORK_SERVER = ForkServer()

log = structlog.get_logger("c2d_external_stub.jobs")


class JobStore(jobstore.JobStore[JobDir]):
    """Creates, finds, stops and removes the jobs of one node in one state dir."""

    def __init__(self, root: Path, host_id: str) -> None:
        super().__init__(root, host_id, JobDir)

    def lay_out(self, job: JobDir) -> None:
        job.create_layout()

    def remove_tree(self, path: Path) -> None:
        remove_tree(path)

    # Starting ----------------------------------------------------------------------

    def launch(self, job: JobDir) -> None:
        """Starts the job's shim in a session of its own, so it outlives this process: forked by the
        fork server (cheap), or exec'd as a new interpreter when the server cannot."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(PLUGIN_ENV_PREFIXES)}
        pid = FORK_SERVER.spawn(job.path, env)
        how = "forked"
        if pid is None:
            pid, how = self._exec_shim(job, env), "exec"
        ref = ProcessRef.of(pid)
        # The shim records itself once it holds the job's lock; a record already there is the one that
        # runs (a fork whose answer came too late), and the exec'd second shim only finds the job taken.
        if ref is not None and job.read_process(SHIM) is None:
            job.write_process(SHIM, ref)
        log.info("job started", job_id=job.job_id, shim_pid=pid, shim_started_by=how)

    @staticmethod
    def _exec_shim(job: JobDir, env: dict[str, str]) -> int:
        """``python -m c2d_external_stub.shim <job_dir>``; the fallback when the fork server fails."""
        with open(job.path / SHIM_LOG, "ab") as shim_log:
            process = subprocess.Popen(
                shim_argv(job.path),
                cwd=job.path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
            )
        # Reap it when it ends, or it would linger as a zombie of this process.
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
        return process.pid

    def never_launched(self, job: JobDir) -> bool:
        """A job whose StartJob was cut short between writing its directory and starting its shim."""
        return job.read_process(SHIM) is None and not job.read_events()

    # Following ---------------------------------------------------------------------

    def refresh(self, job: JobDir) -> Record | None:
        """The job's last event; writes the terminal LOST event first if its shim died without one."""
        last = job.last_event()
        if last is not None and last.get("terminal"):
            return last
        why = self._shim_gone(job)
        if why is None:
            return last
        self._kill_children(job)
        record = job.append_event(_ended_unreported(job, why))
        if record.get("status") == "LOST":
            log.warning("job lost", job_id=job.job_id, reason=why)
        return record

    def is_ended(self, job: JobDir) -> bool:
        last = self.refresh(job)
        return last is not None and bool(last.get("terminal"))

    def wait_ended(self, job: JobDir, timeout: float) -> Record | None:
        """Polls until the job's terminal event exists or ``timeout`` passes; the last event."""
        deadline = time.monotonic() + timeout
        while True:
            last = self.refresh(job)
            if (
                (last is not None and last.get("terminal"))
                or time.monotonic() >= deadline
                or not job.exists()
            ):
                return last
            time.sleep(POLL_SECONDS)

    def _shim_gone(self, job: JobDir) -> str | None:
        """Why the job can no longer end by itself, or None while its shim runs (or may yet start)."""
        shim = job.read_process(SHIM)
        if shim is None:
            try:
                age = time.time() - job.spec_path.stat().st_mtime
            except FileNotFoundError:
                return None
            return "the job's shim never started" if age > START_GRACE_SECONDS else None
        if shim.alive():
            return None
        return f"the job's shim (pid {shim.pid}) ended without reporting how the algorithm ended"

    def _kill_children(self, job: JobDir) -> None:
        """An algorithm or pod nobody supervises any more must not run on unbounded."""
        for name in CHILDREN:
            child = job.read_process(name)
            if child is not None:
                child.signal_group(signal.SIGKILL)

    # Stopping and removing ---------------------------------------------------------

    def stop(self, job: JobDir, grace_seconds: float, reason: str) -> None:
        """Asks the shim to stop the algorithm: the request file says how, SIGTERM says now."""
        if self.is_ended(job):
            return
        job.request_stop(grace_seconds, reason or "stop requested")
        shim = job.read_process(SHIM)
        if shim is not None:
            shim.signal(signal.SIGTERM)
        log.info("job stop requested", job_id=job.job_id, grace_seconds=grace_seconds)

    def destroy(self, job_id: str) -> bool:
        """Kills what still runs and removes the directory; whether there was such a job."""
        found = self.lookup(job_id)
        if found is None:
            return False
        job, _ = found
        if not self.is_ended(job):
            self.stop(job, 0, "destroyed")
            self.wait_ended(job, DESTROY_WAIT_SECONDS)
        shim = job.read_process(SHIM)
        if shim is not None:
            shim.signal(signal.SIGKILL)
        self._kill_children(job)
        self.remove(job)
        log.info("job destroyed", job_id=job_id)
        return True


def _ended_unreported(job: JobDir, why: str) -> Record:
    """The terminal event of a job whose shim died without writing one.

    A job asked to stop has stopped, whatever ended its shim: a SIGTERM that came while the shim
    was still starting (before its handler was installed) kills it unrecorded. Any other is lost.
    """
    request = job.stop_request()
    if request is not None:
        reason = request.get("reason") or "stop requested"
        return {"status": "STOPPED", "stopped": True, "terminal": True, "message": f"stopped: {reason}"}
    return {"status": "LOST", "terminal": True, "message": why}


def remove_tree(path: Path) -> None:
    """rmtree that also removes what an algorithm made unwritable."""

    def retry(function: object, failed: str, _: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)
