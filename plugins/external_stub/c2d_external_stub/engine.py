"""The ComputeEngineService of external_stub: every RPC of the engine protocol.

Each RPC is a thin layer over the job store: it checks the plugin is
configured, maps the request, and turns :class:`EngineError` into a gRPC
status. Anything unexpected is logged and answered with a short INTERNAL, so
no Python traceback ever crosses the wire.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog

import c2d_external_stub
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import events, streams
from c2d.plugin.kit.logs import read_from
from c2d.plugin.kit.rpc import streaming, unary
from c2d.plugin.kit.servicer import EngineBase
from c2d.plugin.kit.values import settings_from_struct
from c2d_external_stub import fingerprint, handle, podsteps, sandbox
from c2d_external_stub.active import ActiveJobs
from c2d_external_stub.config import StubConfig, parse_config, require_enabled
from c2d_external_stub.errors import EngineError
from c2d_external_stub.jobdir import JobDir, Record
from c2d_external_stub.jobs import JobStore
from c2d_external_stub.jobspec import build_spec, check_job_id
from c2d_external_stub.limits import Grant
from c2d_external_stub.machine import measure
from c2d_external_stub.sandbox import Sandbox

NAME = "external_stub"
API_VERSIONS = (1,)
WATCH_POLL_SECONDS = 0.05
LOG_POLL_SECONDS = 0.1
# StopJob waits this long past the grace period for the shim to report STOPPED.
STOP_SLACK_SECONDS = 5.0
# How many polls a WatchJob stream makes between checks that the shim still lives.
LIVENESS_EVERY_POLLS = 20

log = structlog.get_logger("c2d_external_stub.engine")


@dataclass(frozen=True)
class Configured:
    """What Configure settled: until it has run, job calls fail with FAILED_PRECONDITION."""

    api_version: int
    host_id: str
    state_dir: Path
    config: StubConfig
    store: JobStore
    sandbox: Sandbox


def default_state_dir() -> Path:
    """Stable across plugin restarts (unlike mkdtemp), so jobs can be recovered without a state_dir."""
    return Path(tempfile.gettempdir()) / f"c2d-external-stub-{os.getuid()}"


class EngineServicer(EngineBase):
    engine_name = NAME
    plugin_version = c2d_external_stub.__version__
    description = (c2d_external_stub.__doc__ or "").strip().splitlines()[0]
    api_versions = API_VERSIONS

    def __init__(self) -> None:
        super().__init__()
        self._configured: Configured | None = None
        self._start_lock = threading.Lock()
        self._active = ActiveJobs(self._changes.bump)

    # Plugin ------------------------------------------------------------------------

    @unary
    def Configure(self, request: engine_pb2.ConfigureRequest, context: grpc.ServicerContext) -> Any:
        api_version = self.negotiate(request)
        settings = settings_from_struct(request.config)
        require_enabled(settings)
        state_dir = self.state_dir(request, default_state_dir())
        config = parse_config(settings, measure(state_dir))
        if config.ignored_keys:
            log.warning("unknown config keys ignored", keys=list(config.ignored_keys))
        missing = podsteps.pods_missing(config.pod_python)
        if missing is not None:
            log.warning("jobs with pods will fail until pod_python can run the pods", reason=missing)
        sandbox = self._sandbox(config, state_dir)
        if sandbox.confined:
            sandbox = dataclasses.replace(sandbox, pod_code=podsteps.code_paths(config.pod_python))
        store = JobStore(state_dir / "jobs", request.host_id)
        store.sweep()
        self._configured = Configured(api_version, request.host_id, state_dir, config, store, sandbox)
        self._active.reset(store)
        self._changes.bump()
        log.info(
            "configured",
            state_dir=str(state_dir),
            environments=[e.id for e in config.environments],
            sandbox=sandbox.backend,
        )
        return engine_pb2.ConfigureResponse()

    @staticmethod
    def _sandbox(config: StubConfig, state_dir: Path) -> Sandbox:
        """Finds, by trying, what confines algorithms here; says loudly when nothing does.

        A backend named in the config that does not work fails Configure: the operator asked for it.
        """
        found, reasons = sandbox.detect(config.sandbox, state_dir / "probe")
        if config.sandbox in sandbox.BACKENDS and not found.confined:
            raise EngineError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"[engines.external_stub] sandbox = {config.sandbox!r} does not work here: {'; '.join(reasons)}",
            )
        if not found.confined:
            log.warning(
                "algorithms run UNCONFINED, as the node's user: they can read the node key and the pod keys"
                + ("" if config.unsafe_unconfined else "; only the operator's own jobs will run"),
                reasons=reasons,
                fix="apt-get install bubblewrap, or allow user namespaces",
                unsafe_unconfined=config.unsafe_unconfined,
            )
        return found

    def fingerprint(self) -> engine_pb2.Fingerprint:
        ready = self._ready()
        return fingerprint.build(ready.config, self._active.usage(), self._draining, ready.sandbox)

    # Jobs --------------------------------------------------------------------------

    @unary
    def StartJob(self, request: engine_pb2.StartJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        spec = request.spec
        check_job_id(spec.job_id)
        with self._start_lock:
            found = ready.store.find(spec.job_id)
            if found is not None:
                return engine_pb2.StartJobResponse(handle=self._existing(ready, *found))
            if self._draining:
                raise EngineError(grpc.StatusCode.UNAVAILABLE, f"{NAME} is draining: it takes no new jobs")
            record = build_spec(
                spec, ready.config, ready.host_id, ready.store.root / spec.job_id, ready.sandbox
            )
            job = ready.store.create(record)
            ready.store.launch(job)
        self._active.add(job.job_id, record["environment_id"], Grant.from_json(record["grant"]))
        return engine_pb2.StartJobResponse(handle=handle.encode(job, record))

    def _existing(self, ready: Configured, job: JobDir, record: Record) -> engine_pb2.JobHandle:
        """StartJob for a job id already here: its handle; nothing runs twice."""
        if record.get("host_id") != ready.host_id:
            raise EngineError(
                grpc.StatusCode.ALREADY_EXISTS, f"job id {job.job_id!r} belongs to another node"
            )
        if ready.store.never_launched(job):
            ready.store.launch(job)  # the first StartJob was cut short before the shim started
            self._active.add(
                job.job_id, str(record.get("environment_id")), Grant.from_json(record.get("grant"))
            )
        return handle.encode(job, record)

    @unary
    def RecoverJob(self, request: engine_pb2.RecoverJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        job, record = ready.store.get(handle.decode(request.handle))
        last = ready.store.refresh(job)
        if last is None or not last.get("terminal"):
            self._active.add(
                job.job_id, str(record.get("environment_id")), Grant.from_json(record.get("grant"))
            )
        event = events.not_started(job.job_id) if last is None else events.to_proto(job.job_id, last)
        return engine_pb2.RecoverJobResponse(handle=handle.encode(job, record), last_event=event)

    @streaming
    def WatchJob(
        self, request: engine_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[engine_pb2.WatchJobResponse]:
        ready = self._ready()
        job, _ = ready.store.get(request.job_id)
        polls = 0

        def check_shim() -> None:
            nonlocal polls
            polls += 1
            if polls % LIVENESS_EVERY_POLLS == 0:
                ready.store.refresh(job)  # a dead shim gets its LOST event, which the next read sends

        # The shim writes the events from another process: the stream looks every WATCH_POLL_SECONDS.
        yield from streams.job_events(
            job, request.after_sequence, self._changes, context, WATCH_POLL_SECONDS, check_shim
        )

    @unary
    def StopJob(self, request: engine_pb2.StopJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        found = ready.store.lookup(request.job_id) if request.job_id else None
        if found is not None:
            job, _ = found
            ready.store.stop(job, request.grace_seconds, request.reason)
            ready.store.wait_ended(job, streams.stop_wait(request.grace_seconds, STOP_SLACK_SECONDS, context))
        return engine_pb2.StopJobResponse()

    @unary
    def DestroyJob(self, request: engine_pb2.DestroyJobRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        if request.job_id:
            with self._start_lock:
                ready.store.destroy(request.job_id)
            self._active.discard(request.job_id)
        return engine_pb2.DestroyJobResponse()

    @unary
    def ListJobs(self, request: engine_pb2.ListJobsRequest, context: grpc.ServicerContext) -> Any:
        ready = self._ready()
        summaries = []
        for job, record in ready.store.jobs():
            last = ready.store.refresh(job) or {}
            summaries.append(
                engine_pb2.JobSummary(
                    job_id=job.job_id,
                    workflow_id=str(record.get("workflow_id", "")),
                    terminal=bool(last.get("terminal", False)),
                    status=events.status_of(last.get("status")),
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
        while context.is_active():
            ended = not request.follow or not job.exists() or ready.store.is_ended(job)
            sent = False
            for data in read_from(job.log_path, offset):
                yield engine_pb2.StreamJobLogsResponse(data=data, offset=offset)
                offset += len(data)
                sent = True
            if ended and not sent:
                return
            if not sent:
                time.sleep(LOG_POLL_SECONDS)
