"""gRPC servers: the public API (ComputeService) and the pods' callback API (PodService).

Both have grpc.health.v1 and reflection, so any gRPC tool can find its way.
They listen separately because pods reach the node from containers over a
different network than consumers do.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from c2d import wire
from c2d.bulkio import keep_freed_buffers
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from host.limits import Limits, PeerLimit
from host.metrics import NodeMetrics
from host.reflection import enable_reflection

COMPUTE_SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name
POD_SERVICE = pod_pb2.DESCRIPTOR.services_by_name["PodService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class AddressInUse(OSError):
    """The port is taken (by another node, or any process): said in one line, and the node exits 1."""


class BoundServer:
    """A server that owns its port but serves nothing yet: the port is known before the servicer
    that needs it is built (the orchestrator hands the pod server's address to every stage)."""

    def __init__(
        self,
        listen: str,
        service_name: str,
        limits: Limits,
        metrics: NodeMetrics | None = None,
        role: str = "",
    ) -> None:
        """``metrics``: count and time every call, labelled ``server=role`` (first interceptor: the
        calls PeerLimit refuses are counted too)."""
        keep_freed_buffers()  # results stream through in MiB messages (c2d.bulkio says why)
        interceptors: list[grpc.aio.ServerInterceptor] = [PeerLimit(limits.max_calls_per_peer)]
        if metrics is not None:
            interceptors.insert(0, metrics.interceptor(role or service_name))
        self.server = grpc.aio.server(options=limits.server_options(), interceptors=interceptors)
        self.service_name = service_name
        try:
            self.port = self.server.add_insecure_port(listen)
        except RuntimeError:  # grpc raises where older versions returned 0
            self.port = 0
        if self.port == 0:
            raise AddressInUse(
                f"cannot listen on {listen}: the address is in use (another node?) or not available here"
            )

    async def serve(self, add: Callable[[grpc.aio.Server], None]) -> grpc.aio.Server:
        """Adds the service (with health and reflection) and starts answering."""
        add(self.server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self.server)
        enable_reflection((self.service_name, HEALTH_SERVICE), self.server)
        await self.server.start()
        for service in ("", self.service_name):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self.server


async def start_public_server(
    listen: str,
    servicer: compute_pb2_grpc.ComputeServiceServicer,
    limits: Limits,
    metrics: NodeMetrics | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Binds and starts the public API under ``limits`` ([limits]); returns it and the bound port (for port 0).
    Each request keeps the bytes it arrived in: signatures (scheme v2) cover them."""
    bound = BoundServer(listen, COMPUTE_SERVICE, limits, metrics, "public")
    server = await bound.serve(
        lambda s: wire.add_keeping_bytes(compute_pb2_grpc.add_ComputeServiceServicer_to_server, servicer, s)
    )
    return server, bound.port


def bind_pod_server(listen: str, limits: Limits, metrics: NodeMetrics | None = None) -> BoundServer:
    """The pods' server, bound first: its address goes into every stage the orchestrator starts."""
    return BoundServer(listen, POD_SERVICE, limits, metrics, "pods")


async def serve_pods(bound: BoundServer, servicer: pod_pb2_grpc.PodServiceServicer) -> grpc.aio.Server:
    return await bound.serve(lambda s: pod_pb2_grpc.add_PodServiceServicer_to_server(servicer, s))
