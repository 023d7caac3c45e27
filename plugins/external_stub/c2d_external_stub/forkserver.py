"""Starting shims by fork instead of exec: ``python -m c2d_external_stub.forkserver``.

A shim started as a new interpreter pays Python's start-up and its imports on
every job, and on a busy machine that start-up is most of what a short stage
costs. The fork server is one interpreter, started by the plugin, that has
imported the shim once; for each job it forks a child that becomes the shim
(a session of its own, output to the job's ``shim.log``, the job directory as
its folder), exactly as if ``python -m c2d_external_stub.shim <job_dir>`` had
been exec'd. It must not be the plugin itself: the plugin has gRPC channels,
threads and an event loop, none of which survive a fork; the server imports
the standard library and the shim (standard library only) and nothing else.

The protocol is one line each way over the server's stdin and stdout: the job
directory, then the shim's pid (or ``error <why>``). The server reaps the
shims it forked as they end, so their CPU time (the whole job's: the shim
reaps its pods and algorithm) adds up in its own children's time, and in the
plugin's once the server ends, as when the plugin exec'd them. The server
ends when its stdin closes, that is when the plugin ends. A server that is gone or answers nonsense costs no
job: :class:`ForkServer` says so and the plugin execs the shim instead
(:mod:`c2d_external_stub.jobs`); a shim started twice for one job runs once
(the shim's job lock).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import setproctitle

from c2d_external_stub import shim
from c2d_external_stub.jobdir import SHIM_LOG

# How long the plugin waits for a fork's answer before it gives up on the server.
REPLY_TIMEOUT_SECONDS = 10.0


class ForkServer:
    """The plugin's end: starts the server on first use, asks it for shims, forgets it when it fails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def spawn(self, job: Path, env: Mapping[str, str]) -> int | None:
        """The pid of a new shim for ``job``, or None when the server cannot make one (exec it then)."""
        with self._lock:
            try:
                process = self._running(env)
                return _ask(process, job)
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                sys.stderr.write(f"fork server failed ({exc}); starting the shim by exec\n")
                self._drop()
                return None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _running(self, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._drop()
            self._process = subprocess.Popen(
                [sys.executable, "-P", "-m", "c2d_external_stub.forkserver"],
                cwd="/",
                env=dict(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,  # the answers are read with os.read: nothing may wait in a buffer
                close_fds=True,
                start_new_session=True,  # a stop of the plugin's terminal group is no stop of the server
            )
        return self._process

    def _drop(self) -> None:
        """Kills a server that failed (or is no longer wanted) and reaps it in the background; the shims
        it forked live on (sessions of their own)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        threading.Thread(target=process.wait, name="reap-forkserver", daemon=True).start()


def shim_argv(job: Path) -> list[str]:
    """The command line of a job's shim, exec'd or (as its title) forked."""
    return [sys.executable, "-P", "-m", "c2d_external_stub.shim", str(job)]


def shim_command_line(job: Path) -> str:
    return " ".join(shim_argv(job))


def _ask(process: subprocess.Popen[bytes], job: Path) -> int:
    """One request, one answer; raises ValueError on anything but a pid."""
    assert process.stdin is not None and process.stdout is not None
    line = os.fsencode(str(job))
    if b"\n" in line:
        raise ValueError("a job directory with a newline in its name")
    process.stdin.write(line + b"\n")
    process.stdin.flush()
    answer = _read_line(process.stdout)
    if not answer.isdigit():
        raise ValueError(f"the fork server answered {answer[:200]!r}")
    return int(answer)


def _read_line(stream: IO[bytes]) -> bytes:
    """The server's answer, within REPLY_TIMEOUT_SECONDS (a hung server must not hang StartJob)."""
    deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
    answer = b""
    while not answer.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream], [], [], left)[0]:
            raise ValueError("no answer from the fork server")
        chunk = os.read(stream.fileno(), 64)
        if not chunk:
            raise ValueError("the fork server ended")
        answer += chunk
    return answer.strip()


# The server's end ---------------------------------------------------------------------


def serve(requests: IO[bytes], replies: int) -> int:
    """Forks one shim per request line until stdin closes."""
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for raw in requests:
        job = Path(os.fsdecode(raw.rstrip(b"\n")))
        try:
            pid = os.fork()
        except OSError as exc:
            os.write(replies, f"error {exc}\n".encode())
            continue
        if pid == 0:
            os._exit(become_shim(job))
        os.write(replies, f"{pid}\n".encode())
    return 0


def _reap(*_: object) -> None:
    """Every shim that has ended (SIGCHLD): none lingers as a zombie of the server."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def become_shim(job: Path) -> int:
    """In the forked child: the process layout of an exec'd shim, then the shim itself."""
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        log = os.open(job / SHIM_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, max(os.sysconf("SC_OPEN_MAX"), 1024))  # the server's pipes to the plugin too
        os.chdir(job)
        # Named as an exec'd shim is: what `ps` shows is the job's shim, never a second fork server.
        setproctitle.setproctitle(shim_command_line(job))
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 is /dev/null now
        sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
        return shim.main([str(job)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main() -> int:
    return serve(sys.stdin.buffer, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
