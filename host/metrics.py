"""The node's Prometheus metrics: every metric is defined here, in one registry the node owns.

Events are counted where they happen (the orchestrator's status changes, the payment loop,
the gRPC servers' :class:`CallMetrics` interceptor); what is state (stages by status, the
queue, capacity, engine health) is read at scrape time by :class:`StateCollector` from
in-memory views: the orchestrator's last :class:`Census` (taken on the database thread during
its scheduling pass) and the engine supervisors' fields. A scrape runs no query.

The endpoint faces whoever can reach its listener, so label values come only from bounded,
operator-controlled sets: environment ids, engine names, resource ids, status names, gRPC
method names of the services the node serves (any other path is ``unknown``), gRPC codes,
chain error kinds. No consumer address, job or workflow id, or dataset location is ever a
label. ``docs/metrics.md`` lists every metric.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from wsgiref.simple_server import WSGIServer

import grpc
import structlog
from google.protobuf import descriptor as pb_descriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from c2d.chain import errors as chain_errors
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.pod.v1 import pod_pb2
from host.config import split_host_port

log = structlog.get_logger()

Req = TypeVar("Req")
Resp = TypeVar("Resp")

UNKNOWN = "unknown"
# Seconds: from a fraction of a second (a hello stage on a local engine) to a day (a long job).
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# Seconds a gRPC call takes: most are milliseconds; streams (logs, results) may take minutes.
CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# The names the labels may take, each from a fixed set.
_STATUS_NAMES = {
    value: name.removeprefix("JOB_STATUS_").lower()
    for name, value in common_pb2.JobStatus.items()
    if value != common_pb2.JOB_STATUS_UNSPECIFIED
}
_CODE_NAMES = {code: code.name for code in grpc.StatusCode}
CHAIN_ERROR_KINDS = frozenset(
    value for name, value in vars(chain_errors).items() if name.isupper() and isinstance(value, str)
)
_HEALTH_NAMES = {
    value: name.removeprefix("ENGINE_HEALTH_").lower()
    for name, value in common_pb2.EngineHealth.items()
    if value != common_pb2.ENGINE_HEALTH_UNSPECIFIED
}
PAYMENT_EVENTS = ("locked", "lock_failed", "claimed", "released")


def status_label(status: int) -> str:
    """``JOB_STATUS_RUNNING`` -> ``running``; a number outside the enum -> ``unknown``."""
    return _STATUS_NAMES.get(status, UNKNOWN)


def _methods(*services: pb_descriptor.ServiceDescriptor) -> dict[str, tuple[str, str]]:
    return {f"/{s.full_name}/{m.name}": (s.full_name, m.name) for s in services for m in s.methods}


# Every method the node's servers answer; a call to any other path is counted as unknown.
KNOWN_METHODS: Mapping[str, tuple[str, str]] = {
    **_methods(
        compute_pb2.DESCRIPTOR.services_by_name["ComputeService"],
        pod_pb2.DESCRIPTOR.services_by_name["PodService"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    ),
    # The same reflection methods under grpc.reflection.v1 (host.reflection serves both).
    **{
        f"/grpc.reflection.v1.ServerReflection/{m.name}": ("grpc.reflection.v1.ServerReflection", m.name)
        for m in reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].methods
    },
}


def method_labels(path: str) -> tuple[str, str]:
    """(service, method) of a known method path; (unknown, unknown) for anything else."""
    return KNOWN_METHODS.get(path, (UNKNOWN, UNKNOWN))


# -- state read at scrape time -------------------------------------------------------------------


@dataclass(frozen=True)
class Census:
    """The orchestrator's view of its stages, taken in one read on the database thread.

    ``stages``: (environment id, status name) -> stages not ended; ``queued``: environment id ->
    stages waiting for capacity; ``granted``: (environment id, resource id) -> amount held by
    stages; ``total``: (environment id, resource id) -> the environment's capacity (ready engines).
    """

    stages: Mapping[tuple[str, str], int] = field(default_factory=dict)
    queued: Mapping[str, int] = field(default_factory=dict)
    granted: Mapping[tuple[str, str], float] = field(default_factory=dict)
    total: Mapping[tuple[str, str], float] = field(default_factory=dict)


class EngineView(Protocol):
    """What the collector reads of an engine supervisor (host.engines.supervisor.EngineSupervisor)."""

    name: str
    restarts: int

    @property
    def health(self) -> common_pb2.EngineHealth: ...


class StateCollector(Collector):
    """Gauges of the node's state, read when scraped from views that the event loop replaces whole
    (so a scrape on the server's thread reads a consistent object, and never waits on the loop)."""

    def __init__(self) -> None:
        self.census: Census = Census()
        self.engines: Callable[[], Iterable[EngineView]] = list

    def collect(self) -> Iterator[Any]:
        census = self.census
        stages = GaugeMetricFamily(
            "c2d_stages", "Stages not yet ended, by environment and status", labels=["environment", "status"]
        )
        for (environment, status), count in sorted(census.stages.items()):
            stages.add_metric([environment, status], count)
        yield stages
        queued = GaugeMetricFamily(
            "c2d_queue_length", "Stages queued for capacity, by environment", labels=["environment"]
        )
        environments = {environment for environment, _ in census.total} | set(census.queued)
        for environment in sorted(environments):
            queued.add_metric([environment], census.queued.get(environment, 0))
        yield queued
        granted = GaugeMetricFamily(
            "c2d_capacity_granted",
            "Capacity held by stages, by environment and resource (units of the resource)",
            labels=["environment", "resource"],
        )
        total = GaugeMetricFamily(
            "c2d_capacity_total",
            "Capacity of the environments of ready engines, by environment and resource",
            labels=["environment", "resource"],
        )
        for (environment, resource), amount in sorted(census.total.items()):
            total.add_metric([environment, resource], amount)
            granted.add_metric([environment, resource], census.granted.get((environment, resource), 0.0))
        yield granted
        yield total
        healthy = GaugeMetricFamily(
            "c2d_engine_healthy", "1 while the engine plugin is ready and healthy, else 0", labels=["engine"]
        )
        health = GaugeMetricFamily(
            "c2d_engine_health",
            "The engine's health as it reports it (1 for the current one), by engine and health",
            labels=["engine", "health"],
        )
        restarts = CounterMetricFamily(
            "c2d_engine_restarts", "Times the supervisor restarted the engine plugin", labels=["engine"]
        )
        for engine in sorted(self.engines(), key=lambda e: e.name):
            current = engine.health
            healthy.add_metric([engine.name], 1.0 if current == common_pb2.ENGINE_HEALTH_HEALTHY else 0.0)
            for value, name in _HEALTH_NAMES.items():
                health.add_metric([engine.name, name], 1.0 if current == value else 0.0)
            restarts.add_metric([engine.name], engine.restarts)
        yield healthy
        yield health
        yield restarts


# -- the metrics -------------------------------------------------------------------------------


class NodeMetrics:
    """Every metric of the node, in a registry of its own (not prometheus_client's global one)."""

    def __init__(self) -> None:
        # No *_created series (prometheus_client's switch is process-wide; the node is the process).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        r = self.registry
        self.state = StateCollector()
        r.register(self.state)
        self.stage_status_changes = Counter(
            "c2d_stage_status_changes",
            "Status changes recorded for stages (their first status included), by environment and new status",
            ["environment", "status"],
            registry=r,
        )
        self.stages_ended = Counter(
            "c2d_stages_ended",
            "Stages that ended, by environment and final status",
            ["environment", "status"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "c2d_queue_wait_seconds",
            "From a stage's acceptance to its grant of capacity, by environment",
            ["environment"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "c2d_stage_duration_seconds",
            "From a stage's acceptance to its end, by environment and final status",
            ["environment", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.stage_run = Histogram(
            "c2d_stage_run_seconds",
            "From a stage's grant of capacity to its end (stages that were granted), by environment and final status",
            ["environment", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.algorithm_run = Histogram(
            "c2d_algorithm_run_seconds",
            "How long stages' algorithms ran (as the engine reports), by environment",
            ["environment"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.calls = Counter(
            "c2d_grpc_calls",
            "gRPC calls answered, by server (public, pods), service, method and status code",
            ["server", "service", "method", "code"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "c2d_grpc_call_seconds",
            "How long gRPC calls took to answer, by server, service and method",
            ["server", "service", "method"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.payments = Counter(
            "c2d_payments",
            "Escrow payment events: locked, lock_failed, claimed, released",
            ["event"],
            registry=r,
        )
        self.chain_errors = Counter(
            "c2d_chain_errors", "Failed chain RPC calls, by kind (c2d.chain.errors)", ["kind"], registry=r
        )
        for event in PAYMENT_EVENTS:
            self.payments.labels(event)

    # -- stages (called by the orchestrator on the event loop) ----------------------------------

    def stage_status(self, environment: str, status: int) -> None:
        self.stage_status_changes.labels(environment, status_label(status)).inc()

    def stage_granted(self, environment: str, waited: float) -> None:
        self.queue_wait.labels(environment).observe(max(waited, 0.0))

    def stage_ended(
        self,
        environment: str,
        status: int,
        *,
        created_at: float,
        started_at: float | None,
        finished_at: float,
        algorithm_started_at: float | None,
        algorithm_finished_at: float | None,
    ) -> None:
        name = status_label(status)
        self.stage_status_changes.labels(environment, name).inc()
        self.stages_ended.labels(environment, name).inc()
        self.stage_duration.labels(environment, name).observe(max(finished_at - created_at, 0.0))
        if started_at is not None:
            self.stage_run.labels(environment, name).observe(max(finished_at - started_at, 0.0))
        if algorithm_started_at is not None:
            ended = algorithm_finished_at if algorithm_finished_at is not None else finished_at
            self.algorithm_run.labels(environment).observe(max(ended - algorithm_started_at, 0.0))

    # -- payments and the chain -------------------------------------------------------------------

    def payment(self, event: str) -> None:
        self.payments.labels(event if event in PAYMENT_EVENTS else UNKNOWN).inc()

    def chain_error(self, kind: str) -> None:
        self.chain_errors.labels(kind if kind in CHAIN_ERROR_KINDS else UNKNOWN).inc()

    # -- gRPC --------------------------------------------------------------------------------------

    def interceptor(self, server: str) -> CallMetrics:
        return CallMetrics(self, server)

    def call(self, server: str, path: str, code: grpc.StatusCode, seconds: float | None) -> None:
        service, method = method_labels(path)
        self.calls.labels(server, service, method, _CODE_NAMES.get(code, UNKNOWN)).inc()
        if seconds is not None:
            self.call_seconds.labels(server, service, method).observe(seconds)


class CallMetrics(grpc.aio.ServerInterceptor):
    """Counts every call of a server by method and status code, and times it.

    Put it first among the interceptors, so that calls the others refuse (too many at once from a
    peer) are counted too. A path the server does not serve is counted once as unknown/UNIMPLEMENTED.
    """

    def __init__(self, metrics: NodeMetrics, server: str) -> None:
        self.metrics = metrics
        self.server = server

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        path = handler_call_details.method
        if handler is None:
            self.metrics.call(self.server, path, grpc.StatusCode.UNIMPLEMENTED, None)
            return None
        return self._wrap(handler, path)

    def _wrap(self, handler: grpc.RpcMethodHandler[Req, Resp], path: str) -> grpc.RpcMethodHandler[Req, Resp]:
        kinds = (
            ("unary_unary", grpc.unary_unary_rpc_method_handler),
            ("unary_stream", grpc.unary_stream_rpc_method_handler),
            ("stream_unary", grpc.stream_unary_rpc_method_handler),
            ("stream_stream", grpc.stream_stream_rpc_method_handler),
        )
        for attribute, make in kinds:
            behavior = getattr(handler, attribute)
            if behavior is not None:
                return make(
                    self._timed(behavior, path),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _record(self, path: str, context: Any, started: float, failure: BaseException | None) -> None:
        code = _code_of(context)
        if code is None:
            if isinstance(failure, asyncio.CancelledError):
                code = grpc.StatusCode.CANCELLED
            elif failure is not None:
                code = grpc.StatusCode.UNKNOWN
            else:
                code = grpc.StatusCode.OK
        self.metrics.call(self.server, path, code, time.perf_counter() - started)

    def _timed(self, behavior: Callable[..., Any], path: str) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                started = time.perf_counter()
                failure: BaseException | None = None
                try:
                    async for reply in behavior(request, context):
                        yield reply
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    self._record(path, context, started, failure)

            return streaming

        async def unary(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            failure: BaseException | None = None
            try:
                result = behavior(request, context)
                return (await result) if inspect.isawaitable(result) else result
            except BaseException as exc:
                failure = exc
                raise
            finally:
                self._record(path, context, started, failure)

        return unary


def _code_of(context: Any) -> grpc.StatusCode | None:
    """The code the handler set (set_code, abort), if any."""
    try:
        code = context.code()
    except Exception:
        return None
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps the numeric code
        return next((c for c in grpc.StatusCode if c.value[0] == code), None)
    return None


# -- the endpoint -----------------------------------------------------------------------------------


class MetricsServer:
    """prometheus_client's own HTTP server for the node's registry, on a thread of its own."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def address(self) -> str:
        bound = self._httpd.server_address[0]
        host = bound.decode() if isinstance(bound, bytes) else str(bound)
        port = self._httpd.server_port
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: NodeMetrics, listen: str) -> MetricsServer | None:
    """Serves ``/metrics`` on ``listen`` (HOST:PORT), or nothing when it is empty.

    A port that cannot be bound is logged and the node runs on without metrics: monitoring must
    not keep a node from computing.
    """
    if not listen:
        return None
    host, port = split_host_port(listen)
    try:
        httpd, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        log.error("metrics not served: cannot listen", listen=listen, error=str(exc))
        return None
    server = MetricsServer(httpd, thread)
    log.info("metrics listening", address=server.address)
    return server
