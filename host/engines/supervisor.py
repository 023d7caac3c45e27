"""Runs one engine plugin process and keeps it running.

Modelled on Dagster's out-of-process gRPC servers and Nomad's plugin
loader: the supervisor starts the plugin, completes the handshake, checks
its health, follows its fingerprint, and restarts it with backoff after a
crash or a hang. While it is down its environments are withdrawn. After
every (re)start it hands the engine to ``on_ready`` so the node can
re-attach to the jobs the plugin was running.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c2d import errorinfo
from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin import goplugin, handshake, launcher
from c2d.plugin.discovery import DiscoveredEngine
from c2d.plugin.kit import errors as kit_errors
from host.engines.client import EngineClient, EngineError
from host.engines.plugin_logs import emit_plugin_line
from host.engines.restart import RestartPolicy

CALL_TIMEOUT_SECONDS = 10.0


class SupervisorState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"  # gave up: crash loop or refused config
    UNDETECTED = "undetected"  # the plugin found nothing to drive here (no daemon, no credentials)
    STOPPED = "stopped"


# States the supervisor stays in for good, and those a start waits for.
GIVEN_UP = frozenset({SupervisorState.FAILED, SupervisorState.UNDETECTED})
SETTLED = GIVEN_UP | {SupervisorState.READY}


@dataclass(frozen=True)
class PluginSettings:
    handshake_timeout_seconds: float = 30.0
    health_interval_seconds: float = 5.0
    health_timeout_seconds: float = 3.0
    health_failures: int = 3
    restart_initial_seconds: float = 0.5
    restart_max_seconds: float = 30.0
    crash_loop_restarts: int = 5
    crash_loop_window_seconds: float = 120.0
    stop_grace_seconds: float = 5.0

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> PluginSettings:
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in section.items() if key in names})


class PluginFailure(Exception):
    """The plugin stopped working; ``permanent`` failures are not retried."""

    def __init__(self, message: str, *, permanent: bool = False, undetected: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent or undetected
        self.undetected = undetected


ReadyCallback = Callable[["EngineSupervisor"], Awaitable[None]]


class EngineSupervisor:
    """Owns one engine plugin process for the node's lifetime."""

    def __init__(
        self,
        engine: DiscoveredEngine,
        *,
        config: dict[str, Any],
        settings: PluginSettings,
        host_id: str,
        state_dir: Path,
        on_ready: ReadyCallback | None = None,
    ) -> None:
        self.engine = engine
        self.name = engine.spec.name
        self.config = config
        self.settings = settings
        self.host_id = host_id
        self.state_dir = state_dir
        self.on_ready = on_ready
        self.log = structlog.get_logger().bind(engine=self.name)
        self.plugin_log = structlog.get_logger().bind(plugin=self.name)
        self.state = SupervisorState.STARTING
        self.state_message = "starting"
        self.restarts = 0
        self.api_version = 0
        self.info = engine_pb2.GetPluginInfoResponse()
        self.fingerprint: engine_pb2.Fingerprint | None = None
        # The host's client of the engine's job calls while the plugin serves (None between lives).
        self.client: EngineClient | None = None
        self._stub: engine_pb2_grpc.ComputeEngineServiceStub | None = None  # the handshake's own calls
        self.changed = asyncio.Condition()
        self._plugin: launcher.PluginProcess | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stdio_task: asyncio.Task[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._policy = RestartPolicy(
            settings.restart_initial_seconds,
            settings.restart_max_seconds,
            settings.crash_loop_restarts,
            settings.crash_loop_window_seconds,
        )

    # -- public view ---------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._plugin.pid if self._plugin and self._plugin.alive() else 0

    @property
    def plugin(self) -> launcher.PluginProcess | None:
        """The plugin process of this life (None between lives): what :meth:`died` asks about."""
        return self._plugin

    async def died(self, plugin: launcher.PluginProcess) -> bool:
        """Whether ``plugin`` (a process a call just failed on) has died, as opposed to answering
        with an error or hanging. One that still answers a health check is alive; one that does not
        is waited for, up to the handshake timeout (a hung one the health checks deal with). A
        plugin the node itself is stopping has not died of anything."""
        if self._stopping:
            return False
        if not plugin.alive():
            return True
        if await _answers(plugin.target, self.settings.health_timeout_seconds):
            return False
        try:
            await asyncio.wait_for(
                asyncio.shield(plugin.process.wait()), self.settings.handshake_timeout_seconds
            )
        except TimeoutError:
            return False
        return True

    @property
    def health(self) -> common_pb2.EngineHealth:
        if self.state is SupervisorState.READY and self.fingerprint is not None:
            return self.fingerprint.health
        if self.state is SupervisorState.UNDETECTED:
            return common_pb2.ENGINE_HEALTH_UNDETECTED
        return common_pb2.ENGINE_HEALTH_UNHEALTHY

    @property
    def health_description(self) -> str:
        if self.state is SupervisorState.READY and self.fingerprint is not None:
            return self.fingerprint.health_description or "healthy"
        return self.state_message

    def environments(self) -> list[common_pb2.Environment]:
        """The engine's environments while it is healthy; none otherwise."""
        if self.health != common_pb2.ENGINE_HEALTH_HEALTHY or self.fingerprint is None:
            return []
        envs = []
        for env in self.fingerprint.environments:
            copy = common_pb2.Environment()
            copy.CopyFrom(env)
            copy.engine = self.name
            copy.engine_health = self.health
            envs.append(copy)
        return envs

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"engine-{self.name}")

    async def wait_settled(self, timeout: float) -> None:
        """Waits until the engine is ready or has been given up on."""
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: self.state in SETTLED),
                timeout,
            )

    async def stop(self) -> None:
        """Drains the plugin, then ends its process group; no plugin process survives this."""
        self._stopping = True
        if self.client is not None and self.state is SupervisorState.READY:
            try:
                await self.client.drain()
            except EngineError as exc:
                self.log.debug("drain failed", error=exc.code.name)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close()
        if self.state not in GIVEN_UP:  # keep the reason it was given up on
            await self._set_state(SupervisorState.STOPPED, "stopped")

    async def _run(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            try:
                await self._run_once()
                failure = PluginFailure("plugin stopped serving")
            except PluginFailure as exc:
                failure = exc
            except (grpc.aio.AioRpcError, OSError, handshake.HandshakeError) as exc:
                failure = PluginFailure(_describe(exc))
            except Exception as exc:
                # A bug on our side must not silently stop supervising the engine.
                self.log.exception("engine supervision failed")
                failure = PluginFailure(f"internal error: {exc!r}")
            finally:
                await self._close()
            if self._stopping:
                return
            if failure.undetected:
                self.log.info("engine not detected; not starting it", reason=str(failure))
                await self._set_state(SupervisorState.UNDETECTED, str(failure))
                return
            if failure.permanent:
                self.log.error("engine plugin refused to run; not restarting", reason=str(failure))
                await self._set_state(SupervisorState.FAILED, str(failure))
                return
            now = loop.time()
            if now - started > self.settings.crash_loop_window_seconds:
                attempt = 0  # it ran stably for a while: start the backoff afresh
            if self._policy.record_crash(now):
                message = (
                    f"crashed {self._policy.crashes_in_window()} times within "
                    f"{self.settings.crash_loop_window_seconds:g}s; not restarting. Last failure: {failure}"
                )
                self.log.error("engine plugin is crash-looping", reason=str(failure))
                await self._set_state(SupervisorState.FAILED, message)
                return
            delay = self._policy.delay(attempt)
            attempt += 1
            self.restarts += 1
            self.log.warning("engine plugin failed; restarting", reason=str(failure), delay=round(delay, 2))
            await self._set_state(SupervisorState.RESTARTING, f"restarting after failure: {failure}")
            await asyncio.sleep(delay)

    async def _run_once(self) -> None:
        """One life of the plugin process; returns or raises when it stops working."""
        await self._connect()
        stub = await self._configure()
        stream = stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest())
        try:
            first = await asyncio.wait_for(stream.read(), self.settings.handshake_timeout_seconds)
        except TimeoutError:
            raise PluginFailure("plugin sent no fingerprint in time") from None
        if first is grpc.aio.EOF:
            raise PluginFailure("plugin closed its fingerprint stream at once")
        self.fingerprint = first.fingerprint
        await self._set_state(SupervisorState.READY, "ready")
        self.log.info(
            "engine ready",
            pid=self.pid,
            api_version=self.api_version,
            plugin_version=self.info.plugin_version,
            environments=[e.id for e in self.fingerprint.environments],
        )
        if self.on_ready is not None:
            await self._notify_ready(self.on_ready)
        watchers = [
            asyncio.create_task(self._follow_fingerprint(stream)),
            asyncio.create_task(self._check_health()),
            asyncio.create_task(self._wait_exit()),
        ]
        try:
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            stream.cancel()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _connect(self) -> None:
        self._plugin = await launcher.start(
            self.name,
            self.engine.spec.argv,
            timeout=self.settings.handshake_timeout_seconds,
            on_stderr=lambda line: emit_plugin_line(self.plugin_log, line),
        )
        assert self._plugin.line is not None  # start() returns once the handshake line is read
        self.api_version = self._plugin.line.app_version
        self._channel = grpc.aio.insecure_channel(self._plugin.target)
        await launcher.wait_serving(self._channel, self.settings.handshake_timeout_seconds)
        # go-plugin's GRPCStdio: what a Go plugin writes to stdout/stderr after its handshake.
        self._stdio_task = asyncio.create_task(
            goplugin.pump_stdio(
                self._channel, lambda source, line: emit_plugin_line(self.plugin_log, line, source)
            )
        )
        self._stub = engine_pb2_grpc.ComputeEngineServiceStub(self._channel)
        self.client = EngineClient(self._channel, self.name)

    async def _configure(self) -> engine_pb2_grpc.ComputeEngineServiceStub:
        """GetPluginInfo and Configure; returns the stub the rest of the handshake uses."""
        stub = self._stub
        assert stub is not None
        self.info = await stub.GetPluginInfo(engine_pb2.GetPluginInfoRequest(), timeout=CALL_TIMEOUT_SECONDS)
        if self.info.api_versions and self.api_version not in self.info.api_versions:
            raise PluginFailure(
                f"plugin announced engine protocol version {self.api_version} in its handshake but "
                f"lists {list(self.info.api_versions)} in GetPluginInfo",
                permanent=True,
            )
        config = struct_pb2.Struct()
        config.update(self.config)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        request = engine_pb2.ConfigureRequest(
            api_version=self.api_version, config=config, host_id=self.host_id, state_dir=str(self.state_dir)
        )
        try:
            await stub.Configure(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                reason, _ = errorinfo.read(exc.trailing_metadata())
                if reason == kit_errors.UNDETECTED:
                    raise PluginFailure(exc.details() or "nothing to drive", undetected=True) from None
            permanent = exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
            raise PluginFailure(f"configuration refused: {exc.details()}", permanent=permanent) from None
        return stub

    async def _notify_ready(self, on_ready: ReadyCallback) -> None:
        try:
            await on_ready(self)
        except Exception:
            # Recovery problems concern single jobs; the engine itself is fine.
            self.log.exception("re-attaching jobs after plugin start failed")

    async def _follow_fingerprint(self, stream: Any) -> None:
        # The first message was taken with read(); aio forbids mixing read() and iteration.
        while (reply := await stream.read()) is not grpc.aio.EOF:
            self.fingerprint = reply.fingerprint
            await self._set_state(SupervisorState.READY, "ready")
        raise PluginFailure("plugin ended its fingerprint stream")

    async def _check_health(self) -> None:
        """Finds a plugin that is alive but no longer answers (hung)."""
        assert self._channel is not None
        # types-grpcio-health-checking declares HealthStub without its methods: Check is untyped here.
        stub: Any = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest(service=handshake.HEALTH_SERVICE)
        failures = 0
        while True:
            await asyncio.sleep(self.settings.health_interval_seconds)
            try:
                reply = await stub.Check(request, timeout=self.settings.health_timeout_seconds)
                failures = 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else failures + 1
            except grpc.aio.AioRpcError:
                failures += 1
            if failures >= self.settings.health_failures:
                raise PluginFailure(f"plugin failed {failures} health checks in a row (hung)")

    async def _wait_exit(self) -> None:
        assert self._plugin is not None
        code = await self._plugin.process.wait()
        raise PluginFailure(
            f"plugin process exited with status {code}; stderr:\n{self._plugin.stderr_text()}"
        )

    async def _close(self) -> None:
        self.client = None
        self._stub = None
        self.fingerprint = None
        if self._plugin is not None:
            # Before the channel closes: the plugin's last words, and (go-plugin) Shutdown first.
            await asyncio.shield(self._plugin.terminate(self.settings.stop_grace_seconds))
        if self._stdio_task is not None:
            self._stdio_task.cancel()
            await asyncio.gather(self._stdio_task, return_exceptions=True)
            self._stdio_task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _set_state(self, state: SupervisorState, message: str) -> None:
        async with self.changed:
            self.state, self.state_message = state, message
            self.changed.notify_all()


async def _answers(target: str, timeout: float) -> bool:
    """Whether a plugin serves at ``target``: a health check on a channel of its own (a dead
    plugin's address refuses the connection at once)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=handshake.HEALTH_SERVICE), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
