"""gRPC servers: the public API (ComputeService) and the pods' callback API (PodService).

Both have grpc.health.v1 and reflection, so any gRPC tool can find its way.
They listen separately because pods reach the node from containers over a
different network than consumers do.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from host.limits import Limits, PeerLimit

COMPUTE_SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name
POD_SERVICE = pod_pb2.DESCRIPTOR.services_by_name["PodService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class AddressInUse(OSError):
    """The port is taken (by another node, or any process): said in one line, and the node exits 1."""


async def _serve(listen: str, service_name: str, add: object, limits: Limits) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(
        options=limits.server_options(), interceptors=[PeerLimit(limits.max_calls_per_peer)]
    )
    add(server)  # type: ignore[operator]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((service_name, HEALTH_SERVICE, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:  # grpc raises where older versions returned 0
        port = 0
    if port == 0:
        raise AddressInUse(
            f"cannot listen on {listen}: the address is in use (another node?) or not available here"
        )
    await server.start()
    for service in ("", service_name):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, port


async def start_public_server(
    listen: str, servicer: compute_pb2_grpc.ComputeServiceServicer, limits: Limits
) -> tuple[grpc.aio.Server, int]:
    """Binds and starts the public API under ``limits`` ([limits]); returns it and the bound port (for port 0)."""
    return await _serve(
        listen,
        COMPUTE_SERVICE,
        lambda s: compute_pb2_grpc.add_ComputeServiceServicer_to_server(servicer, s),
        limits,
    )


async def start_pod_server(
    listen: str, servicer: pod_pb2_grpc.PodServiceServicer, limits: Limits
) -> tuple[grpc.aio.Server, int]:
    return await _serve(
        listen, POD_SERVICE, lambda s: pod_pb2_grpc.add_PodServiceServicer_to_server(servicer, s), limits
    )
