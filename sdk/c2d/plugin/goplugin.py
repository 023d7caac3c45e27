"""The host side of the go-plugin services a stock Go plugin serves next to the engine API.

HashiCorp go-plugin registers, on the plugin's gRPC server:

- ``grpc.health.v1.Health`` with service ``plugin`` SERVING (the host waits for it),
- ``plugin.GRPCController`` with ``Shutdown(Empty) returns (Empty)``: the host calls it before it
  signals the plugin, so a Go plugin stops its server and exits on its own,
- ``plugin.GRPCStdio`` (go-plugin 1.4 and later) with ``StreamStdio(google.protobuf.Empty) returns
  (stream StdioData)``: whatever the plugin wrote to ``os.Stdout``/``os.Stderr`` after its handshake;
  the host reads it once, line by line, and re-emits it through its logging,
- ``plugin.GRPCBroker``, which the host does not use.

A plugin that serves neither (every Python plugin) answers ``UNIMPLEMENTED``, which is fine.
The messages are built here from their descriptors (``internal/plugin/*.proto`` in go-plugin),
so nothing is generated for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SHUTDOWN_METHOD = "/plugin.GRPCController/Shutdown"
STREAM_STDIO_METHOD = "/plugin.GRPCStdio/StreamStdio"
STDOUT, STDERR = 1, 2  # plugin.StdioData.Channel
CHANNEL_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
MAX_LINE_BYTES = 1 << 20  # a longer "line" is emitted in pieces


def _stdio_data_class() -> Any:
    """``plugin.StdioData`` from a descriptor in a private pool (no clash with anything generated)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="c2d_goplugin/grpc_stdio.proto", package="plugin", syntax="proto3"
    )
    message = proto.message_type.add(name="StdioData")
    channel = message.enum_type.add(name="Channel")
    for number, name in enumerate(("INVALID", "STDOUT", "STDERR")):
        channel.value.add(name=name, number=number)
    label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    message.field.add(
        name="channel",
        number=1,
        label=label,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
        type_name=".plugin.StdioData.Channel",
    )
    message.field.add(name="data", number=2, label=label, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("plugin.StdioData"))


StdioData = _stdio_data_class()


def _empty(_: object) -> bytes:
    return b""  # plugin.Empty and google.protobuf.Empty have no fields


async def shutdown(channel: grpc.aio.Channel, timeout: float) -> bool:
    """Asks a go-plugin plugin to stop (``GRPCController.Shutdown``); False when it doesn't serve that."""
    call = channel.unary_unary(SHUTDOWN_METHOD, request_serializer=_empty, response_deserializer=lambda b: b)
    try:
        await call(None, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        # go-plugin stops its server inside the call: the answer may be lost with the connection.
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    return True


class LineSplitter:
    """Turns chunks of one stream into lines; what is left at the end comes out with ``flush``."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.pending = b""

    def feed(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.on_line(line.decode(errors="replace"))
        while len(self.pending) > MAX_LINE_BYTES:
            piece, self.pending = self.pending[:MAX_LINE_BYTES], self.pending[MAX_LINE_BYTES:]
            self.on_line(piece.decode(errors="replace"))

    def flush(self) -> None:
        if self.pending:
            self.on_line(self.pending.decode(errors="replace"))
            self.pending = b""


def _emitter(on_line: Callable[[str, str], None], source: str) -> Callable[[str], None]:
    return lambda line: on_line(source, line)


async def pump_stdio(channel: grpc.aio.Channel, on_line: Callable[[str, str], None]) -> bool:
    """Reads ``GRPCStdio.StreamStdio`` until it ends, handing ``on_line(stream_name, line)`` each line.

    Returns False at once when the plugin doesn't serve it, True when the stream ended.
    """
    call = channel.unary_stream(
        STREAM_STDIO_METHOD, request_serializer=_empty, response_deserializer=StdioData.FromString
    )
    splitters = {number: LineSplitter(_emitter(on_line, name)) for number, name in CHANNEL_NAMES.items()}
    stream = call(None)
    try:
        while (reply := await stream.read()) is not grpc.aio.EOF:
            data: Any = reply
            splitter = splitters.get(data.channel, splitters[STDERR])
            splitter.feed(data.data)
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
            return False
        # The plugin went away: its supervisor finds out on its own and says why.
    finally:
        stream.cancel()
        for splitter in splitters.values():
            splitter.flush()
    return True
