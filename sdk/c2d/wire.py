"""Requests at the byte level, for signing scheme v2 (docs/signing.md).

A v2 signature covers the request's bytes as they travel, less every top-level
occurrence of its ``auth`` field: a client signs the bytes it sends, whichever
protobuf library wrote them, and the node hashes the bytes it received. This
module has the byte work both sides share: removing a top-level field from a
serialized message, and (for servers) keeping the bytes each request arrived in
next to the message parsed from them, so the verifier never serializes anything.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import Message

# Wire types (protobuf encoding): varint, 64-bit, length-delimited, group start/end, 32-bit.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_MAX_DEPTH = 100  # nested groups, as protobuf's own parsers limit recursion

# (the message a handler was given, the bytes it was parsed from), set around each call.
_RECEIVED: contextvars.ContextVar[tuple[Message, bytes] | None] = contextvars.ContextVar(
    "c2d_received_request", default=None
)


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def _skip(data: bytes | memoryview, pos: int, wire_type: int, number: int, depth: int) -> int:
    """The position after the value of a field whose tag ended at ``pos``."""
    if wire_type == _VARINT:
        return _varint(data, pos)[1]
    if wire_type == _I64:
        end = pos + 8
    elif wire_type == _I32:
        end = pos + 4
    elif wire_type == _LEN:
        length, pos = _varint(data, pos)
        end = pos + length
    elif wire_type == _SGROUP:
        if depth >= _MAX_DEPTH:
            raise WireError("groups nested too deeply")
        while True:
            tag, pos = _varint(data, pos)
            if tag & 7 == _EGROUP:
                if tag >> 3 != number:
                    raise WireError("mismatched end of group")
                return pos
            pos = _skip(data, pos, tag & 7, tag >> 3, depth + 1)
    else:
        raise WireError(f"wire type {wire_type} where a field starts")
    if end > len(data):
        raise WireError("truncated field")
    return end


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each top-level field, in order; WireError when malformed."""
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        pos = _skip(data, pos, wire_type, number, 0)
        yield number, start, pos


def without_field(data: bytes, number: int) -> list[memoryview]:
    """The pieces of ``data`` left when every top-level occurrence of field ``number`` is cut out,
    byte for byte, in order (their concatenation is the signed body)."""
    view = memoryview(data)
    pieces: list[memoryview] = []
    kept_from = 0
    for field, start, end in fields(view):
        if field == number:
            if start > kept_from:
                pieces.append(view[kept_from:start])
            kept_from = end
    if kept_from < len(view):
        pieces.append(view[kept_from:])
    return pieces


def strip_field(data: bytes, number: int) -> bytes:
    """``data`` less every top-level occurrence of field ``number``."""
    return b"".join(without_field(data, number))


def digest_without(data: bytes, number: int) -> str:
    """SHA-256 (hex) of ``data`` less every top-level occurrence of field ``number``; no copy."""
    hasher = hashlib.sha256()
    for piece in without_field(data, number):
        hasher.update(piece)
    return hasher.hexdigest()


def length_delimited(number: int, payload: bytes) -> bytes:
    """The encoding of a length-delimited field (a message, bytes or a string): tag, length, payload."""
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


# -- servers: the bytes each request arrived in ----------------------------------------------


def received_bytes(request: Message) -> bytes:
    """The bytes ``request`` was parsed from, when a handler registered by :func:`add_keeping_bytes`
    was given it; otherwise (a servicer called in-process) its serialization."""
    received = _RECEIVED.get()
    if received is not None and received[0] is request:
        return received[1]
    return request.SerializeToString()


def _parse_keeping(parse: Callable[[bytes], Message]) -> Callable[[bytes], tuple[Message, bytes]]:
    def deserialize(data: bytes) -> tuple[Message, bytes]:
        return parse(data), data

    return deserialize


def _behaviour(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` taking (message, bytes) instead of the message, with the bytes recorded for
    :func:`received_bytes` while it runs. Keeps its kind: coroutine, async generator or plain."""
    if inspect.isasyncgenfunction(original):

        async def stream(received: tuple[Message, bytes], context: Any) -> Any:
            _RECEIVED.set(received)  # each call is its own task (context): nothing leaks to another
            async for item in original(received[0], context):
                yield item

        return stream
    if inspect.iscoroutinefunction(original):

        async def unary(received: tuple[Message, bytes], context: Any) -> Any:
            token = _RECEIVED.set(received)
            try:
                return await original(received[0], context)
            finally:
                _RECEIVED.reset(token)

        return unary
    if inspect.isgeneratorfunction(original):

        def sync_stream(received: tuple[Message, bytes], context: Any) -> Any:
            _RECEIVED.set(received)  # the call's own thread, until it ends
            try:
                yield from original(received[0], context)
            finally:
                _RECEIVED.set(None)

        return sync_stream

    def sync_unary(received: tuple[Message, bytes], context: Any) -> Any:
        token = _RECEIVED.set(received)
        try:
            return original(received[0], context)
        finally:
            _RECEIVED.reset(token)

    return sync_unary


class _Capture:
    """Stands in for a server while a generated ``add_*Servicer_to_server`` registers its handlers."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers come again by name, below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.services[service] = handlers


def add_keeping_bytes(add: Callable[[Any, Any], None], servicer: Any, server: Any) -> None:
    """Registers ``servicer`` as the generated ``add`` function would, except that every method
    with a single request message also keeps the bytes it came in (:func:`received_bytes`).
    The message is still parsed once, by the same generated parser."""
    import grpc

    capture = _Capture()
    add(servicer, capture)
    for service, handlers in capture.services.items():
        kept: dict[str, Any] = {}
        for name, handler in handlers.items():
            if handler.request_streaming:
                kept[name] = handler
                continue
            slot = "unary_stream" if handler.response_streaming else "unary_unary"
            kept[name] = handler._replace(
                request_deserializer=_parse_keeping(handler.request_deserializer),
                **{slot: _behaviour(getattr(handler, slot))},
            )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, kept),))
        server.add_registered_method_handlers(service, kept)
