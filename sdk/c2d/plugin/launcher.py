"""The host side of the handshake: start a plugin process and connect to it.

Shared by the node's supervisor and the conformance suite, so both start an
engine exactly the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import stat
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c2d.plugin import goplugin, handshake

STDERR_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
SHUTDOWN_CALL_SECONDS = 2.0
GO_PLUGIN_SOCKET_PREFIX = "plugin"  # go-plugin before 1.5: ioutil.TempFile("", "plugin")
# go-plugin's client variables this host never sets: no AutoMTLS (go-plugin's P-521 certificates
# are refused by grpcio's BoringSSL), no gRPC broker multiplexing (the host uses no broker).
NEVER_PASSED_ENV = ("PLUGIN_CLIENT_CERT", "PLUGIN_MULTIPLEX_GRPC")


def _load_prctl() -> Any:
    """libc's prctl, loaded before any fork (the child must not load libraries); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def parent_death_signal(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send ``signum`` to the child when its parent dies.

    Whatever the child's language, it cannot outlive a SIGKILLed host. The kernel ties the signal to
    the *thread* that forked, so spawn from a thread that lives as long as the child (the event loop's).
    If the parent died between fork and prctl, the child exits at once. None where there is no prctl.
    """
    if _PRCTL is None:
        return None
    parent = os.getpid()
    prctl = _PRCTL

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


@dataclass
class PluginProcess:
    """A running plugin: its process, where it listens, and the tail of its stderr."""

    name: str
    process: asyncio.subprocess.Process
    socket_dir: str
    line: handshake.HandshakeLine | None = None
    stderr_task: asyncio.Future[None] | None = None
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        assert self.line is not None, "handshake not done"
        return self.line.grpc_target

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail) or "(nothing on stderr)"

    def alive(self) -> bool:
        return self.process.returncode is None

    async def terminate(self, grace: float = 5.0) -> None:
        """Ends the plugin; idempotent.

        A plugin that serves go-plugin's ``GRPCController`` is asked to ``Shutdown`` first and given
        ``grace`` to exit; then the whole process group gets SIGTERM, and SIGKILL after ``grace``.
        """
        if self.alive() and self.line is not None and await self._shutdown():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        # The plugin's children (job shims excepted: they start their own sessions) go too.
        _signal_group(self.pid, signal.SIGKILL)
        if self.alive():
            await self.process.wait()
        if self.stderr_task is not None:
            try:
                await asyncio.wait_for(self.stderr_task, 2.0)
            except (TimeoutError, asyncio.CancelledError):
                self.stderr_task.cancel()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        self._remove_foreign_socket()

    async def _shutdown(self) -> bool:
        """go-plugin's ``GRPCController.Shutdown``; False when the plugin does not serve it."""
        channel = grpc.aio.insecure_channel(self.target)
        try:
            return await goplugin.shutdown(channel, SHUTDOWN_CALL_SECONDS)
        finally:
            await channel.close()

    def _remove_foreign_socket(self) -> None:
        """Removes the plugin's Unix socket when it made it elsewhere than in its socket directory.

        Older go-plugin ignores ``PLUGIN_UNIX_SOCKET_DIR`` and binds ``$TMPDIR/plugin<random>``; it
        removes the socket on a clean exit only. Only such a socket is removed, never another file:
        a plugin announcing someone else's socket (a Docker daemon's, say) must not get it deleted.
        """
        if self.line is None or self.line.network != "unix" or not os.path.isabs(self.line.address):
            return
        address = self.line.address
        if os.path.dirname(address) == self.socket_dir:
            return  # went with the directory
        in_tmp = os.path.realpath(os.path.dirname(address)) == os.path.realpath(tempfile.gettempdir())
        if not in_tmp or not os.path.basename(address).startswith(GO_PLUGIN_SOCKET_PREFIX):
            return
        with contextlib.suppress(OSError):
            info = os.lstat(address)
            if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid():
                os.unlink(address)


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    versions: Sequence[int] = handshake.SUPPORTED_API_VERSIONS,
    env: dict[str, str] | None = None,
) -> PluginProcess:
    """Starts ``argv`` in a new process group with the handshake environment."""
    socket_dir = tempfile.mkdtemp(prefix="c2d-")
    child_env = {
        **{key: value for key, value in os.environ.items() if key not in NEVER_PASSED_ENV},
        **(env or {}),
        handshake.MAGIC_COOKIE_KEY: handshake.MAGIC_COOKIE_VALUE,
        handshake.PROTOCOL_VERSIONS_ENV: ",".join(str(v) for v in versions),
        handshake.SOCKET_DIR_ENV: socket_dir,
        handshake.PARENT_PID_ENV: str(os.getpid()),
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env,
        start_new_session=True,
        preexec_fn=parent_death_signal(),
        limit=1 << 20,
    )
    return PluginProcess(name=name, process=process, socket_dir=socket_dir)


async def start(
    name: str,
    argv: Sequence[str],
    *,
    versions: Sequence[int] = handshake.SUPPORTED_API_VERSIONS,
    timeout: float = 30.0,
    on_stderr: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> PluginProcess:
    """Spawns a plugin, drains its stderr into ``on_stderr``, and completes the handshake.

    On a failed handshake the process is terminated before the error is raised.
    """
    plugin = await spawn(name, argv, versions=versions, env=env)
    plugin.stderr_task = asyncio.ensure_future(pump_stderr(plugin, on_stderr))
    try:
        await read_handshake(plugin, versions, timeout)
    except BaseException:
        await plugin.terminate(grace=1.0)
        raise
    return plugin


async def pump_stderr(plugin: PluginProcess, on_line: Callable[[str], None] | None) -> None:
    """Keeps the tail of the plugin's stderr and hands every line to ``on_line``."""
    assert plugin.process.stderr is not None
    while raw := await plugin.process.stderr.readline():
        line = raw.decode(errors="replace").rstrip("\n")
        plugin.stderr_tail.append(line)
        if on_line is not None:
            on_line(line)


async def wait_serving(channel: grpc.aio.Channel, timeout: float) -> None:
    """Waits until the plugin's health service reports ``plugin`` SERVING."""
    # types-grpcio-health-checking declares HealthStub without its methods: Check is untyped here.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    deadline = asyncio.get_running_loop().time() + timeout
    last_error = "no answer"
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise handshake.HandshakeError(
                f"plugin health check not SERVING within {timeout:g}s: {last_error}"
            )
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=handshake.HEALTH_SERVICE), timeout=min(remaining, 2.0)
            )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last_error = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as exc:
            last_error = f"{exc.code().name}: {exc.details()}"
        await asyncio.sleep(0.05)


async def read_handshake(
    plugin: PluginProcess, versions: Sequence[int], timeout: float
) -> handshake.HandshakeLine:
    """Waits for the handshake line; errors carry the plugin's stderr."""
    assert plugin.process.stdout is not None
    try:
        raw = await asyncio.wait_for(plugin.process.stdout.readline(), timeout)
    except TimeoutError:
        raise handshake.HandshakeError(
            f"plugin {plugin.name!r} printed no handshake within {timeout:g}s; "
            f"its stderr:\n{await _settled_stderr(plugin)}"
        ) from None
    if not raw:
        await plugin.process.wait()
        raise handshake.HandshakeError(
            f"plugin {plugin.name!r} exited with status {plugin.process.returncode} before its handshake; "
            f"its stderr:\n{await _settled_stderr(plugin)}"
        )
    try:
        plugin.line = handshake.parse_handshake(raw.decode(errors="replace"), versions)
    except handshake.HandshakeError as exc:
        raise handshake.HandshakeError(
            f"plugin {plugin.name!r} refused: {exc}; its stderr:\n{await _settled_stderr(plugin)}"
        ) from None
    return plugin.line


async def _settled_stderr(plugin: PluginProcess) -> str:
    """Gives the stderr reader a moment to catch the plugin's last words."""
    await asyncio.sleep(0.2)
    return plugin.stderr_text()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
