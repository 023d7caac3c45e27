"""HTTP/1.1 for the double: a threaded server on 127.0.0.1, keep-alive, chunked streams, bearer tokens.

Plain responses carry a Content-Length (urllib3 keeps the connection alive between calls, as
with a real server); watch and ``follow`` log responses are ``Transfer-Encoding: chunked``, one
event per chunk. Each connection has its own thread, so a watch never blocks other calls. With a
token configured, every request but ``/version`` and the health checks needs
``Authorization: Bearer <token>``, else 401 with an ``Unauthorized`` Status.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .controller import log
from .errors import ApiError, failure_status, unauthorized
from .routes import Request, Response, Router

_PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, router: Router, token: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.router = router
        self.token = token
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-response (a plugin SIGKILLed during a watch) is routine."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        """Stop accepting, then cut every open connection (idle keep-alives and streams alike)."""
        self.shutdown()
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiHttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK cost ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
            self._authenticate(url.path)
            query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
            request = Request(method, url.path, query, self.headers.get("Content-Type", ""), body)
            response = self.server.router.handle(request)
        except ApiError as exc:
            response = Response.json(exc.status(), exc.code)
        except Exception as exc:
            log.exception("%s %s failed", method, self.path)
            response = Response.json(failure_status(500, "InternalError", f"the double failed: {exc}"), 500)
        if response.stream is not None:
            self._send_stream(response)
        else:
            self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authenticate(self, path: str) -> None:
        token = self.server.token
        if token is None or path.rstrip("/") in _PUBLIC_PATHS:
            return
        if self.headers.get("Authorization", "") != f"Bearer {token}":
            raise unauthorized()

    def _send(self, response: Response) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _send_stream(self, response: Response) -> None:
        assert response.stream is not None
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in response.stream:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                elif self._peer_closed():
                    self.close_connection = True
                    return
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            close = getattr(response.stream, "close", None)
            if close is not None:
                close()

    def _peer_closed(self) -> bool:
        """Whether the client hung up (readable with nothing to read) while we wait for events."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
