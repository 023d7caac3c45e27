"""The node's HTTP listener (aiohttp), on ``[http] listen``: off the gRPC port, loopback by default.

Every response carries the same defensive headers (no framing, no sniffing, a strict content
security policy that allows only the node's own scripts and styles, no caching of pages that
show jobs); requests are small (the dashboard takes forms, never uploads; the Ocean-compatible
API reads its JSON bodies under a bound of its own, :mod:`host.web.ocean.gateway`); errors are
short plain pages, never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from host.config import split_host_port

log = structlog.get_logger()

MAX_REQUEST_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def defended(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adds the security headers; turns an unexpected error into a 500 page that says nothing inside."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    except Exception:
        log.exception("http request failed", path=request.path)
        response = web.Response(status=500, text="the node could not answer this request\n")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def application() -> web.Application:
    """An empty application with the node's middleware and request limit; faces add their routes."""
    return web.Application(middlewares=[defended], client_max_size=MAX_REQUEST_BYTES)


@dataclass
class HttpServer:
    runner: web.AppRunner
    address: str  # HOST:PORT as bound

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve_http(app: web.Application, listen: str) -> HttpServer | None:
    """Serves ``app`` on ``listen`` (HOST:PORT), or nothing when it is empty.

    A port that cannot be bound is logged and the node runs on without it, as with metrics: the
    dashboard must not keep a node from computing.
    """
    if not listen:
        return None
    host, port = split_host_port(listen)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        log.error("http not served: cannot listen", listen=listen, error=str(exc))
        return None
    bound_host, bound_port = runner.addresses[0][:2]
    address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
    log.info("http listening", address=address)
    return HttpServer(runner, address)
