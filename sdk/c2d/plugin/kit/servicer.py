"""The RPCs every engine answers alike, so each engine writes only what is its own.

:class:`EngineBase` answers GetPluginInfo, WatchFingerprint and Drain, and
helps Configure (the API version, the state dir); an engine sets its name,
version and API versions and builds its fingerprint. :class:`DrivenEngine`
adds RecoverJob and WatchJob for engines whose jobs are job directories
driven by threads of the plugin (a container engine, a cluster): they
implement Configure, StartJob, StopJob, DestroyJob, ListJobs and
StreamJobLogs, and the hooks (their driver, their job handles).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import grpc
import structlog

from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin.kit import events, handles, pullcreds, streams
from c2d.plugin.kit.changes import Changes
from c2d.plugin.kit.drivers import Drivers
from c2d.plugin.kit.errors import EngineError, invalid, unavailable
from c2d.plugin.kit.health import HealthTracker
from c2d.plugin.kit.jobdir import JobDir, Record
from c2d.plugin.kit.jobspec import ImageRef, check_job_id
from c2d.plugin.kit.rpc import streaming, unary
from c2d.quoting import quoted

WAKE_SECONDS = 1.0
WATCH_WAKE_SECONDS = 0.5
# StopJob waits this long past the grace period for the job to end.
STOP_SLACK_SECONDS = 10.0
log = structlog.get_logger("c2d.plugin.kit.servicer")


class HasId(Protocol):
    @property
    def id(self) -> str: ...


Env = TypeVar("Env", bound=HasId)
# The engine's job directory: the kit's, or an engine's subclass of it with its own folders.
Job = TypeVar("Job", bound=JobDir)


def find_environment(environments: tuple[Env, ...], environment_id: str) -> Env:
    """The environment with this id; INVALID_ARGUMENT naming the ones there are."""
    env = next((e for e in environments if e.id == environment_id), None)
    if env is None:
        known = ", ".join(e.id for e in environments) or "none"
        raise invalid(f"unknown environment {quoted(environment_id)} (this engine has: {known})")
    return env


class EngineBase(engine_pb2_grpc.ComputeEngineServiceServicer):
    engine_name = ""
    plugin_version = ""
    description = ""
    api_versions: tuple[int, ...] = (1,)

    def __init__(self) -> None:
        self._configured: Any = None
        self._draining = False
        self._lock = threading.Lock()
        self._changes = Changes()

    # Hooks -------------------------------------------------------------------------

    def unreachable(self, exc: Exception) -> str | None:
        """Why a failed call failed when the engine's backend could not be reached, else None."""
        return None

    def fingerprint(self) -> engine_pb2.Fingerprint:
        raise NotImplementedError

    # Helpers for the engine's own RPCs ---------------------------------------------

    def _ready(self) -> Any:
        configured = self._configured
        if configured is None:
            raise EngineError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{self.engine_name} is not configured yet: call Configure",
            )
        return configured

    def negotiate(self, request: engine_pb2.ConfigureRequest) -> int:
        """Configure's API version; INVALID_ARGUMENT for one this engine does not speak."""
        api_version = request.api_version or max(self.api_versions)
        if api_version not in self.api_versions:
            raise invalid(
                f"engine API version {api_version} is not one {self.engine_name} speaks ({list(self.api_versions)})"
            )
        return api_version

    def state_dir(self, request: engine_pb2.ConfigureRequest, default: Path) -> Path:
        """Configure's state dir (``default`` when the node sends none), with its ``jobs`` folder made."""
        state_dir = Path(request.state_dir or default).resolve()
        try:
            (state_dir / "jobs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(
                grpc.StatusCode.FAILED_PRECONDITION, f"cannot use state dir {str(state_dir)!r}: {exc}"
            ) from None
        return state_dir

    # RPCs --------------------------------------------------------------------------

    @unary
    def GetPluginInfo(self, request: engine_pb2.GetPluginInfoRequest, context: grpc.ServicerContext) -> Any:
        return engine_pb2.GetPluginInfoResponse(
            name=self.engine_name,
            plugin_version=self.plugin_version,
            api_versions=list(self.api_versions),
            description=self.description,
        )

    @streaming
    def WatchFingerprint(
        self, request: engine_pb2.WatchFingerprintRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.WatchFingerprintResponse]:
        self._ready()
        yield from streams.fingerprints(self.fingerprint, self._changes, context, WAKE_SECONDS)

    @unary
    def Drain(self, request: engine_pb2.DrainRequest, context: grpc.ServicerContext) -> Any:
        if not self._draining:
            self._draining = True
            self._changes.bump()
            log.info("draining: no new jobs", engine=self.engine_name)
        return engine_pb2.DrainResponse()


class DrivenEngine(EngineBase, Generic[Job]):
    """An engine whose jobs are job directories (a store) and driver threads that outlive nothing but
    the plugin: a new plugin process resumes every job that has not ended.

    Generic in the engine's job directory type, so the hooks of an engine take its own."""

    _drivers: Drivers[Any]
    # The jobs' own registry credentials (in memory only), for an engine that pulls with them.
    credentials: pullcreds.JobCredentials | None = None

    # Hooks -------------------------------------------------------------------------

    def ensure_driver(self, ready: Any, job: Job, record: Record) -> None:
        """Starts the job's driver unless one runs already (or the job has ended)."""
        raise NotImplementedError

    def handle_details(self, job: Job, record: Record) -> dict[str, str]:
        """What the job's handle names besides the job, for people reading the node's database."""
        return {}

    def backend(self, ready: Any) -> HealthTracker:
        """The backend whose monitor stops with the plugin."""
        raise NotImplementedError

    def encode_handle(self, job: Job, record: Record) -> engine_pb2.JobHandle:
        return handles.encode(job.job_id, job.path, record, **self.handle_details(job, record))

    def decode_handle(self, handle: engine_pb2.JobHandle) -> str:
        """The job id a handle names; INVALID_ARGUMENT for a handle this plugin did not make."""
        try:
            return handles.decode(handle, f"the {self.engine_name} engine")
        except handles.HandleError as exc:
            raise invalid(str(exc)) from None

    def admit(self, ready: Any, spec: engine_pb2.JobSpec) -> Record:
        """StartJob's new job: the checked spec as the job's record; UNAVAILABLE when no job can run now."""
        raise NotImplementedError

    def stop_running(self, ready: Any, job: Job, record: Record, grace_seconds: int) -> None:
        """StopJob: SIGTERM, grace, SIGKILL to what the job runs; its driver sees the stop."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """SIGTERM: the drivers stop writing; the jobs run on and a new plugin picks them up."""
        self._drivers.stop_all()
        if self._configured is not None:
            self.backend(self._configured).stop_monitor()

    def open_store(self, store: Any, previous: Any, host_id: str, state_dir: Path) -> Any:
        """Configure's job store, swept of half-made folders; drivers of another node or state dir forgotten."""
        store.sweep()
        if previous is not None and (previous.host_id, previous.state_dir) != (host_id, state_dir):
            self._drivers.reset()
        return store

    def existing(self, ready: Any, job: Job, record: Record) -> engine_pb2.JobHandle:
        """StartJob for a job id already here: its handle; nothing runs twice."""
        if record.get("host_id") != ready.host_id:
            raise EngineError(
                grpc.StatusCode.ALREADY_EXISTS, f"job id {quoted(job.job_id)} belongs to another node"
            )
        self.ensure_driver(ready, job, record)
        return self.encode_handle(job, record)

    def resume(self, ready: Any) -> None:
        """Every job that has not ended gets its driver back: jobs carry on after a plugin restart."""
        for job, record in ready.store.jobs():
            if not job.is_ended():
                self.ensure_driver(ready, job, record)

    # RPCs --------------------------------------------------------------------------

    @unary
    def RecoverJob(self, request: engine_pb2.RecoverJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        job, record = ready.store.get(self.decode_handle(request.handle))
        self.recover_credentials(job, record, request)
        self.ensure_driver(ready, job, record)
        last = job.last_event()
        event = events.not_started(job.job_id) if last is None else events.to_proto(job.job_id, last)
        return engine_pb2.RecoverJobResponse(handle=self.encode_handle(job, record), last_event=event)

    def recover_credentials(self, job: Job, record: Record, request: engine_pb2.RecoverJobRequest) -> None:
        """A job that came with registry credentials gets them back from RecoverJob (this plugin may
        have restarted and lost them); without them there, its driver stops waiting and pulls without."""
        if self.credentials is None or not record.get(pullcreds.RECORD_KEY) or job.is_ended():
            return
        if request.HasField("registry_auth"):
            image = ImageRef.from_json(record["image"]).repository
            self.credentials.keep(job.job_id, request.registry_auth, image)
        elif self.credentials.get(job.job_id) is None:
            self.credentials.decline(job.job_id)

    @streaming
    def WatchJob(
        self, request: engine_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.WatchJobResponse]:
        ready = self._ready()
        job, _ = ready.store.get(request.job_id)
        yield from streams.job_events(job, request.after_sequence, self._changes, context, WATCH_WAKE_SECONDS)

    @unary
    def StartJob(self, request: engine_pb2.StartJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        spec = request.spec
        check_job_id(spec.job_id)
        with self._lock:
            found = ready.store.find(spec.job_id)
            if found is not None:
                return engine_pb2.StartJobResponse(handle=self.existing(ready, *found))
            if self._draining:
                raise unavailable(f"{self.engine_name} is draining: it takes no new jobs")
            record = self.admit(ready, spec)
            job = ready.store.create(record)
            self.ensure_driver(ready, job, record)
        log.info(
            "job accepted",
            job_id=job.job_id,
            environment=record.get("environment_id"),
            image=(record.get("image") or {}).get("reference"),
        )
        return engine_pb2.StartJobResponse(handle=self.encode_handle(job, record))

    @unary
    def StopJob(self, request: engine_pb2.StopJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        found = ready.store.lookup(request.job_id) if request.job_id else None
        if found is None or found[0].is_ended():
            return engine_pb2.StopJobResponse()
        job, record = found
        job.request_stop(request.grace_seconds, request.reason or "stop requested")
        log.info("job stop requested", job_id=job.job_id, grace_seconds=request.grace_seconds)
        self.stop_running(ready, job, record, request.grace_seconds)
        self.ensure_driver(ready, job, record)
        wait = streams.stop_wait(request.grace_seconds, STOP_SLACK_SECONDS, context)
        streams.wait_ended(job, self._changes, wait, WATCH_WAKE_SECONDS)
        return engine_pb2.StopJobResponse()
