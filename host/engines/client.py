"""The host's client of one engine plugin: every job call the host makes to an engine goes through here.

Modelled on Nomad's ``driverPluginClient`` and Dagster's ``_grpc`` client: the
raw gRPC stub stays inside this module; callers get typed methods, each with
its own deadline, and domain errors instead of ``grpc.aio.AioRpcError``:

- :class:`EngineRefused`: the engine will not do it as asked (INVALID_ARGUMENT,
  FAILED_PRECONDITION); asking again the same way is pointless.
- :class:`JobNotFound`: the engine has no such job (NOT_FOUND).
- :class:`EngineUnavailable`: anything else (the plugin is down or restarting,
  hung past the deadline, failed inside); the same call may work later.

Every mutating call of the engine protocol is idempotent on the job id, so a
caller that does not know whether a call went through (a timeout, a node
killed mid-call) simply makes it again; each method says what a repeat does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import grpc

from c2d.engine.v1 import engine_pb2, engine_pb2_grpc

START_TIMEOUT_SECONDS = 30.0  # an engine may pull an image or create volumes before it answers
CALL_TIMEOUT_SECONDS = 30.0
STOP_EXTRA_SECONDS = 30.0  # on top of the grace the job gets between SIGTERM and SIGKILL
DRAIN_TIMEOUT_SECONDS = 2.0  # the node is stopping: it does not wait long for a polite answer

_REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION})


class EngineError(Exception):
    """An engine call that did not succeed; ``code`` is the gRPC status the engine (or the channel) gave."""

    def __init__(self, engine: str, call: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{engine} {call}: {code.name}: {details}")
        self.engine = engine
        self.call = call
        self.code = code
        self.details = details


class EngineRefused(EngineError):
    """The engine will not do it as asked (a spec it cannot run, a state it cannot act in)."""


class JobNotFound(EngineError):
    """The engine has no job by that id (never started, or destroyed)."""


class EngineUnavailable(EngineError):
    """The engine could not answer (down, restarting, past the deadline, failed inside): try later."""


def engine_error(engine: str, call: str, exc: grpc.aio.AioRpcError) -> EngineError:
    """The domain error for a failed call."""
    code = exc.code()
    details = exc.details() or code.name.lower()
    if code in _REFUSALS:
        return EngineRefused(engine, call, code, details)
    if code == grpc.StatusCode.NOT_FOUND:
        return JobNotFound(engine, call, code, details)
    return EngineUnavailable(engine, call, code, details)


@dataclass(frozen=True)
class RecoveredJob:
    handle: engine_pb2.JobHandle  # possibly updated by the engine: store it
    last_event: engine_pb2.JobEvent | None


@dataclass(frozen=True)
class LogChunk:
    offset: int  # of data's first byte in the algorithm's log
    data: bytes


class EngineClient:
    """The job calls of one engine plugin process, over its channel (owned by the supervisor)."""

    def __init__(self, channel: grpc.aio.Channel, engine: str) -> None:
        self.engine = engine
        self._stub = engine_pb2_grpc.ComputeEngineServiceStub(channel)

    def _error(self, call: str, exc: grpc.aio.AioRpcError) -> EngineError:
        return engine_error(self.engine, call, exc)

    async def start_job(self, spec: engine_pb2.JobSpec) -> engine_pb2.JobHandle:
        """Starts the job and returns its handle.

        Idempotent: a second call with the same job id returns the same handle and starts nothing,
        so a start whose answer was lost is simply made again.
        """
        try:
            reply = await self._stub.StartJob(
                engine_pb2.StartJobRequest(spec=spec), timeout=START_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            raise self._error("StartJob", exc) from None
        return reply.handle

    async def recover_job(
        self, handle: engine_pb2.JobHandle, registry_auth: engine_pb2.RegistryAuth | None = None
    ) -> RecoveredJob:
        """Re-attaches to a job from its stored handle after either side restarted; ``registry_auth``
        hands the job's own registry credentials over again (an engine keeps them in memory only).

        Idempotent and safe to repeat; :class:`JobNotFound` when the engine no longer has the job.
        """
        request = engine_pb2.RecoverJobRequest(handle=handle)
        if registry_auth is not None:
            request.registry_auth.CopyFrom(registry_auth)
        try:
            reply = await self._stub.RecoverJob(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            raise self._error("RecoverJob", exc) from None
        return RecoveredJob(reply.handle, reply.last_event if reply.HasField("last_event") else None)

    async def watch_job(
        self, job_id: str, after_sequence: int = 0
    ) -> AsyncGenerator[engine_pb2.JobEvent, None]:
        """The job's events with a sequence above ``after_sequence``, until its terminal one.

        Read-only, so it may be repeated at will: watching again from the last applied sequence
        replays exactly what was missed. No deadline (a job runs as long as it runs); close the
        iterator (``contextlib.aclosing``) to stop watching, which cancels the stream.
        """
        call = self._stub.WatchJob(engine_pb2.WatchJobRequest(job_id=job_id, after_sequence=after_sequence))
        try:
            async for reply in call:
                yield reply.event
        except grpc.aio.AioRpcError as exc:
            raise self._error("WatchJob", exc) from None
        finally:
            call.cancel()

    async def stop_job(self, job_id: str, *, grace_seconds: int, reason: str) -> None:
        """Asks the engine to stop the job (SIGTERM, ``grace_seconds``, SIGKILL); its end comes as an event.

        Idempotent: stopping a job that is stopping or has ended is not an error.
        """
        request = engine_pb2.StopJobRequest(job_id=job_id, grace_seconds=grace_seconds, reason=reason)
        try:
            await self._stub.StopJob(request, timeout=grace_seconds + STOP_EXTRA_SECONDS)
        except grpc.aio.AioRpcError as exc:
            raise self._error("StopJob", exc) from None

    async def destroy_job(self, job_id: str) -> None:
        """Removes everything the job left on the engine.

        Idempotent: destroying a job already destroyed (or never started) is not an error.
        """
        try:
            await self._stub.DestroyJob(
                engine_pb2.DestroyJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            raise self._error("DestroyJob", exc) from None

    async def list_jobs(self) -> list[engine_pb2.JobSummary]:
        """The jobs the engine holds for this node (running, ended, not yet destroyed). Read-only."""
        try:
            reply = await self._stub.ListJobs(engine_pb2.ListJobsRequest(), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            raise self._error("ListJobs", exc) from None
        return list(reply.jobs)

    async def stream_logs(
        self, job_id: str, *, offset: int = 0, follow: bool = False
    ) -> AsyncGenerator[LogChunk, None]:
        """The algorithm's log from byte ``offset`` on; with ``follow``, as it is written until the job ends.

        Read-only and resumable: ask again from the offset received so far. A followed stream has
        no deadline; a one-off read has :data:`CALL_TIMEOUT_SECONDS`. Close the iterator to cancel it.
        """
        request = engine_pb2.StreamJobLogsRequest(job_id=job_id, follow=follow, offset=offset)
        call = self._stub.StreamJobLogs(request, timeout=None if follow else CALL_TIMEOUT_SECONDS)
        try:
            async for reply in call:
                yield LogChunk(reply.offset, reply.data)
        except grpc.aio.AioRpcError as exc:
            raise self._error("StreamJobLogs", exc) from None
        finally:
            call.cancel()

    async def drain(self) -> None:
        """Asks the plugin to take no new jobs: the node is about to stop it. Idempotent."""
        try:
            await self._stub.Drain(engine_pb2.DrainRequest(), timeout=DRAIN_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            raise self._error("Drain", exc) from None
