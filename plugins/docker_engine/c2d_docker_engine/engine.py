"""The ComputeEngineService of the docker engine: every RPC of the engine protocol.

Each RPC is a thin layer over the job store, the job drivers and the daemon:
it checks the plugin is configured, maps the request, and turns
:class:`EngineError` into a gRPC status. Anything unexpected is logged and
answered with a short INTERNAL, so no Python traceback crosses the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import grpc
import structlog

import c2d_docker_engine
from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit_fingerprint
from c2d.plugin.kit import streams
from c2d.plugin.kit.health import HealthTracker
from c2d.plugin.kit.rpc import streaming, unary
from c2d.plugin.kit.servicer import DrivenEngine, find_environment
from c2d.plugin.kit.values import settings_from_struct
from c2d_docker_engine import detect, drm, fingerprint, gpus, logs, podimage, pullauth, retention, volumes
from c2d_docker_engine.config import (
    DockerSettings,
    EnvironmentConfig,
    MachineSize,
    parse_settings,
    resolve,
)
from c2d_docker_engine.containers import ALGORITHM, ROLES, container_name
from c2d_docker_engine.daemon import Daemon, describe, is_connection_error
from c2d_docker_engine.driver import JobDriver, Runtime, remove_job_containers
from c2d_docker_engine.drivers import Drivers
from c2d_docker_engine.errors import EngineError, unavailable
from c2d_docker_engine.grant import Grant, choose_cores
from c2d_docker_engine.jobdir import JobDir, Record
from c2d_docker_engine.jobspec import ImageRef, build_spec
from c2d_docker_engine.store import JobStore

NAME = "docker"
API_VERSIONS = (1,)
WATCH_WAKE_SECONDS = 0.5
DESTROY_JOIN_SECONDS = 15.0

log = structlog.get_logger("c2d_docker_engine.engine")


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
    machine: MachineSize  # what the environments were resolved from: the pool they share
    measured_with_daemon: bool
    store: JobStore
    runtime: Runtime
    retention: retention.Retention

    def environment(self, environment_id: str) -> EnvironmentConfig:
        return find_environment(self.environments, environment_id)


class EngineServicer(DrivenEngine[JobDir]):
    engine_name = NAME
    plugin_version = c2d_docker_engine.__version__
    description = (c2d_docker_engine.__doc__ or "").strip().splitlines()[0]
    api_versions = API_VERSIONS
    credentials: pullauth.JobCredentials  # the jobs' own registry credentials, in memory only

    def __init__(self) -> None:
        super().__init__()
        self._configured: Configured | None = None
        self._drivers: Drivers = Drivers()
        self._gpus: tuple[gpus.Gpu, ...] | None = None
        self._gpus_found_with: drm.SysfsSettings | None = None
        self._pod_image = podimage.PodImageCheck()
        self._pod_image_warned: str | None = None
        self.credentials = pullauth.JobCredentials()  # kept across Configure: running drivers use it

    def shutdown(self) -> None:
        super().shutdown()
        if self._configured is not None:
            self._configured.retention.stop()

    def unreachable(self, exc: Exception) -> str | None:
        """A call that failed because the daemon is away answers UNAVAILABLE, saying so."""
        return f"the Docker engine does not answer: {describe(exc)}" if is_connection_error(exc) else None

    def ensure_driver(self, ready: Configured, job: JobDir, record: Record) -> None:
        self._drivers.ensure(job, lambda: JobDriver(ready.runtime, job, record), ready.runtime.changed)

    def handle_details(self, job: JobDir, record: Record) -> dict[str, str]:
        return {"containers": "c2d-<job_id>-{configuration,algorithm,publishing}"}

    def backend(self, ready: Configured) -> HealthTracker:
        return ready.daemon

    # Plugin ------------------------------------------------------------------------

    @unary
    def Configure(self, request: engine_pb2.ConfigureRequest, context: grpc.ServicerContext) -> Any:
        api_version = self.negotiate(request)
        settings = parse_settings(settings_from_struct(request.config))
        if settings.ignored_keys:
            log.warning("unknown config keys ignored", keys=list(settings.ignored_keys))
        state_dir = self.state_dir(request, detect.default_state_dir())
        with self._lock:
            previous = self._configured
            daemon = self._daemon_for(settings, previous)
            daemon.check()
            if self._gpus is None or self._gpus_found_with != settings.gpu_sysfs:
                self._gpus = detect.machine_gpus(settings)
                self._gpus_found_with = settings.gpu_sysfs
            disk_quota = (
                previous.disk_quota
                if previous is not None
                and previous.state_dir == state_dir
                and previous.settings.disk_quota == settings.disk_quota
                else detect.disk_quota_mode(settings, state_dir)
            )
            store = self.open_store(
                JobStore(state_dir / "jobs", request.host_id), previous, request.host_id, state_dir
            )
            pod_image = detect.pod_image(settings)
            image_record = (
                previous.runtime.images
                if previous is not None and previous.state_dir == state_dir and previous.runtime.images
                else retention.ImageRecord(state_dir)  # one record (and lock) per state dir
            )
            machine = daemon.measure(state_dir, self._gpus)
            configured = Configured(
                api_version=api_version,
                host_id=request.host_id,
                state_dir=state_dir,
                settings=settings,
                daemon=daemon,
                disk_quota=disk_quota,
                pod_image=pod_image,
                environments=resolve(settings, machine),
                machine=machine,
                measured_with_daemon=daemon.healthy,
                store=store,
                runtime=Runtime(
                    daemon, settings, request.host_id, self._changes.bump, self.credentials, image_record
                ),
                retention=retention.Retention(
                    image_record,
                    retention.Policy(settings.image_retention_days, settings.image_retention_check_seconds),
                    daemon,
                    lambda: images_in_use(store),
                    pod_image,
                ),
            )
            self._configured = configured
            if previous is not None:
                previous.retention.stop()
        self.resume(configured)
        configured.retention.start()
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
            configured.machine = configured.daemon.measure(configured.state_dir, self._gpus)
            configured.environments = resolve(configured.settings, configured.machine)
            configured.measured_with_daemon = True
        self._changes.bump()

    def fingerprint(self) -> engine_pb2.Fingerprint:
        ready = self._ready()
        caps = fingerprint.capabilities(
            detect.advertised_quota(ready.disk_quota), ready.environments, ready.pod_image is not None
        )
        extra = {"docker": ready.daemon.address, "pod_image": ready.pod_image or ""}
        health = ready.daemon.state
        pool = fingerprint.pool(ready.machine, ready.environments)
        built = kit_fingerprint.build(
            health,
            ready.environments,
            self._drivers.usage(),
            lambda env, used: fingerprint.environment(env, used, health.health, extra, pool),
            caps,
            self._draining,
        )
        if built.health == common_pb2.ENGINE_HEALTH_HEALTHY:
            note = self._pod_image.missing_note(ready.daemon.client, ready.pod_image)
            if note:
                if note != self._pod_image_warned:
                    log.warning("pod image missing", image=ready.pod_image, hint=podimage.BUILD_HINT)
                    self._pod_image_warned = note
                built.health_description = f"{built.health_description}; {note}"
        return built

    # Jobs --------------------------------------------------------------------------

    def admit(self, ready: Configured, spec: engine_pb2.JobSpec) -> Record:
        env = ready.environment(spec.environment_id)
        record = build_spec(spec, ready.settings, env, ready.host_id, ready.disk_quota, ready.pod_image)
        problem = ready.daemon.problem()
        if problem is not None:
            raise unavailable(problem)
        if env.cpu_pinning:
            grant = Grant.from_json(record["grant"])
            record["cpuset"] = choose_cores(env.cpus, grant.cpu, self._drivers.busy_cores(env.id))
        if spec.HasField("registry_auth"):
            self.credentials.keep(
                spec.job_id, spec.registry_auth, ImageRef.from_json(record["image"]).repository
            )
            record[pullauth.RECORD_KEY] = True
        return record

    def stop_running(self, ready: Configured, job: JobDir, record: Record, grace_seconds: int) -> None:
        for driver in self._drivers.active():
            if driver.job.job_id == job.job_id:
                driver.stop_build()
        self._stop_containers(ready, job.job_id, grace_seconds)

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

    @unary
    def DestroyJob(self, request: engine_pb2.DestroyJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        if not request.job_id:
            return engine_pb2.DestroyJobResponse()
        self.credentials.forget(request.job_id)
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
        summaries = streams.summaries(ready.store.jobs())
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


def images_in_use(store: JobStore) -> set[str]:
    """The algorithm images of the jobs that have not ended: being pulled, run, or still to run."""
    return {
        str((record.get("image") or {}).get("reference", ""))
        for job, record in store.jobs()
        if not job.is_ended()
    }
