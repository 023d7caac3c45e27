"""The node's public gRPC server: ComputeService, health and reflection."""

from __future__ import annotations

import grpc
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from host.engines.registry import EngineRegistry

COMPUTE_SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name


class ComputeServicer(compute_pb2_grpc.ComputeServiceServicer):
    """ComputeService; methods not overridden here answer UNIMPLEMENTED."""

    def __init__(self, engines: EngineRegistry) -> None:
        self.engines = engines

    async def GetEnvironments(
        self, request: compute_pb2.GetEnvironmentsRequest, context: grpc.aio.ServicerContext
    ) -> compute_pb2.GetEnvironmentsResponse:
        environments = self.engines.environments(engine=request.engine)
        if request.chain_id:
            for env in environments:
                kept = [fees for fees in env.fees if fees.chain_id == request.chain_id]
                del env.fees[:]
                env.fees.extend(kept)
        return compute_pb2.GetEnvironmentsResponse(environments=environments)


async def start_server(listen: str, engines: EngineRegistry) -> tuple[grpc.aio.Server, int]:
    """Binds and starts the server; returns it and the bound port (for port 0)."""
    server = grpc.aio.server()
    compute_pb2_grpc.add_ComputeServiceServicer_to_server(ComputeServicer(engines), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            COMPUTE_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    for service in ("", COMPUTE_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, port
