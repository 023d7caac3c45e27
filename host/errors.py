"""Errors that become a gRPC status with a message a person understands.

Services raise :class:`RequestError`; :func:`grpc_errors` turns it into the
status, and turns anything unexpected into a bare INTERNAL after logging it,
so no traceback ever crosses the wire.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import grpc
import structlog

log = structlog.get_logger()


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.NOT_FOUND, message)


def denied(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.PERMISSION_DENIED, message)


def precondition(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unavailable(message: str) -> RequestError:
    """Something the node depends on (its chain) cannot be reached now; trying later may work."""
    return RequestError(grpc.StatusCode.UNAVAILABLE, message)


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an async unary or server-streaming grpc.aio servicer method."""
    name = method.__name__

    async def _fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        if isinstance(exc, RequestError):
            await context.abort(exc.code, exc.message)
        log.exception("request failed", rpc=name)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}; the node's log has details")

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except Exception as exc:
                await _fail(context, exc)

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await _fail(context, exc)

    return unary_wrapper
