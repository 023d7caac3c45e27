"""Decorators that turn an engine servicer's failures into gRPC statuses, the same way for every engine.

An :class:`~c2d.plugin.kit.errors.EngineError` becomes its own code and
message; an error the engine's backend raises because it cannot be reached
becomes UNAVAILABLE (the servicer's ``unreachable(exc)`` says which, and
how to word it); anything else is a bug: logged with its traceback, answered
with a short INTERNAL naming the engine (the servicer's ``engine_name``).

They are also where every request enters an engine: its numbers are checked first
(:mod:`c2d.bounds`: finite, in range, enums known), so a NaN or an absurd offset is a clean
INVALID_ARGUMENT naming the field, never an engine's traceback. The node checks the same before it
calls an engine; this is defence in depth, and it covers any other caller of the plugin's socket.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import structlog

from c2d import bounds
from c2d.plugin.kit.errors import EngineError, invalid
from c2d.quoting import capped

Method = Callable[..., Any]
log = structlog.get_logger("c2d.plugin.kit.rpc")


def _abort(servicer: Any, name: str, context: Any, exc: Exception) -> None:
    if isinstance(exc, EngineError):
        if exc.reason:
            context.set_trailing_metadata(exc.trailing_metadata())
        context.abort(exc.code, exc.message)
    unreachable = getattr(servicer, "unreachable", None)
    reason = unreachable(exc) if unreachable is not None else None
    if reason is not None:
        context.abort(grpc.StatusCode.UNAVAILABLE, capped(reason))
    engine = getattr(servicer, "engine_name", "engine")
    log.exception("rpc failed", engine=engine, rpc=name)
    context.abort(grpc.StatusCode.INTERNAL, f"{engine}: internal error in {name}; see its log")


def check_numbers(request: Any) -> None:
    """INVALID_ARGUMENT naming the first number of the request that is not finite or not in range."""
    found = bounds.problem(request)
    if found is not None:
        raise invalid(found)


def unary(method: Method) -> Method:
    """For a unary RPC of a servicer."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            check_numbers(request)
            return method(self, request, context)
        except Exception as exc:
            _abort(self, method.__name__, context, exc)

    return wrapper


def streaming(method: Method) -> Method:
    """For a server-streaming RPC, whose errors surface while iterating."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            check_numbers(request)
            yield from method(self, request, context)
        except Exception as exc:
            _abort(self, method.__name__, context, exc)

    return wrapper
