"""The plugin side of the process protocol, so an engine author writes only the engine.

``serve(servicer)`` checks the magic cookie, negotiates the engine protocol
version, binds a private Unix socket, serves the engine and
``grpc.health.v1`` (service ``plugin``) on it, prints the go-plugin handshake
line, sends logs to stderr as JSON lines, and exits cleanly on SIGTERM or
as soon as the host process is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from c2d.engine.v1 import engine_pb2_grpc
from c2d.plugin import handshake

PARENT_POLL_SECONDS = 0.5
SHUTDOWN_GRACE_SECONDS = 5.0


def configure_plugin_logging(name: str) -> structlog.stdlib.BoundLogger:
    """JSON lines on stderr: the host parses them and re-emits them as its own logs."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s", force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger(plugin=name)


def serve(
    servicer: engine_pb2_grpc.ComputeEngineServiceServicer,
    *,
    name: str,
    api_versions: Iterable[int] = handshake.SUPPORTED_API_VERSIONS,
    max_workers: int = 256,
    on_shutdown: Callable[[], None] | None = None,
) -> None:
    """Runs ``servicer`` as an engine plugin until the host stops it; never returns."""
    log = configure_plugin_logging(name)
    if os.environ.get(handshake.MAGIC_COOKIE_KEY) != handshake.MAGIC_COOKIE_VALUE:
        sys.stderr.write(
            f"{name} is a c2d engine plugin: the node starts it, it is not meant to be run directly.\n"
        )
        sys.exit(1)
    version = _negotiate_version(api_versions)
    socket_path = _socket_path(name)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="engine"))
    engine_pb2_grpc.add_ComputeEngineServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    for service in ("", handshake.HEALTH_SERVICE):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    line = handshake.HandshakeLine(handshake.CORE_PROTOCOL_VERSION, version, "unix", str(socket_path), "grpc")
    _announce(line.render())
    log.info("plugin serving", socket=str(socket_path), api_version=version, pid=os.getpid())

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=_watch_parent, args=(stop, log), daemon=True, name="parent-watch").start()
    stop.wait()

    log.info("plugin shutting down")
    health_servicer.enter_graceful_shutdown()
    if on_shutdown is not None:
        on_shutdown()
    server.stop(SHUTDOWN_GRACE_SECONDS).wait()
    socket_path.unlink(missing_ok=True)
    sys.exit(0)


def _negotiate_version(supported: Iterable[int]) -> int:
    supported = list(supported)
    offered_env = os.environ.get(handshake.PROTOCOL_VERSIONS_ENV, "")
    offered = handshake.parse_versions(offered_env) if offered_env else supported
    try:
        return handshake.negotiate(offered, supported)
    except handshake.HandshakeError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)


def _socket_path(name: str) -> Path:
    directory = os.environ.get(handshake.SOCKET_DIR_ENV) or tempfile.mkdtemp(prefix="c2d-plugin-")
    path = Path(directory) / f"{name[:40]}-{os.getpid()}.sock"
    path.unlink(missing_ok=True)
    return path


def _announce(line: str) -> None:
    """Prints the handshake line, then points fd 1 at stderr so nothing else reaches stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _watch_parent(stop: threading.Event, log: structlog.stdlib.BoundLogger) -> None:
    """Sets ``stop`` once the host process is gone: the durable state outlives us, not the host."""
    expected = int(os.environ.get(handshake.PARENT_PID_ENV) or os.getppid())
    while not stop.wait(PARENT_POLL_SECONDS):
        if os.getppid() != expected:
            # The host held the read ends of our stdout and stderr: writing there now
            # raises BrokenPipeError, so point both at /dev/null before saying anything.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
            os.dup2(devnull, sys.stdout.fileno())
            stop.set()
            log.warning("host process is gone; exiting", host_pid=expected)
