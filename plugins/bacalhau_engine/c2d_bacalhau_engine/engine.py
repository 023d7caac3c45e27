"""The ComputeEngineService of the bacalhau engine: every RPC of the engine protocol.

Each RPC is a thin layer over the job store, the job drivers and the
orchestrator: it checks the plugin is configured, maps the request, and
turns :class:`EngineError` into a gRPC status (an orchestrator that does not
answer into UNAVAILABLE). Anything unexpected is logged and answered with a
short INTERNAL, so no Python traceback crosses the wire.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

import c2d_bacalhau_engine
from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit_fingerprint
from c2d.plugin.kit import logs, streams
from c2d.plugin.kit.drivers import Drivers
from c2d.plugin.kit.errors import EngineError, precondition, unavailable, undetected
from c2d.plugin.kit.health import HealthTracker
from c2d.plugin.kit.jobdir import JobDir, Record
from c2d.plugin.kit.rpc import streaming, unary
from c2d.plugin.kit.servicer import DrivenEngine, find_environment
from c2d.plugin.kit.values import settings_from_struct
from c2d_bacalhau_engine import api, fingerprint, names, workdir
from c2d_bacalhau_engine.api import Connection, Orchestrator
from c2d_bacalhau_engine.backend import Backend, pool_size
from c2d_bacalhau_engine.config import (
    BacalhauSettings,
    EnvironmentConfig,
    PoolSize,
    parse_settings,
    resolve,
)
from c2d_bacalhau_engine.driver import (
    JobDriver,
    Runtime,
    bacalhau_jobs,
    first_step,
    prepare_folder,
    stop_quietly,
    submit,
)
from c2d_bacalhau_engine.executions import JOB_STATES, TERMINAL_JOB_STATES, state_name
from c2d_bacalhau_engine.jobspec import build_spec
from c2d_bacalhau_engine.store import JobStore

NAME = "bacalhau"
API_VERSIONS = (1,)
WATCH_WAKE_SECONDS = 0.5
DESTROY_JOIN_SECONDS = 15.0
POD_IMAGE_MODULE = "pods.image"
# How long Configure waits for an orchestrator at the default url when none is configured.
DETECT_TIMEOUT_SECONDS = 3.0

log = structlog.get_logger("c2d_bacalhau_engine.engine")


@dataclass
class Configured:
    """What Configure settled: until it has run, job calls fail with FAILED_PRECONDITION."""

    api_version: int
    host_id: str
    state_dir: Path
    settings: BacalhauSettings
    backend: Backend
    work_roots: tuple[Path, str]
    pod_image: str | None
    environments: tuple[EnvironmentConfig, ...]
    store: JobStore
    runtime: Runtime

    def environment(self, environment_id: str) -> EnvironmentConfig:
        return find_environment(self.environments, environment_id)


def default_state_dir() -> Path:
    """Stable across plugin restarts (unlike mkdtemp), so jobs can be recovered without a state_dir."""
    return Path(tempfile.gettempdir()) / f"c2d-bacalhau-engine-{os.getuid()}"


def pod_image_of(settings: BacalhauSettings) -> str | None:
    """The configured pod image, else the one the node's ``pods.image`` names (when installed here)."""
    if settings.pod_image:
        return settings.pod_image
    try:
        return str(importlib.import_module(POD_IMAGE_MODULE).image_name())
    except Exception as exc:
        log.warning("no pod image: set pod_image; jobs with pods are refused", reason=str(exc))
        return None


def make_work_root(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise precondition(f"cannot use work_root {str(path)!r}: {exc}") from None


class EngineServicer(DrivenEngine[JobDir]):
    engine_name = NAME
    plugin_version = c2d_bacalhau_engine.__version__
    description = (c2d_bacalhau_engine.__doc__ or "").strip().splitlines()[0]
    api_versions = API_VERSIONS

    def __init__(self) -> None:
        super().__init__()
        self._configured: Configured | None = None
        self._drivers: Drivers[JobDriver] = Drivers()

    def unreachable(self, exc: Exception) -> str | None:
        """A call that failed because the orchestrator is away answers UNAVAILABLE, saying so."""
        if not api.is_unreachable(exc):
            return None
        return f"the Bacalhau orchestrator does not answer: {api.describe(exc)}"

    def ensure_driver(self, ready: Configured, job: JobDir, record: Record) -> None:
        if not job.is_ended() and not job.steps() and not job.stop_requested():
            self._submit_first(ready, job, record)
        self._drivers.ensure(job, lambda: JobDriver(ready.runtime, job, record), ready.runtime.changed)

    def _submit_first(self, ready: Configured, job: JobDir, record: Record) -> None:
        """The first step's Bacalhau job, submitted before StartJob answers so its handle names it.
        Any failure is left to the driver, which submits again (with the same idempotency token)."""
        try:
            prepare_folder(record)
            submit(ready.backend.api, job, record, first_step(record))
        except Exception as exc:
            log.info("first submission left to the driver", job_id=job.job_id, reason=api.describe(exc))

    def handle_details(self, job: JobDir, record: Record) -> dict[str, str]:
        submitted = bacalhau_jobs(job)
        return {
            "bacalhau_jobs": ",".join(
                f"{step}={submitted[step]}" for step in names.STEPS if step in submitted
            ),
            "folder": str(record["limits"]["local_folder"]),
        }

    def backend(self, ready: Configured) -> HealthTracker:
        return ready.backend

    # Plugin ------------------------------------------------------------------------

    @unary
    def Configure(self, request: engine_pb2.ConfigureRequest, context: grpc.ServicerContext) -> Any:
        api_version = self.negotiate(request)
        settings = parse_settings(settings_from_struct(request.config))
        if settings.ignored_keys:
            log.warning("unknown config keys ignored", keys=list(settings.ignored_keys))
        if settings.url is None:
            self._detect(settings)
        state_dir = self.state_dir(request, default_state_dir())
        work_roots = settings.work_roots(state_dir)
        make_work_root(work_roots[0])
        with self._lock:
            previous = self._configured
            backend = self._backend_for(settings, previous)
            store = self.open_store(
                JobStore(state_dir / "jobs", request.host_id), previous, request.host_id, state_dir
            )
            configured = Configured(
                api_version=api_version,
                host_id=request.host_id,
                state_dir=state_dir,
                settings=settings,
                backend=backend,
                work_roots=work_roots,
                pod_image=pod_image_of(settings),
                environments=resolve(settings, {}),
                store=store,
                runtime=Runtime(backend, request.host_id, self._changes.bump),
            )
            self._configured = configured
        if backend.check():
            self._measure(configured)
        self.resume(configured)
        backend.start_monitor(self._tick)
        self._changes.bump()
        log.info(
            "configured",
            state_dir=str(state_dir),
            bacalhau=backend.address,
            health=common_pb2.EngineHealth.Name(backend.state.health),
            work_root=str(work_roots[0]),
            pod_image=configured.pod_image,
            environments=[e.id for e in configured.environments],
        )
        return engine_pb2.ConfigureResponse()

    def _detect(self, settings: BacalhauSettings) -> None:
        """No url configured: an orchestrator answering at the default one is used, else the engine
        has nothing to drive (*undetected*: the node logs it and runs without this engine)."""
        probe = Orchestrator(Connection(settings.address, settings.token, DETECT_TIMEOUT_SECONDS))
        try:
            probe.alive()
        except Exception as exc:
            if not api.is_unreachable(exc):
                return  # something answered, if only with an error: health will say what
            raise undetected(
                f"no Bacalhau orchestrator configured and none answers at {settings.address} "
                f"({api.describe(exc)}): set url in [engines.bacalhau]"
            ) from None

    def _backend_for(self, settings: BacalhauSettings, previous: Configured | None) -> Backend:
        if previous is not None and previous.settings.connection() == settings.connection():
            return previous.backend
        backend = Backend(Connection(settings.address, settings.token, float(settings.api_timeout_seconds)))
        if previous is not None:
            previous.backend.stop_monitor()
        backend.on_change(self._changes.bump)
        return backend

    def _measure(self, ready: Configured) -> None:
        """The environments sized from the pools' nodes as the last health check listed them."""
        usage = self._drivers.usage()
        configured = ready.settings.environments or resolve(ready.settings, {})
        nodes = ready.backend.nodes
        sizes: dict[str, PoolSize] = {
            env.id: pool_size(
                nodes,
                {**ready.settings.node_labels, **env.node_labels},
                usage.get(env.id, kit_fingerprint.Usage()),
            )
            for env in configured
        }
        environments = resolve(ready.settings, sizes)
        if environments != ready.environments:
            ready.environments = environments
            self._changes.bump()

    def _tick(self, count: int) -> None:
        ready = self._configured
        if ready is not None and ready.backend.check():
            self._measure(ready)

    def fingerprint(self) -> engine_pb2.Fingerprint:
        ready = self._ready()
        caps = fingerprint.capabilities(ready.environments, ready.pod_image is not None)
        extra = {
            "bacalhau": ready.backend.address,
            "bacalhau_version": ready.backend.version,
            "work_root": ready.work_roots[1],
            "pod_image": ready.pod_image or "",
        }
        health = ready.backend.state
        return kit_fingerprint.build(
            health,
            ready.environments,
            self._drivers.usage(),
            lambda env, used: fingerprint.environment(env, used, health.health, extra),
            caps,
            self._draining,
        )

    # Jobs --------------------------------------------------------------------------

    def admit(self, ready: Configured, spec: engine_pb2.JobSpec) -> Record:
        problem = ready.backend.problem()
        if problem is not None:  # before the checks: unmeasured environments have no capacity yet
            raise unavailable(problem)
        env = ready.environment(spec.environment_id)
        return build_spec(spec, ready.settings, env, ready.host_id, ready.work_roots, ready.pod_image)

    def stop_running(self, ready: Configured, job: JobDir, record: Record, grace_seconds: int) -> None:
        """Bacalhau stops a job at once (no grace period); the driver sees it end."""
        reason = str((job.stop_request() or {}).get("reason") or "stop requested")
        for bacalhau_id in bacalhau_jobs(job, running_only=True).values():
            try:
                stop_quietly(ready.backend.api, bacalhau_id, reason)
            except Exception as exc:  # the driver stops it itself once the orchestrator answers again
                log.warning("could not stop the bacalhau job", job_id=job.job_id, reason=api.describe(exc))

    @unary
    def DestroyJob(self, request: engine_pb2.DestroyJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        if not request.job_id:
            return engine_pb2.DestroyJobResponse()
        with self._lock:
            found = ready.store.lookup(request.job_id)
            if found is None:
                if ready.backend.healthy:
                    self._stop_all(ready, self._orphan_jobs(ready).get(request.job_id, ([], ""))[0])
                return engine_pb2.DestroyJobResponse()
            job, record = found
            if not job.is_ended():
                job.request_stop(0, "destroyed")
            # The Bacalhau jobs first: with the orchestrator away this fails (UNAVAILABLE), and the
            # driver, still running, stops them once it answers again; the node retries the destroy.
            self._stop_all(ready, bacalhau_jobs(job, running_only=True).values())
            thread = self._drivers.cancel(job.job_id)
            if thread is not None:
                thread.join(DESTROY_JOIN_SECONDS)
            workdir.remove(Path(str(record["limits"]["local_folder"])))
            ready.store.remove(job)
        self._changes.bump()
        log.info("job destroyed", job_id=job.job_id)
        return engine_pb2.DestroyJobResponse()

    def _stop_all(self, ready: Configured, bacalhau_ids: Iterable[str]) -> None:
        """Stops these Bacalhau jobs (DestroyJob); a refusal is the engine's error, an outage UNAVAILABLE."""
        for bacalhau_id in bacalhau_ids:
            try:
                stop_quietly(ready.backend.api, bacalhau_id, "destroyed")
            except api.BacalhauError as exc:
                if api.is_unreachable(exc):
                    raise
                raise api.engine_error(exc, f"stopping Bacalhau job {bacalhau_id}") from None

    @unary
    def ListJobs(self, request: engine_pb2.ListJobsRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        summaries = streams.summaries(ready.store.jobs())
        orphans = self._orphan_jobs(ready) if ready.backend.healthy else {}
        for job_id, (_, workflow_id) in sorted(orphans.items()):
            summaries.append(
                engine_pb2.JobSummary(
                    job_id=job_id, workflow_id=workflow_id, terminal=True, status=common_pb2.JOB_STATUS_LOST
                )
            )
        return engine_pb2.ListJobsResponse(jobs=summaries)

    def _orphan_jobs(self, ready: Configured) -> dict[str, tuple[list[str], str]]:
        """Job id -> (its Bacalhau jobs that still run, workflow id) for this node's jobs with no folder here.

        Bacalhau keeps ended jobs, and they cannot be deleted: only jobs with something still
        running are orphans, so a destroyed orphan (stopped) is not listed again."""
        found: dict[str, tuple[list[str], str]] = {}
        try:
            for job in ready.backend.api.list_jobs(names.node_labels(ready.host_id)):
                if not names.is_ours(job, ready.host_id):
                    continue
                if state_name(job.get("State"), JOB_STATES) in TERMINAL_JOB_STATES:
                    continue
                meta = job["Meta"]
                job_id = str(meta.get(names.META_JOB) or "")
                if not job_id or ready.store.lookup(job_id) is not None:
                    continue
                ids, _ = found.setdefault(job_id, ([], str(meta.get(names.META_WORKFLOW) or "")))
                ids.append(str(job.get("ID", "")))
        except Exception as exc:
            if isinstance(exc, EngineError) or not (
                api.is_unreachable(exc) or isinstance(exc, api.BacalhauError)
            ):
                raise
            log.warning("could not look for orphaned jobs", reason=api.describe(exc))
        return found

    @streaming
    def StreamJobLogs(
        self, request: engine_pb2.StreamJobLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.StreamJobLogsResponse]:
        """The algorithm's output once it has ended (Bacalhau has it as the execution's RunOutput):
        with ``follow`` the stream waits for it; without, a job still running has no log yet."""
        ready = self._ready()
        job, _ = ready.store.get(request.job_id)
        offset = request.offset
        while context.is_active():
            seen = self._changes.version
            if job.log_path.exists() or job.is_ended() or not job.exists():
                for data in logs.read_from(job.log_path, offset):
                    yield engine_pb2.StreamJobLogsResponse(data=data, offset=offset)
                    offset += len(data)
                return
            if not request.follow:
                return
            self._changes.wait(seen, WATCH_WAKE_SECONDS)
