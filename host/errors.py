"""Errors that become a gRPC status with a message a person understands.

Services raise :class:`RequestError`; :func:`grpc_errors` turns it into the
status, and turns anything unexpected into a bare INTERNAL after logging it,
so no traceback ever crosses the wire. It is also where every request enters: each one
(each message of a client stream too) has its numbers checked first (:mod:`c2d.bounds`),
and every message leaves escaped and capped (:func:`c2d.quoting.capped`), so no refusal
can echo what a caller sent beyond a short prefix.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from c2d import bounds, errorinfo
from c2d.quoting import capped

log = structlog.get_logger()


ERROR_DOMAIN = "c2d"


class RequestError(Exception):
    """A refusal for the caller. ``reason`` (with ``metadata``) is for programs: it travels as a
    google.rpc.ErrorInfo in the status details, so clients need not parse the message."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        message = capped(message)  # whatever the message quotes, it stays short and escaped
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        if not self.reason:
            return ()
        return errorinfo.trailer(self.code, self.message, self.reason, ERROR_DOMAIN, self.metadata)


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


def check_numbers(message: Message) -> None:
    """INVALID_ARGUMENT naming the first number of ``message`` that is not finite or not in range."""
    found = bounds.problem(message)
    if found is not None:
        raise invalid(found)


async def _checked(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose every message has its numbers checked as it arrives."""
    async for message in messages:
        check_numbers(message)
        yield message


def _checked_request(request: Any) -> Any:
    """The request with its numbers checked: a message now, a client stream message by message."""
    if isinstance(request, Message):
        check_numbers(request)
        return request
    return _checked(request)


def grpc_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an async grpc.aio servicer method (unary, server- or client-streaming): the request's
    numbers are checked before the method sees them, and every failure becomes a short status."""
    name = method.__name__

    async def _fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
        if isinstance(exc, RequestError):
            await context.abort(exc.code, exc.message, exc.trailing_metadata())
        log.exception("request failed", rpc=name)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}; the node's log has details")

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in method(self, _checked_request(request), context):
                    yield item
            except Exception as exc:
                await _fail(context, exc)

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, _checked_request(request), context)
        except Exception as exc:
            await _fail(context, exc)

    return unary_wrapper
