"""The external_stub engine behind what stock go-plugin adds: a 6-field handshake line, and the
plugin.GRPCStdio and plugin.GRPCController services (Shutdown writes $GOPLUGIN_MARKER, then exits 0)."""

import os
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from c2d.engine.v1 import engine_pb2_grpc
from c2d.plugin import goplugin
from c2d_external_stub.engine import EngineServicer

stopped = threading.Event()


def stream_stdio(request: bytes, context: grpc.ServicerContext):
    yield goplugin.StdioData(channel=goplugin.STDERR, data=b'{"@level":"warn","@message":"from st')
    yield goplugin.StdioData(channel=goplugin.STDERR, data=b'dio","answer":42}\n')
    yield goplugin.StdioData(channel=goplugin.STDOUT, data=b"a stray print\n")
    stopped.wait()


def shutdown(request: bytes, context: grpc.ServicerContext) -> bytes:
    Path(os.environ["GOPLUGIN_MARKER"]).write_text("shutdown called\n")
    threading.Timer(0.1, stopped.set).start()
    return b""


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    engine_pb2_grpc.add_ComputeEngineServiceServicer_to_server(EngineServicer(), server)
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    checks.set("plugin", health_pb2.HealthCheckResponse.SERVING)
    raw = {"request_deserializer": lambda b: b}
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "plugin.GRPCStdio",
                {
                    "StreamStdio": grpc.unary_stream_rpc_method_handler(
                        stream_stdio, response_serializer=lambda m: m.SerializeToString(), **raw
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                "plugin.GRPCController",
                {"Shutdown": grpc.unary_unary_rpc_method_handler(shutdown, response_serializer=bytes, **raw)},
            ),
        )
    )
    socket_path = Path(tempfile.gettempdir()) / f"plugin{os.getpid()}"  # where go-plugin 1.0 puts it
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    print(f"1|1|unix|{socket_path}|grpc|", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stopped.wait()
    server.stop(1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
