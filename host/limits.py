"""What one caller may hold of a node's gRPC servers, from the ``[limits]`` config section.

A node faces the internet: a caller that opens stream after stream (logs it follows
forever, results it never reads) must not hold the node's capacity for every other
caller. Three layers bound it:

- gRPC itself: message sizes, concurrent streams per HTTP/2 connection, keepalive
  pings that find dead peers, and connections dropped when idle or too old (with a
  grace for the calls in flight; clients reconnect and resume).
- :class:`PeerLimit`: concurrent calls per peer IP address, across all its
  connections; the call past the limit gets RESOURCE_EXHAUSTED at once, with a
  message that says so (pods and the SDK retry that code with backoff).
- The servers are asyncio: a stream waiting on a slow reader awaits its own write
  and holds no thread, so it stalls nobody else.

Health checks are not counted: they are cheap, and a load balancer's must answer
even while a client behind the same address is at its limit.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
MS = 1000
# The request and response messages of the method a handler serves.
Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Limits:
    """The ``[limits]`` section, checked by :mod:`host.config` (the defaults live there too)."""

    max_message_bytes: int
    max_concurrent_streams: int
    max_calls_per_peer: int
    keepalive_time_seconds: float
    keepalive_timeout_seconds: float
    max_connection_idle_seconds: float
    max_connection_age_seconds: float
    max_connection_age_grace_seconds: float

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> Limits:
        return cls(**{f.name: section[f.name] for f in dataclasses.fields(cls)})

    def server_options(self) -> list[tuple[str, int]]:
        """The channel arguments of a server under these limits; ``grpc.so_reuseport`` is 0, so a
        port another process holds is an error, not a port two servers share at random."""
        return [
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.keepalive_time_ms", int(self.keepalive_time_seconds * MS)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_seconds * MS)),
            ("grpc.max_connection_idle_ms", int(self.max_connection_idle_seconds * MS)),
            ("grpc.max_connection_age_ms", int(self.max_connection_age_seconds * MS)),
            ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace_seconds * MS)),
        ]


def peer_ip(peer: str) -> str:
    """``ipv4:1.2.3.4:5678`` -> ``ipv4:1.2.3.4``; ``ipv6:[::1]:5678`` -> ``ipv6:[::1]``."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class PeerLimit(grpc.aio.ServerInterceptor):
    """At most ``limit`` calls in flight per peer IP address (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: dict[str, int] = {}  # one event loop: no lock needed

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or not self.limit or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        return self._wrap(handler)

    def _enter(self, context: Any) -> str | None:
        """The peer's key once a slot is taken; None when it has none left."""
        peer = peer_ip(context.peer() or "")
        if self.active.get(peer, 0) >= self.limit:
            return None
        self.active[peer] = self.active.get(peer, 0) + 1
        return peer

    def _leave(self, peer: str) -> None:
        left = self.active[peer] - 1
        if left:
            self.active[peer] = left
        else:
            del self.active[peer]

    async def _refuse(self, context: Any) -> None:
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"too many calls at once from your address (at most {self.limit}): wait for some to end",
        )

    def _wrap(self, handler: grpc.RpcMethodHandler[Req, Resp]) -> grpc.RpcMethodHandler[Req, Resp]:
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
                    self._limited(behavior),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    def _limited(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                peer = self._enter(context)
                if peer is None:
                    await self._refuse(context)
                    return
                try:
                    async for reply in behavior(request, context):
                        yield reply
                finally:
                    self._leave(peer)

            return streaming

        async def unary(request: Any, context: Any) -> Any:
            peer = self._enter(context)
            if peer is None:
                await self._refuse(context)
                return None
            try:
                result = behavior(request, context)
                return (await result) if inspect.isawaitable(result) else result
            finally:
                self._leave(peer)

        return unary
