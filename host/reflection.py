"""gRPC server reflection, as both ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection serves only v1alpha, and its symbol lookup misses method names
(``c2d.compute.v1.ComputeService.GetEnvironments``), which ``grpcurl describe`` and
other tools ask for. Tools that speak v1 first (buf curl, newer grpcurl) fall back to
v1alpha at best. The two versions are the same messages in different packages, so
one servicer answers both: v1 requests parse as v1alpha messages byte for byte.
The v1 file descriptor is registered too, so the v1 service can itself be described.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_SERVICE = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


class MethodAwareReflection:
    """grpcio-reflection's servicer, also resolving ``package.Service.Method`` symbols: such a
    request is answered as one for its service (the file is the same), echoing the original."""

    def __init__(self, service_names: Iterable[str], pool: descriptor_pool.DescriptorPool) -> None:
        self.servicer = ReflectionServicer(service_names, pool=pool)
        self.pool = pool

    async def ServerReflectionInfo(
        self, request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest], unused_context: object
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        originals: deque[reflection_pb2.ServerReflectionRequest] = deque()

        async def resolved() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            async for request in request_iterator:
                originals.append(request)
                if request.HasField("file_containing_symbol"):
                    symbol = self.service_of_method(request.file_containing_symbol)
                    if symbol:
                        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
                yield request

        # An async generator; types-grpcio-reflection declares it a coroutine returning one.
        replies = cast(
            AsyncIterator[reflection_pb2.ServerReflectionResponse],
            self.servicer.ServerReflectionInfo(resolved(), unused_context),
        )
        async for reply in replies:
            reply.original_request.CopyFrom(originals.popleft())  # one reply per request, in order
            yield reply

    def service_of_method(self, symbol: str) -> str | None:
        """The service's full name when ``symbol`` is one of its methods (and no symbol of its own)."""
        try:
            self.pool.FindFileContainingSymbol(symbol)
            return None
        except KeyError:
            pass
        service_name, _, method = symbol.rpartition(".")
        try:
            service = self.pool.FindServiceByName(service_name)
        except KeyError:
            return None
        return service.full_name if method in service.methods_by_name else None


def register_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Adds ``grpc/reflection/v1/reflection.proto`` (v1alpha's file, renamed) to ``pool``, once."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old, new = f".{file.package}.", f".{V1_PACKAGE}."
    file.name, file.package = V1_FILE, V1_PACKAGE
    for message in file.message_type:
        for message_field in message.field:
            if message_field.type_name:  # set only where a message or enum is named (proto2 presence)
                message_field.type_name = message_field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(file.SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serves reflection for ``service_names`` (plus both reflection services) on ``server``."""
    pool = descriptor_pool.Default()
    register_v1_descriptor(pool)
    servicer = MethodAwareReflection((*service_names, V1_SERVICE, V1ALPHA_SERVICE), pool=pool)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler})
            for service in (V1_SERVICE, V1ALPHA_SERVICE)
        )
    )
