"""A synchronous client around one engine plugin process, for the conformance tests.

The plugin kit's launcher is asyncio (it is shared with the node's
supervisor, so the suite starts an engine exactly as the node does), while
pytest tests are plain functions. The launcher therefore runs on a private
event loop in a daemon thread (:class:`EventLoopThread`), which also keeps
draining the plugin's stderr and stdout for as long as it lives, and the
tests talk to the plugin with the blocking gRPC client.

Every helper that waits has a deadline, so a broken engine fails a test
instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin import handshake, launcher
from c2d.plugin.hookspecs import EngineSpec

T = TypeVar("T")

# Deadlines, in seconds. Generous where a real engine may be slow (pulling an
# image, scheduling a pod); a working engine never gets near them.
PLUGIN_START_TIMEOUT = 30.0
RPC_TIMEOUT = 30.0
FINGERPRINT_TIMEOUT = 10.0
JOB_START_TIMEOUT = 60.0  # StartJob until RUNNING
JOB_RUN_TIMEOUT = 60.0  # a short job, from StartJob to its terminal event
STREAM_END_GRACE = 5.0  # a stream must close this soon after its last message
TERMINATE_GRACE = 5.0

log = logging.getLogger("c2d.conformance")
engine_log = logging.getLogger("c2d.conformance.engine")
engine_log.setLevel(logging.INFO)

Status = common_pb2.JobStatus
TERMINAL_FLAGS = ("oom_killed", "timed_out", "disk_quota_exceeded", "stopped")


class EventLoopThread:
    """A private asyncio loop running in a daemon thread.

    Why a thread: the plugin's stderr must be read continuously (a full pipe
    blocks the plugin), and the launcher does that with asyncio tasks, which
    only run while a loop runs.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="c2d-conformance-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Runs ``coro`` on the loop and waits for it; TimeoutError after ``timeout`` seconds."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()


def config_struct(config: dict[str, Any]) -> struct_pb2.Struct:
    """The engine config as a protobuf Struct (TOML dates and times become strings)."""
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(config, default=str)))
    return struct


def new_job_id() -> str:
    """Job ids are unique per test so that no test sees another's job."""
    return f"conformance-{uuid.uuid4()}"


def describe(events: Sequence[engine_pb2.JobEvent]) -> str:
    """A one-line summary of events, for assertion messages."""
    return "[" + ", ".join(describe_event(e) for e in events) + "]"


def describe_event(event: engine_pb2.JobEvent) -> str:
    parts = [f"#{event.sequence}", Status.Name(event.status).removeprefix("JOB_STATUS_")]
    if event.terminal:
        parts.append("terminal")
    if event.HasField("exit_code"):
        parts.append(f"exit_code={event.exit_code}")
    parts.extend(flag for flag in TERMINAL_FLAGS if getattr(event, flag))
    if event.message:
        parts.append(repr(event.message[:80]))
    return " ".join(parts)


def event_key(event: engine_pb2.JobEvent) -> tuple[Any, ...]:
    """What must be identical when an event is replayed."""
    return (
        event.job_id,
        event.sequence,
        event.status,
        event.terminal,
        event.exit_code if event.HasField("exit_code") else None,
        *(getattr(event, flag) for flag in TERMINAL_FLAGS),
    )


def rpc_error_text(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return f"{code.name if code else 'error'}: {details}"


def expect_rpc_error(code: grpc.StatusCode, what: str, call: Callable[[], Any]) -> grpc.RpcError:
    """Runs ``call`` and checks that it fails with ``code``; the message names ``what``."""
    try:
        result = call()
    except grpc.RpcError as exc:
        got = exc.code() if isinstance(exc, grpc.Call) else None
        assert got == code, f"{what} must fail with {code.name}, but it failed with {rpc_error_text(exc)}"
        return exc
    raise AssertionError(f"{what} must fail with {code.name}, but it succeeded and returned {result!r}")


@dataclass
class Target:
    """The engine under test and how to configure it."""

    spec: EngineSpec
    config: dict[str, Any]
    config_source: str
    distribution: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def image(self) -> str:
        return str(self.spec.conformance.get("image", ""))

    @property
    def tag(self) -> str:
        return str(self.spec.conformance.get("tag", ""))


@dataclass
class WatchResult:
    """Events read from one WatchJob stream, and whether the engine closed the stream."""

    events: list[engine_pb2.JobEvent]
    ended: bool

    @property
    def last_sequence(self) -> int:
        return self.events[-1].sequence if self.events else 0


@dataclass
class EngineProcess:
    """One running engine plugin, its gRPC client, and the jobs the suite started on it."""

    target: Target
    plugin: launcher.PluginProcess
    loop: EventLoopThread
    host_id: str
    state_dir: str
    channel: grpc.Channel
    stub: engine_pb2_grpc.ComputeEngineServiceStub
    jobs: set[str] = field(default_factory=set)
    extra_stdout: list[str] = field(default_factory=list)
    configured: bool = False
    _fingerprint: engine_pb2.Fingerprint | None = None

    @property
    def pid(self) -> int:
        return self.plugin.pid

    @property
    def api_version(self) -> int:
        assert self.plugin.line is not None
        return self.plugin.line.app_version

    def alive(self) -> bool:
        return self.plugin.alive()

    # The protocol, with deadlines.

    def configure(self, config: dict[str, Any] | None = None) -> None:
        """Configure with the negotiated version, the engine config, this host id and state dir."""
        request = engine_pb2.ConfigureRequest(
            api_version=self.api_version,
            config=config_struct(self.target.config if config is None else config),
            host_id=self.host_id,
            state_dir=self.state_dir,
        )
        try:
            self.stub.Configure(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as exc:
            raise AssertionError(
                f"Configure(api_version={self.api_version}, config={self.target.config} "
                f"from {self.target.config_source}) failed with {rpc_error_text(exc)}; "
                f"the engine's stderr:\n{self.plugin.stderr_text()}"
            ) from None
        self.configured = True

    def plugin_info(self) -> engine_pb2.GetPluginInfoResponse:
        return self.stub.GetPluginInfo(engine_pb2.GetPluginInfoRequest(), timeout=RPC_TIMEOUT)

    def fingerprint(self, timeout: float = FINGERPRINT_TIMEOUT) -> engine_pb2.Fingerprint:
        """The first message of WatchFingerprint, which must come at once."""
        call = self.stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest(), timeout=timeout)
        try:
            first = next(call)
        except StopIteration:
            raise AssertionError("WatchFingerprint ended without sending a fingerprint") from None
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise AssertionError(
                    f"WatchFingerprint must send a fingerprint at once; none came within {timeout:g}s"
                ) from None
            raise AssertionError(f"WatchFingerprint failed with {rpc_error_text(exc)}") from None
        finally:
            call.cancel()
        self._fingerprint = first.fingerprint
        return first.fingerprint

    def environment(self) -> common_pb2.Environment:
        """The environment jobs run in: the first one offering cpu and ram."""
        fingerprint = self._fingerprint or self.fingerprint()
        for env in fingerprint.environments:
            if (
                env.id
                and resource(env, common_pb2.RESOURCE_TYPE_CPU)
                and resource(env, common_pb2.RESOURCE_TYPE_RAM)
            ):
                return env
        if fingerprint.environments:
            return fingerprint.environments[0]
        raise AssertionError(f"the fingerprint has no environment to run jobs in: {fingerprint}")

    def job_spec(
        self,
        command: str,
        *,
        job_id: str | None = None,
        max_duration_seconds: int = 0,
        environment_id: str | None = None,
    ) -> engine_pb2.JobSpec:
        """A job running ``command`` with the smallest cpu and ram the environment grants."""
        env = self.environment()
        granted = []
        for kind in (common_pb2.RESOURCE_TYPE_CPU, common_pb2.RESOURCE_TYPE_RAM):
            res = resource(env, kind)
            if res is not None:
                amount = res.min if res.min > 0 else min(1.0, res.max or 1.0)
                granted.append(common_pb2.GrantedResource(id=res.id, type=kind, amount=amount))
        return engine_pb2.JobSpec(
            job_id=new_job_id() if job_id is None else job_id,
            workflow_id=f"conformance-wf-{uuid.uuid4()}",
            environment_id=env.id if environment_id is None else environment_id,
            owner="0x000000000000000000000000000000000000c2d0",
            container=engine_pb2.Container(image=self.target.image, tag=self.target.tag, command=command),
            resources=granted,
            max_duration_seconds=max_duration_seconds,
            network=common_pb2.NetworkPolicy(allow_network=False),
            labels={"c2d-conformance": "true"},
        )

    def start_job(self, spec: engine_pb2.JobSpec) -> engine_pb2.JobHandle:
        """StartJob; the job is remembered so that teardown destroys it."""
        if spec.job_id:
            self.jobs.add(spec.job_id)
        try:
            reply = self.stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=RPC_TIMEOUT)
        except grpc.RpcError as exc:
            raise AssertionError(
                f"StartJob({spec.container.command!r}) failed with {rpc_error_text(exc)}"
            ) from None
        return reply.handle

    def run(self, command: str, **kwargs: Any) -> tuple[engine_pb2.JobSpec, engine_pb2.JobHandle]:
        spec = self.job_spec(command, **kwargs)
        return spec, self.start_job(spec)

    def watch(
        self,
        job_id: str,
        *,
        after: int = 0,
        timeout: float = JOB_RUN_TIMEOUT,
        until: Callable[[engine_pb2.JobEvent], bool] | None = None,
    ) -> WatchResult:
        """Reads WatchJob until the engine ends the stream, or until ``until`` accepts an event.

        Fails (with the events read so far) when the deadline passes, when the
        stream fails, or when it stays open after the terminal event.
        """
        what = f"WatchJob(job_id={job_id!r}, after_sequence={after})"
        call = self.stub.WatchJob(
            engine_pb2.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=timeout
        )
        events: list[engine_pb2.JobEvent] = []
        closer: threading.Timer | None = None
        try:
            for reply in call:
                events.append(reply.event)
                if until is not None and until(reply.event):
                    call.cancel()
                    return WatchResult(events, ended=False)
                if reply.event.terminal and closer is None:
                    closer = threading.Timer(STREAM_END_GRACE, call.cancel)
                    closer.daemon = True
                    closer.start()
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.CANCELLED and closer is not None:
                raise AssertionError(
                    f"{what} must end after the terminal event, but the stream stayed open "
                    f"{STREAM_END_GRACE:g}s after it; events: {describe(events)}"
                ) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                wanted = "the awaited event" if until is not None else "the terminal event and the end"
                raise AssertionError(
                    f"{what}: {wanted} did not come within {timeout:g}s; events so far: {describe(events)}"
                ) from None
            raise AssertionError(
                f"{what} failed with {rpc_error_text(exc)}; events so far: {describe(events)}"
            ) from None
        finally:
            if closer is not None:
                closer.cancel()
        return WatchResult(events, ended=True)

    def watch_until_running(self, job_id: str, timeout: float = JOB_START_TIMEOUT) -> WatchResult:
        """Events up to the RUNNING one (or an earlier terminal one)."""
        return self.watch(
            job_id, timeout=timeout, until=lambda e: e.status == Status.JOB_STATUS_RUNNING or e.terminal
        )

    def list_jobs(self) -> list[engine_pb2.JobSummary]:
        return list(self.stub.ListJobs(engine_pb2.ListJobsRequest(), timeout=RPC_TIMEOUT).jobs)

    def stop_job(self, job_id: str, grace_seconds: int = 2) -> None:
        request = engine_pb2.StopJobRequest(job_id=job_id, grace_seconds=grace_seconds, reason="conformance")
        self.stub.StopJob(request, timeout=RPC_TIMEOUT + grace_seconds)

    def destroy_job(self, job_id: str, timeout: float = RPC_TIMEOUT) -> None:
        self.stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id=job_id), timeout=timeout)

    def recover_job(
        self, handle: engine_pb2.JobHandle, registry_auth: engine_pb2.RegistryAuth | None = None
    ) -> engine_pb2.RecoverJobResponse:
        request = engine_pb2.RecoverJobRequest(handle=handle)
        if registry_auth is not None:
            request.registry_auth.CopyFrom(registry_auth)
        return self.stub.RecoverJob(request, timeout=RPC_TIMEOUT)

    def stream_logs(self, job_id: str, *, offset: int = 0, follow: bool = False) -> list[tuple[int, bytes]]:
        request = engine_pb2.StreamJobLogsRequest(job_id=job_id, offset=offset, follow=follow)
        return [(r.offset, r.data) for r in self.stub.StreamJobLogs(request, timeout=RPC_TIMEOUT)]

    # Teardown.

    def kill(self) -> None:
        """SIGKILL to the plugin's own pid only (not its group): what a crash looks like.

        Jobs must survive this; the process group is left for teardown.
        """
        os.kill(self.pid, signal.SIGKILL)
        self.loop.run(self.plugin.process.wait(), TERMINATE_GRACE)
        self.channel.close()

    def close(self) -> None:
        """Destroys the jobs the suite started, then stops the plugin and its process group."""
        if self.alive() and self.configured:
            for job_id in sorted(self.jobs):
                try:
                    self.destroy_job(job_id, timeout=15.0)
                except grpc.RpcError as exc:
                    log.warning("teardown: DestroyJob(%s) failed: %s", job_id, rpc_error_text(exc))
        self.jobs.clear()
        self.channel.close()
        try:
            self.loop.run(self.plugin.terminate(TERMINATE_GRACE), TERMINATE_GRACE + 10.0)
        except Exception as exc:  # the loop is gone or wedged: kill the group by hand
            log.warning("teardown: terminating plugin %s failed: %r", self.pid, exc)
            kill_group(self.pid)


def resource(env: common_pb2.Environment, kind: int) -> common_pb2.Resource | None:
    for res in env.resources:
        if res.type == kind:
            return res
    return None


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class EngineFactory:
    """Starts plugin processes for one engine and guarantees they are all stopped.

    Each process gets its own state dir and host id unless told otherwise
    (the recovery test reuses them to play a restarted plugin).
    """

    def __init__(self, target: Target, loop: EventLoopThread, scratch: Path) -> None:
        self.target = target
        self.loop = loop
        self.scratch = scratch
        self.started: list[EngineProcess] = []
        atexit.register(self._kill_leftovers)

    def new_state_dir(self) -> str:
        path = self.scratch / f"state-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return str(path)

    def start(
        self,
        *,
        configure: bool = True,
        state_dir: str | None = None,
        host_id: str | None = None,
        versions: Sequence[int] = handshake.SUPPORTED_API_VERSIONS,
    ) -> EngineProcess:
        """Spawns the plugin, completes the handshake, waits for SERVING, and optionally Configures it."""
        name = self.target.name

        def on_stderr(line: str) -> None:
            engine_log.info("%s: %s", name, line)

        async def start() -> launcher.PluginProcess:
            plugin = await launcher.start(
                name,
                self.target.spec.argv,
                versions=versions,
                timeout=PLUGIN_START_TIMEOUT,
                on_stderr=on_stderr,
            )
            try:
                channel = grpc.aio.insecure_channel(plugin.target)
                try:
                    await launcher.wait_serving(channel, PLUGIN_START_TIMEOUT)
                finally:
                    await channel.close()
            except BaseException:
                await plugin.terminate(1.0)
                raise
            return plugin

        try:
            plugin = self.loop.run(start(), PLUGIN_START_TIMEOUT * 2 + 5.0)
        except handshake.HandshakeError as exc:
            raise AssertionError(f"engine {name!r} did not start: {exc}") from None
        channel = grpc.insecure_channel(plugin.target)
        engine = EngineProcess(
            target=self.target,
            plugin=plugin,
            loop=self.loop,
            host_id=host_id or f"conformance-host-{uuid.uuid4().hex}",
            state_dir=state_dir or self.new_state_dir(),
            channel=channel,
            stub=engine_pb2_grpc.ComputeEngineServiceStub(channel),
        )
        self.started.append(engine)
        asyncio.run_coroutine_threadsafe(_pump_stdout(engine), self.loop.loop)
        if configure:
            engine.configure()
        return engine

    def close(self, engines: Iterable[EngineProcess] | None = None) -> None:
        """Closes ``engines`` (default: every one started), each exactly once."""
        chosen = list(self.started if engines is None else engines)
        for engine in chosen:
            if engine in self.started:
                self.started.remove(engine)
            try:
                engine.close()
            except Exception as exc:
                log.warning("teardown: closing plugin %s failed: %r", engine.pid, exc)
                kill_group(engine.pid)

    def _kill_leftovers(self) -> None:
        """Last resort at interpreter exit (an interrupted run): SIGKILL every plugin group."""
        for engine in self.started:
            if engine.alive():
                kill_group(engine.pid)


async def _pump_stdout(engine: EngineProcess) -> None:
    """Reads whatever the plugin writes to stdout after its handshake line (it must write nothing)."""
    stdout = engine.plugin.process.stdout
    if stdout is None:
        return
    with contextlib.suppress(Exception):
        while raw := await stdout.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            engine.extra_stdout.append(line)
            engine_log.warning("%s wrote to stdout after its handshake: %s", engine.target.name, line)
