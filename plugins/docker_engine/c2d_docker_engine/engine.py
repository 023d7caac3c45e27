"""The ComputeEngineService of the docker engine: every RPC of the engine protocol.

Each RPC is a thin layer over the job store, the job drivers and the daemon:
it checks the plugin is configured, maps the request, and turns
:class:`EngineError` into a gRPC status. Anything unexpected is logged and
answered with a short INTERNAL, so no Python traceback crosses the wire.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import grpc
import structlog

import c2d_docker_engine
from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin.kit import events
from c2d.plugin.kit.changes import Changes
from c2d_docker_engine import detect, fingerprint, gpus, handle, logs, podimage, volumes
from c2d_docker_engine.config import (
    DockerSettings,
    EnvironmentConfig,
    parse_settings,
    resolve,
    settings_from_struct,
)
from c2d_docker_engine.containers import ALGORITHM, ROLES, container_name
from c2d_docker_engine.daemon import Daemon, describe, is_connection_error
from c2d_docker_engine.driver import Runtime, remove_job_containers
from c2d_docker_engine.drivers import Drivers
from c2d_docker_engine.errors import EngineError, invalid, unavailable
from c2d_docker_engine.grant import Grant, choose_cores
from c2d_docker_engine.jobdir import EventTail, JobDir, Record
from c2d_docker_engine.jobspec import build_spec, check_job_id
from c2d_docker_engine.store import JobStore

NAME = "docker"
API_VERSIONS = (1,)
WAKE_SECONDS = 1.0
WATCH_WAKE_SECONDS = 0.5
STOP_SLACK_SECONDS = 10.0
DESTROY_JOIN_SECONDS = 15.0

log = structlog.get_logger("c2d_docker_engine.engine")


def unary(method: Callable[..., Any]) -> Callable[..., Any]:
    """Maps EngineError (and any bug) of a unary RPC to a status code and a message."""

    @functools.wraps(method)
    def wrapper(self: EngineServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except EngineError as exc:
            context.abort(exc.code, exc.message)
        except Exception as exc:
            if is_connection_error(exc):
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"the Docker engine does not answer: {describe(exc)}"
                )
            log.exception("rpc failed", rpc=method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"{NAME}: internal error in {method.__name__}; see its log"
            )

    return wrapper


def streaming(method: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """The same for server-streaming RPCs, whose errors surface while iterating."""

    @functools.wraps(method)
    def wrapper(self: EngineServicer, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except EngineError as exc:
            context.abort(exc.code, exc.message)
        except Exception as exc:
            if is_connection_error(exc):
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"the Docker engine does not answer: {describe(exc)}"
                )
            log.exception("rpc failed", rpc=method.__name__)
            context.abort(
                grpc.StatusCode.INTERNAL, f"{NAME}: internal error in {method.__name__}; see its log"
            )

    return wrapper


@dataclass
class Configured:
    """What Configure settled: until it has run, job calls fail with FAILED_PRECONDITION."""

    api_version: int
    host_id: str
    state_dir: Path
    settings: DockerSettings
    daemon: Daemon
    disk_quota: str
    pod_image: str | None
    environments: tuple[EnvironmentConfig, ...]
    measured_with_daemon: bool
    store: JobStore
    runtime: Runtime

    def environment(self, environment_id: str) -> EnvironmentConfig:
        env = next((e for e in self.environments if e.id == environment_id), None)
        if env is None:
            known = ", ".join(e.id for e in self.environments) or "none"
            raise invalid(f"unknown environment {environment_id!r} (this engine has: {known})")
        return env


class EngineServicer(engine_pb2_grpc.ComputeEngineServiceServicer):
    def __init__(self) -> None:
        self._configured: Configured | None = None
        self._draining = False
        self._lock = threading.Lock()
        self._changes = Changes()
        self._drivers = Drivers()
        self._gpus: tuple[gpus.Gpu, ...] | None = None
        self._pod_image = podimage.PodImageCheck()
        self._pod_image_warned: str | None = None

    def _ready(self) -> Configured:
        configured = self._configured
        if configured is None:
            raise EngineError(
                grpc.StatusCode.FAILED_PRECONDITION, f"{NAME} is not configured yet: call Configure"
            )
        return configured

    def shutdown(self) -> None:
        """SIGTERM: the drivers stop writing; the containers run on and a new plugin picks them up."""
        self._drivers.stop_all()
        if self._configured is not None:
            self._configured.daemon.stop_monitor()

    # Plugin ------------------------------------------------------------------------

    @unary
    def GetPluginInfo(self, request: engine_pb2.GetPluginInfoRequest, context: grpc.ServicerContext) -> Any:
        return engine_pb2.GetPluginInfoResponse(
            name=NAME,
            plugin_version=c2d_docker_engine.__version__,
            api_versions=list(API_VERSIONS),
            description=(c2d_docker_engine.__doc__ or "").strip().splitlines()[0],
        )

    @unary
    def Configure(self, request: engine_pb2.ConfigureRequest, context: grpc.ServicerContext) -> Any:
        api_version = request.api_version or max(API_VERSIONS)
        if api_version not in API_VERSIONS:
            raise invalid(f"engine API version {api_version} is not one {NAME} speaks ({list(API_VERSIONS)})")
        settings = parse_settings(settings_from_struct(request.config))
        if settings.ignored_keys:
            log.warning("unknown config keys ignored", keys=list(settings.ignored_keys))
        state_dir = Path(request.state_dir or detect.default_state_dir()).resolve()
        try:
            (state_dir / "jobs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(
                grpc.StatusCode.FAILED_PRECONDITION, f"cannot use state dir {str(state_dir)!r}: {exc}"
            ) from None
        with self._lock:
            previous = self._configured
            daemon = self._daemon_for(settings, previous)
            daemon.check()
            if self._gpus is None:
                self._gpus = gpus.detect()
            disk_quota = (
                previous.disk_quota
                if previous is not None
                and previous.state_dir == state_dir
                and previous.settings.disk_quota == settings.disk_quota
                else detect.disk_quota_mode(settings, state_dir)
            )
            store = JobStore(state_dir / "jobs", request.host_id)
            store.sweep()
            if previous is not None and (previous.host_id, previous.state_dir) != (
                request.host_id,
                state_dir,
            ):
                self._drivers.reset()
            configured = Configured(
                api_version=api_version,
                host_id=request.host_id,
                state_dir=state_dir,
                settings=settings,
                daemon=daemon,
                disk_quota=disk_quota,
                pod_image=detect.pod_image(settings),
                environments=resolve(settings, daemon.measure(state_dir, self._gpus)),
                measured_with_daemon=daemon.healthy,
                store=store,
                runtime=Runtime(daemon, settings, request.host_id, self._changes.bump),
            )
            self._configured = configured
        self._resume(configured)
        daemon.start_monitor()
        self._changes.bump()
        log.info(
            "configured",
            state_dir=str(state_dir),
            docker=daemon.address,
            health=common_pb2.EngineHealth.Name(daemon.state.health),
            disk_quota=disk_quota,
            pod_image=configured.pod_image,
            environments=[e.id for e in configured.environments],
        )
        return engine_pb2.ConfigureResponse()

    def _daemon_for(self, settings: DockerSettings, previous: Configured | None) -> Daemon:
        if previous is not None and previous.daemon.docker_host == settings.docker_host:
            return previous.daemon
        if previous is not None:
            previous.daemon.stop_monitor()
        daemon = Daemon(settings.docker_host)
        daemon.on_change(self._daemon_changed)
        return daemon

    def _daemon_changed(self) -> None:
        """Health changed: re-size the environments if they were sized without the daemon, and tell the node."""
        configured = self._configured
        if configured is not None and configured.daemon.healthy and not configured.measured_with_daemon:
            assert self._gpus is not None
            configured.environments = resolve(
                configured.settings, configured.daemon.measure(configured.state_dir, self._gpus)
            )
            configured.measured_with_daemon = True
        self._changes.bump()

    def _resume(self, configured: Configured) -> None:
        """Every job that has not ended gets its driver back: jobs carry on after a plugin restart."""
        for job, record in configured.store.jobs():
            if not job.is_ended():
                self._drivers.ensure(configured.runtime, job, record)

    @streaming
    def WatchFingerprint(
        self, request: engine_pb2.WatchFingerprintRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.WatchFingerprintResponse]:
        self._ready()
        seen: int | None = None
        sent: engine_pb2.Fingerprint | None = None
        while context.is_active():
            version = self._changes.version
            if version != seen:
                seen = version
                current = self._fingerprint()
                if current != sent:
                    sent = current
                    yield engine_pb2.WatchFingerprintResponse(fingerprint=current)
            self._changes.wait(seen, WAKE_SECONDS)

    def _fingerprint(self) -> engine_pb2.Fingerprint:
        ready = self._ready()
        caps = fingerprint.capabilities(
            detect.advertised_quota(ready.disk_quota), ready.environments, ready.pod_image is not None
        )
        extra = {"docker": ready.daemon.address, "pod_image": ready.pod_image or ""}
        built = fingerprint.build(
            ready.daemon.state, ready.environments, self._drivers.usage(), caps, self._draining, extra
        )
        if built.health == common_pb2.ENGINE_HEALTH_HEALTHY:
            note = self._pod_image.missing_note(ready.daemon.client, ready.pod_image)
            if note:
                if note != self._pod_image_warned:
                    log.warning("pod image missing", image=ready.pod_image, hint=podimage.BUILD_HINT)
                    self._pod_image_warned = note
                built.health_description = f"{built.health_description}; {note}"
        return built

    @unary
    def Drain(self, request: engine_pb2.DrainRequest, context: grpc.ServicerContext) -> Any:
        if not self._draining:
            self._draining = True
            self._changes.bump()
            log.info("draining: no new jobs")
        return engine_pb2.DrainResponse()

    # Jobs --------------------------------------------------------------------------

    @unary
    def StartJob(self, request: engine_pb2.StartJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        spec = request.spec
        check_job_id(spec.job_id)
        with self._lock:
            found = ready.store.find(spec.job_id)
            if found is not None:
                return engine_pb2.StartJobResponse(handle=self._existing(ready, *found))
            if self._draining:
                raise unavailable(f"{NAME} is draining: it takes no new jobs")
            env = ready.environment(spec.environment_id)
            record = build_spec(spec, ready.settings, env, ready.host_id, ready.disk_quota, ready.pod_image)
            problem = ready.daemon.problem()
            if problem is not None:
                raise unavailable(problem)
            if env.cpu_pinning:
                grant = Grant.from_json(record["grant"])
                record["cpuset"] = choose_cores(env.cpus, grant.cpu, self._drivers.busy_cores(env.id))
            job = ready.store.create(record)
            self._drivers.ensure(ready.runtime, job, record)
        log.info("job accepted", job_id=job.job_id, environment=env.id, image=record["image"]["reference"])
        return engine_pb2.StartJobResponse(handle=handle.encode(job, record))

    def _existing(self, ready: Configured, job: JobDir, record: Record) -> engine_pb2.JobHandle:
        """StartJob for a job id already here: its handle; nothing runs twice."""
        if record.get("host_id") != ready.host_id:
            raise EngineError(
                grpc.StatusCode.ALREADY_EXISTS, f"job id {job.job_id!r} belongs to another node"
            )
        self._drivers.ensure(ready.runtime, job, record)
        return handle.encode(job, record)

    @unary
    def RecoverJob(self, request: engine_pb2.RecoverJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        job, record = ready.store.get(handle.decode(request.handle))
        self._drivers.ensure(ready.runtime, job, record)
        last = job.last_event()
        event = events.not_started(job.job_id) if last is None else events.to_proto(job.job_id, last)
        return engine_pb2.RecoverJobResponse(handle=handle.encode(job, record), last_event=event)

    @streaming
    def WatchJob(
        self, request: engine_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.WatchJobResponse]:
        ready = self._ready()
        job, _ = ready.store.get(request.job_id)
        tail = EventTail(job.events_path)
        while True:
            seen = self._changes.version
            for record in tail.read_new():
                if record["sequence"] > request.after_sequence:
                    yield engine_pb2.WatchJobResponse(event=events.to_proto(job.job_id, record))
                if record.get("terminal"):
                    return
            if not context.is_active():
                return
            if not job.exists():
                raise EngineError(grpc.StatusCode.NOT_FOUND, f"job {job.job_id!r} was destroyed")
            self._changes.wait(seen, WATCH_WAKE_SECONDS)

    @unary
    def StopJob(self, request: engine_pb2.StopJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        found = ready.store.lookup(request.job_id) if request.job_id else None
        if found is None or found[0].is_ended():
            return engine_pb2.StopJobResponse()
        job, record = found
        job.request_stop(request.grace_seconds, request.reason or "stop requested")
        log.info("job stop requested", job_id=job.job_id, grace_seconds=request.grace_seconds)
        self._stop_containers(ready, job.job_id, request.grace_seconds)
        self._drivers.ensure(ready.runtime, job, record)
        wait = request.grace_seconds + STOP_SLACK_SECONDS
        remaining = context.time_remaining()
        if remaining is not None:
            wait = min(wait, max(0.0, remaining - 0.5))
        self._wait_ended(job, wait)
        return engine_pb2.StopJobResponse()

    def _stop_containers(self, ready: Configured, job_id: str, grace: int) -> None:
        """SIGTERM, grace, SIGKILL to whichever of the job's containers runs; its driver sees the stop."""
        client = ready.daemon.client
        for role in ROLES:
            try:
                container = client.containers.get(container_name(job_id, role))
                if container.status == "running":
                    container.stop(timeout=grace)
            except docker.errors.NotFound:
                continue

    def _wait_ended(self, job: JobDir, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not job.is_ended() and job.exists():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changes.wait(self._changes.version, min(remaining, WATCH_WAKE_SECONDS))

    @unary
    def DestroyJob(self, request: engine_pb2.DestroyJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        if not request.job_id:
            return engine_pb2.DestroyJobResponse()
        with self._lock:
            found = ready.store.lookup(request.job_id)
            if found is None:
                if ready.daemon.healthy and ready.store.remove_orphan(ready.daemon.client, request.job_id):
                    log.info("orphaned containers removed", job_id=request.job_id)
                return engine_pb2.DestroyJobResponse()
            job, _ = found
            if not job.is_ended():
                job.request_stop(0, "destroyed")
            driver = self._drivers.cancel(job.job_id)
            remove_job_containers(ready.daemon.client, job.job_id)  # ends a driver blocked in wait()
            if driver is not None:
                driver.join(DESTROY_JOIN_SECONDS)
            try:
                volumes.release(job)
            except volumes.VolumeError as exc:
                raise EngineError(
                    grpc.StatusCode.INTERNAL, f"cannot remove job {job.job_id!r}: {exc}"
                ) from None
            ready.store.remove(job)
        self._changes.bump()
        log.info("job destroyed", job_id=job.job_id)
        return engine_pb2.DestroyJobResponse()

    @unary
    def ListJobs(self, request: engine_pb2.ListJobsRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        summaries = []
        for job, record in ready.store.jobs():
            last = job.last_event() or {}
            summaries.append(
                engine_pb2.JobSummary(
                    job_id=job.job_id,
                    workflow_id=str(record.get("workflow_id", "")),
                    terminal=bool(last.get("terminal", False)),
                    status=events.status_of(last.get("status")),
                )
            )
        if ready.daemon.healthy:
            for job_id, workflow_id in sorted(ready.store.orphans(ready.daemon.client).items()):
                summaries.append(
                    engine_pb2.JobSummary(
                        job_id=job_id,
                        workflow_id=workflow_id,
                        terminal=True,
                        status=common_pb2.JOB_STATUS_LOST,
                    )
                )
        return engine_pb2.ListJobsResponse(jobs=summaries)

    @streaming
    def StreamJobLogs(
        self, request: engine_pb2.StreamJobLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.StreamJobLogsResponse]:
        ready = self._ready()
        job, _ = ready.store.get(request.job_id)
        offset = request.offset
        client = ready.daemon.new_client()
        try:
            while context.is_active():
                if job.log_path.exists() or job.is_ended() or not job.exists():
                    for data in logs.read_from(job.log_path, offset):
                        yield engine_pb2.StreamJobLogsResponse(data=data, offset=offset)
                        offset += len(data)
                    return
                seen = self._changes.version
                container = self._algorithm_container(client, job.job_id)
                if container is not None:
                    for data in logs.follow(container, offset, request.follow):
                        yield engine_pb2.StreamJobLogsResponse(data=data, offset=offset)
                        offset += len(data)
                if not request.follow:
                    return
                self._changes.wait(seen, WATCH_WAKE_SECONDS)
        finally:
            client.close()

    @staticmethod
    def _algorithm_container(client: docker.DockerClient, job_id: str) -> Any:
        try:
            return client.containers.get(container_name(job_id, ALGORITHM))
        except docker.errors.NotFound:
            return None
