"""The ComputeEngineService of the kubernetes engine: every RPC of the engine protocol.

Each RPC is a thin layer over the job store, the job drivers and the
cluster: it checks the plugin is configured, maps the request, and turns
:class:`EngineError` into a gRPC status (an API that does not answer into
UNAVAILABLE). Anything unexpected is logged and answered with a short
INTERNAL, so no Python traceback crosses the wire.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

import c2d_k8s_engine
from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import fingerprint as kit_fingerprint
from c2d.plugin.kit import logs, pullcreds, streams
from c2d.plugin.kit.drivers import Drivers
from c2d.plugin.kit.errors import EngineError, unavailable
from c2d.plugin.kit.health import HealthTracker
from c2d.plugin.kit.jobdir import JobDir, Record
from c2d.plugin.kit.jobspec import ImageRef
from c2d.plugin.kit.rpc import streaming, unary
from c2d.plugin.kit.servicer import DrivenEngine, find_environment
from c2d.plugin.kit.values import settings_from_struct
from c2d_k8s_engine import fingerprint, kube, names
from c2d_k8s_engine import logs as pod_logs
from c2d_k8s_engine.cluster import Cluster
from c2d_k8s_engine.config import (
    ClusterSize,
    EnvironmentConfig,
    KubernetesSettings,
    parse_settings,
    resolve,
    total_capacity,
)
from c2d_k8s_engine.driver import JobDriver, Runtime, remove_pods
from c2d_k8s_engine.jobspec import build_spec
from c2d_k8s_engine.store import JobStore, delete_job_objects

NAME = "kubernetes"
API_VERSIONS = (1,)
WATCH_WAKE_SECONDS = 0.5
DESTROY_JOIN_SECONDS = 15.0
# The monitor re-measures the cluster (nodes come and go) every this many health checks.
MEASURE_EVERY_CHECKS = 10
POD_IMAGE_MODULE = "pods.image"

log = structlog.get_logger("c2d_k8s_engine.engine")


@dataclass
class Configured:
    """What Configure settled: until it has run, job calls fail with FAILED_PRECONDITION."""

    api_version: int
    host_id: str
    state_dir: Path
    settings: KubernetesSettings
    cluster: Cluster
    namespace: str
    pod_image: str | None
    environments: tuple[EnvironmentConfig, ...]
    store: JobStore
    runtime: Runtime
    set_up: bool = False  # the namespace and its quota are in place, the cluster measured

    def environment(self, environment_id: str) -> EnvironmentConfig:
        return find_environment(self.environments, environment_id)

    @property
    def timeout(self) -> float:
        return float(self.settings.api_timeout_seconds)


def default_state_dir() -> Path:
    """Stable across plugin restarts (unlike mkdtemp), so jobs can be recovered without a state_dir."""
    return Path(tempfile.gettempdir()) / f"c2d-k8s-engine-{os.getuid()}"


def pod_image_of(settings: KubernetesSettings) -> str | None:
    """The configured pod image, else the one the node's ``pods.image`` names (when installed here)."""
    if settings.pod_image:
        return settings.pod_image
    try:
        return str(importlib.import_module(POD_IMAGE_MODULE).image_name())
    except Exception as exc:
        log.warning("no pod image: set pod_image; jobs with pods are refused", reason=str(exc))
        return None


class EngineServicer(DrivenEngine[JobDir]):
    engine_name = NAME
    plugin_version = c2d_k8s_engine.__version__
    description = (c2d_k8s_engine.__doc__ or "").strip().splitlines()[0]
    api_versions = API_VERSIONS
    credentials: pullcreds.JobCredentials  # the jobs' own registry credentials, in memory only

    def __init__(self) -> None:
        super().__init__()
        self._configured: Configured | None = None
        self._drivers: Drivers[JobDriver] = Drivers()
        self.credentials = pullcreds.JobCredentials()  # kept across Configure: running drivers use it

    def unreachable(self, exc: Exception) -> str | None:
        """A call that failed because the API is away answers UNAVAILABLE, saying so."""
        return (
            f"the Kubernetes API does not answer: {kube.describe(exc)}" if kube.is_unreachable(exc) else None
        )

    def ensure_driver(self, ready: Configured, job: JobDir, record: Record) -> None:
        self._drivers.ensure(job, lambda: JobDriver(ready.runtime, job, record), ready.runtime.changed)

    def handle_details(self, job: JobDir, record: Record) -> dict[str, str]:
        return {
            "namespace": str(record["limits"]["namespace"]),
            "root": f"configmap/{names.job_base(job.job_id)}",
        }

    def backend(self, ready: Configured) -> HealthTracker:
        return ready.cluster

    # Plugin ------------------------------------------------------------------------

    @unary
    def Configure(self, request: engine_pb2.ConfigureRequest, context: grpc.ServicerContext) -> Any:
        api_version = self.negotiate(request)
        settings = parse_settings(settings_from_struct(request.config))
        if settings.ignored_keys:
            log.warning("unknown config keys ignored", keys=list(settings.ignored_keys))
        state_dir = self.state_dir(request, default_state_dir())
        with self._lock:
            previous = self._configured
            cluster = self._cluster_for(settings, previous)
            store = self.open_store(
                JobStore(state_dir / "jobs", request.host_id), previous, request.host_id, state_dir
            )
            configured = Configured(
                api_version=api_version,
                host_id=request.host_id,
                state_dir=state_dir,
                settings=settings,
                cluster=cluster,
                namespace=settings.namespace or names.default_namespace(request.host_id),
                pod_image=pod_image_of(settings),
                environments=resolve(settings, ClusterSize()),
                store=store,
                runtime=Runtime(cluster, settings, request.host_id, self._changes.bump, self.credentials),
            )
            self._configured = configured
        if cluster.check(configured.namespace):
            self._set_up(configured)
        self.resume(configured)
        cluster.start_monitor(self._tick)
        self._changes.bump()
        log.info(
            "configured",
            state_dir=str(state_dir),
            kubernetes=cluster.address,
            credentials=cluster.source,
            namespace=configured.namespace,
            health=common_pb2.EngineHealth.Name(cluster.state.health),
            pod_image=configured.pod_image,
            environments=[e.id for e in configured.environments],
        )
        return engine_pb2.ConfigureResponse()

    def _cluster_for(self, settings: KubernetesSettings, previous: Configured | None) -> Cluster:
        if previous is not None and previous.settings.connection() == settings.connection():
            return previous.cluster
        cluster = Cluster(settings)  # FAILED_PRECONDITION without credentials
        if previous is not None:
            previous.cluster.stop_monitor()
        cluster.on_change(self._changes.bump)
        return cluster

    def _set_up(self, ready: Configured) -> None:
        """The namespace (made when missing), the cluster's size, the environments and their quota."""
        try:
            ready.cluster.ensure_namespace(ready.namespace, ready.host_id, ready.settings.create_namespace)
            gpu_resources = {ready.settings.gpu_resource} | {
                env.gpu_resource for env in ready.settings.environments or () if env.gpu_resource
            }
            size = ready.cluster.measure(ready.namespace, gpu_resources)
            environments = resolve(ready.settings, size)
            if ready.settings.manage_quota:
                ready.cluster.ensure_quota(ready.namespace, ready.host_id, total_capacity(environments))
        except EngineError as exc:
            ready.cluster.report(exc.message)
            return
        except Exception as exc:
            if kube.is_unreachable(exc):
                return
            ready.cluster.report(f"cannot set up namespace {ready.namespace}: {kube.describe(exc)}")
            log.warning("set-up failed", namespace=ready.namespace, reason=kube.describe(exc))
            return
        if environments != ready.environments:
            ready.environments = environments
            self._changes.bump()
        ready.set_up = True
        ready.cluster.resolved()

    def _tick(self, count: int) -> None:
        """The monitor's beat: health every time, the set-up until it worked, a new measure now and then."""
        ready = self._configured
        if ready is None or not ready.cluster.check(ready.namespace):
            return
        if not ready.set_up or count % MEASURE_EVERY_CHECKS == 0:
            self._set_up(ready)

    def fingerprint(self) -> engine_pb2.Fingerprint:
        ready = self._ready()
        caps = fingerprint.capabilities(ready.environments, ready.pod_image is not None)
        extra = {
            "kubernetes": ready.cluster.address,
            "namespace": ready.namespace,
            "pod_image": ready.pod_image or "",
        }
        health = ready.cluster.state
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
        problem = ready.cluster.problem()
        if problem is not None:  # before the checks: unmeasured environments have no capacity yet
            raise unavailable(problem)
        if not ready.set_up:
            raise unavailable(f"{NAME} is still setting up namespace {ready.namespace}; try again")
        env = ready.environment(spec.environment_id)
        record = build_spec(spec, ready.settings, env, ready.host_id, ready.namespace, ready.pod_image)
        if spec.HasField("registry_auth"):  # in memory only: the record says there were some
            self.credentials.keep(
                spec.job_id, spec.registry_auth, ImageRef.from_json(record["image"]).repository
            )
            record[pullcreds.RECORD_KEY] = True
        return record

    def stop_running(self, ready: Configured, job: JobDir, record: Record, grace_seconds: int) -> None:
        """The kubelet's deletion: SIGTERM, grace, SIGKILL to the job's pods; its driver sees them go."""
        try:
            remove_pods(
                ready.cluster.core,
                str(record["limits"]["namespace"]),
                job.job_id,
                ready.timeout,
                grace_seconds,
            )
        except Exception as exc:  # the driver stops the pods itself once the API answers again
            log.warning("could not delete the job's pods", job_id=job.job_id, reason=kube.describe(exc))

    @unary
    def DestroyJob(self, request: engine_pb2.DestroyJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        if not request.job_id:
            return engine_pb2.DestroyJobResponse()
        self.credentials.forget(request.job_id)
        with self._lock:
            found = ready.store.lookup(request.job_id)
            if found is None:
                if ready.cluster.healthy and delete_job_objects(
                    ready.cluster.core, ready.namespace, ready.host_id, request.job_id, ready.timeout
                ):
                    log.info("orphaned objects removed", job_id=request.job_id)
                return engine_pb2.DestroyJobResponse()
            job, record = found
            if not job.is_ended():
                job.request_stop(0, "destroyed")
            # The objects first: with the API away this fails (UNAVAILABLE), and the driver, still
            # running, stops the pods once it answers again; the node retries the destroy.
            namespace = str(record["limits"]["namespace"])
            delete_job_objects(ready.cluster.core, namespace, ready.host_id, job.job_id, ready.timeout)
            driver = self._drivers.cancel(job.job_id)
            if driver is not None:
                driver.join(DESTROY_JOIN_SECONDS)
            ready.store.remove(job)
        self._changes.bump()
        log.info("job destroyed", job_id=job.job_id)
        return engine_pb2.DestroyJobResponse()

    @unary
    def ListJobs(self, request: engine_pb2.ListJobsRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        summaries = streams.summaries(ready.store.jobs())
        for job_id, workflow_id in sorted(self._orphans(ready).items()):
            summaries.append(
                engine_pb2.JobSummary(
                    job_id=job_id, workflow_id=workflow_id, terminal=True, status=common_pb2.JOB_STATUS_LOST
                )
            )
        return engine_pb2.ListJobsResponse(jobs=summaries)

    def _orphans(self, ready: Configured) -> dict[str, str]:
        if not ready.cluster.healthy:
            return {}
        try:
            return ready.store.orphans(ready.cluster.core, ready.namespace, ready.timeout)
        except Exception as exc:
            log.warning("could not look for orphaned jobs", reason=kube.describe(exc))
            return {}

    @streaming
    def StreamJobLogs(
        self, request: engine_pb2.StreamJobLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.StreamJobLogsResponse]:
        ready = self._ready()
        job, record = ready.store.get(request.job_id)
        offset = request.offset
        pod = names.pod_name(job.job_id, names.ALGORITHM)
        namespace = str(record["limits"]["namespace"])
        while context.is_active():
            if job.log_path.exists() or job.is_ended() or not job.exists():
                for data in logs.read_from(job.log_path, offset):
                    yield engine_pb2.StreamJobLogsResponse(data=data, offset=offset)
                    offset += len(data)
                return
            seen = self._changes.version
            live = pod_logs.stream(ready.cluster.core, namespace, pod, names.ALGORITHM, follow=request.follow)
            for data in logs.skip(live, offset):
                yield engine_pb2.StreamJobLogsResponse(data=data, offset=offset)
                offset += len(data)
            if not request.follow:
                return
            self._changes.wait(seen, WATCH_WAKE_SECONDS)
