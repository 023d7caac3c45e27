"""The host side of the handshake: start a plugin process and connect to it.

Shared by the node's supervisor and the conformance suite, so both start an
engine exactly the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c2d.plugin import handshake

STDERR_TAIL_LINES = 40


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
        """SIGTERM to the whole process group, SIGKILL after ``grace``; idempotent."""
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
        **os.environ,
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
