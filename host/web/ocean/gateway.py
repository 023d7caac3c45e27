"""ocean-node's HTTP compute routes (what ocean.js 8 calls) over the node's own services.

Every rule is the gRPC face's: the handlers here only translate Ocean's JSON and query
parameters into the calls :class:`host.services.compute.ComputeServicer` makes for a checked
caller (planning, admission, the free tier, who may see which job, results, logs), and their
answers into Ocean's JSON. A refusal is a :class:`host.errors.RequestError`, answered as
``{"error": "..."}`` with the HTTP status ocean-node uses for it (400 bad parameters, 401 a bad
signature or nonce, 404 a job that is not the caller's); never a traceback.

An Ocean job is one stage: a workflow started here has one stage, whose job id is the Ocean
``jobId``. Workflows of several stages are the gRPC face's (their stages' job ids work here too).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import Any

import coincurve
import grpc
import structlog
from aiohttp import web

from c2d.quoting import quoted
from host.auth import ANYONE
from host.environments import EnvironmentCatalog
from host.errors import RequestError, invalid
from host.identity import NodeIdentity
from host.metadata import accepted_metadata
from host.results import result_file
from host.services.access import readable_stage
from host.services.compute import MAX_STATUS_JOBS, ComputeServicer, job_status
from host.store import jobs, nonces, runner
from host.web.ocean import requests, shapes, signature, tokens

log = structlog.get_logger()

API = "/api/services"
MAX_BODY_BYTES = 256 * 1024  # a compute request with its raw code; larger is refused (413)
SOFTWARE = "c2d-node"
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 416,  # a Range outside the file
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
}
# (name, method, path) as ocean-node's root lists them: ocean.js finds every route here.
ENDPOINTS = (
    ("nonce", "GET", f"{API}/nonce"),
    ("computeEnvironments", "GET", f"{API}/computeEnvironments"),
    ("initializeCompute", "POST", f"{API}/initializeCompute"),
    ("freeCompute", "POST", f"{API}/freeCompute"),
    ("computeStart", "POST", f"{API}/compute"),
    ("computeStop", "PUT", f"{API}/compute"),
    ("computeStatus", "GET", f"{API}/compute"),
    ("computeResult", "GET", f"{API}/computeResult"),
    ("computeStreamableLogs", "GET", f"{API}/computeStreamableLogs"),
    ("generateAuthToken", "POST", f"{API}/auth/token"),
    ("invalidateAuthToken", "POST", f"{API}/auth/token/invalidate"),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class BodyTooLarge(Exception):
    """A request body past :data:`MAX_BODY_BYTES`."""


def answered(handler: Handler) -> Handler:
    """A route whose refusals become Ocean's JSON errors with the matching HTTP status."""

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestError as exc:
            return error_response(HTTP_STATUS.get(exc.code, 400), exc.message)
        except BodyTooLarge:
            return error_response(413, f"the body is larger than {MAX_BODY_BYTES} bytes")

    return route


class OceanGateway:
    """The Ocean-compatible routes, bound to the node's compute service."""

    def __init__(
        self,
        *,
        compute: ComputeServicer,
        catalog: EnvironmentCatalog,
        identity: NodeIdentity,
        token_lifetimes: tokens.TokenLifetimes = tokens.DEFAULT_LIFETIMES,
    ) -> None:
        self.compute = compute
        self.catalog = catalog
        self.identity = identity
        self.tokens = tokens.TokenAuthority(identity, token_lifetimes)
        self.public_key = coincurve.PrivateKey(
            bytes.fromhex(identity.private_key.removeprefix("0x"))
        ).public_key

    def add_routes(self, app: web.Application) -> None:
        app.add_routes(
            [
                web.get("/", answered(self.root)),
                web.get(f"{API}/nonce", answered(self.nonce)),
                web.get(f"{API}/computeEnvironments", answered(self.environments)),
                web.post(f"{API}/initializeCompute", answered(self.initialize)),
                web.post(f"{API}/freeCompute", answered(self.free_start)),
                web.post(f"{API}/compute", answered(self.paid_start)),
                web.put(f"{API}/compute", answered(self.stop)),
                web.get(f"{API}/compute", answered(self.status)),
                web.get(f"{API}/computeResult", answered(self.result)),
                web.get(f"{API}/computeStreamableLogs", answered(self.logs)),
                web.post(f"{API}/auth/token", answered(self.create_token)),
                web.post(f"{API}/auth/token/invalidate", answered(self.invalidate_token)),
            ]
        )

    # -- the node, nonces, environments ---------------------------------------------------

    async def root(self, request: web.Request) -> web.Response:
        chains = sorted({str(fees.chain_id) for env in self.catalog.list() for fees in env.fees})
        return web.json_response(
            {
                "nodeId": self.identity.address,
                "chainIds": chains,
                "providerAddress": self.identity.address,
                "nodePublicKey": "0x" + self.public_key.format(compressed=True).hex(),
                "serviceEndpoints": {name: [method, path] for name, method, path in ENDPOINTS},
                "software": SOFTWARE,
                "version": _version(),
            }
        )

    async def nonce(self, request: web.Request) -> web.Response:
        address = request.query.get("userAddress")
        if not address:
            raise invalid('missing required parameter: "userAddress"')
        caller = signature.consumer_address(address)
        return web.json_response({"nonce": str(await runner.run(nonces.last, caller))})

    async def environments(self, request: web.Request) -> web.Response:
        chain = request.query.get("chainId", "")
        listed = await self.catalog.listing()
        if chain:
            listed = [env for env in listed if any(str(f.chain_id) == chain for f in env.fees)]
        return web.json_response([shapes.environment(env) for env in listed])

    async def _caller(self, request: web.Request, params: Mapping[str, Any], command: str) -> str:
        """The checked caller of a signed route: the address of the ``Authorization`` token when
        there is one (:mod:`host.web.ocean.tokens`), else the signer of nonce and signature."""
        token = request.headers.get("Authorization")
        if token is not None:
            return await self.tokens.caller(token, params.get("consumerAddress"))
        return await signature.verify(
            params.get("consumerAddress"), _nonce_text(params.get("nonce")), params.get("signature"), command
        )

    # -- auth tokens -----------------------------------------------------------------------

    async def create_token(self, request: web.Request) -> web.Response:
        issued = await self.tokens.create(await _json_body(request))
        return web.json_response({"token": issued.token})

    async def invalidate_token(self, request: web.Request) -> web.Response:
        await self.tokens.invalidate(await _json_body(request))
        return web.json_response({"success": True})

    # -- starting, stopping ----------------------------------------------------------------

    async def initialize(self, request: web.Request) -> web.Response:
        """A quote: unsigned (as ocean.js sends it), so the checks that depend on who asks are
        left for the start, exactly as the gRPC face's unsigned InitializeCompute."""
        body = await _json_body(request)
        payment, in_payment = requests.payment(body)
        flow = requests.workflow(body, resources=body.get("resources") or in_payment)
        reply = await self.compute.initialize(flow, payment, ANYONE)
        return web.json_response(shapes.quote(reply))

    async def free_start(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        flow = requests.workflow(body)
        start = requests.start_request(body, flow)
        meta = accepted_metadata(start)
        caller = await self._caller(request, body, signature.FREE_START)
        started = await self.compute.free_start(caller, flow, meta)
        views = await runner.run(jobs.job_views, [s.job_id for s in started.stages])
        return web.json_response([shapes.job(v) for v in views])

    async def paid_start(self, request: web.Request) -> web.Response:
        """A paid start (ocean.js ``computeStart``): the gRPC StartCompute's admission, quote and
        escrow lock; a payer the escrow cannot lock for is refused (400) with nothing stored."""
        body = await _json_body(request)
        _, in_payment = requests.payment(body)
        flow = requests.workflow(body, resources=body.get("resources") or in_payment)
        start = requests.paid_start_request(body, flow)
        meta = accepted_metadata(start)
        caller = await self._caller(request, body, signature.START)
        started = await self.compute.start(caller, flow, start.payment, meta)
        views = await runner.run(jobs.job_views, [s.job_id for s in started.stages])
        return web.json_response([shapes.job(v) for v in views])

    async def stop(self, request: web.Request) -> web.Response:
        query = request.query
        job_id = _text_param(query, "jobId")
        caller = await self._caller(request, query, signature.STOP)
        views = await self.compute.stop(caller, job_id=job_id)
        return web.json_response([shapes.job(v) for v in views])

    # -- status, results, logs -------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        """ocean.js asks unsigned, by consumerAddress and jobId: then the job id is what proves the
        right to see it (it is unguessable) and it must be the address's. Signed (nonce and
        signature, command getComputeStatus) it may leave out the job id and list them all."""
        query = request.query
        if query.get("agreementId"):
            raise invalid("agreementId is not supported by this node: ask by jobId")
        job_id = query.get("jobId", "")
        if query.get("signature") or "Authorization" in request.headers:
            caller = await self._caller(request, query, signature.STATUS)
        else:
            caller = signature.consumer_address(query.get("consumerAddress"))
            if not job_id:
                raise invalid("unsigned, the status is of one job: name it (jobId), or sign to list all")
        if job_id:
            views = await runner.run(job_status, job_id, caller)
        else:
            views = await runner.run(jobs.owner_views, caller, MAX_STATUS_JOBS)
        return web.json_response([shapes.job(v) for v in views])

    async def result(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        job_id = _text_param(query, "jobId")
        index = _index(query.get("index"))
        caller = await self._caller(request, query, signature.RESULT)
        row = await self.compute.result(caller, job_id, index)
        size = result_file(row).size
        start, end = _range(request.headers.get("Range"), size)
        partial = request.headers.get("Range") is not None
        response = web.StreamResponse(status=206 if partial else 200)
        response.content_type = "application/octet-stream"
        response.content_length = end - start
        response.headers["Accept-Ranges"] = "bytes"
        response.headers["Content-Disposition"] = f'attachment; filename="{_safe_name(row.name)}"'
        if partial:
            response.headers["Content-Range"] = (
                f"bytes {start}-{end - 1}/{size}" if end > start else f"bytes */{size}"
            )
        await response.prepare(request)
        left = end - start
        async for chunk in self.compute.results.chunks(row, start):
            if left <= 0:
                break
            await response.write(chunk[:left])
            left -= min(len(chunk), left)
        await response.write_eof()
        return response

    async def logs(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        job_id = _text_param(query, "jobId")
        caller = await self._caller(request, query, signature.LOGS)
        stage = await readable_stage(job_id, caller)
        response = web.StreamResponse()
        response.content_type = "text/plain"
        response.charset = "utf-8"
        await response.prepare(request)
        try:
            async for chunk in self.compute.logs.read(stage, 0, follow=True):
                await response.write(chunk.data)
        except RequestError as exc:  # the stage went away while followed: the stream just ends
            log.info("ocean log stream ended early", job_id=job_id, reason=exc.message)
        await response.write_eof()
        return response


def _version() -> str:
    try:
        return metadata.version("c2d-node")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _nonce_text(value: object) -> object:
    """Ocean sends the nonce as a string; a JSON number is taken as its decimal text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _text_param(query: Any, name: str) -> str:
    value = query.get(name, "")
    if not value:
        raise invalid(f'missing required parameter: "{name}"')
    return str(value)


def _index(value: str | None) -> int:
    if value is None or value == "":
        raise invalid('missing required parameter: "index"')
    if not value.isdigit() or len(value) > 9:
        raise invalid(f"index must be a result's index (a whole number), got {quoted(value)}")
    return int(value)


def _range(header: str | None, size: int) -> tuple[int, int]:
    """The bytes [start, end) a Range header asks for (one range, ``bytes=N-`` or ``bytes=N-M``)."""
    if header is None:
        return 0, size
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or not first.isdigit() or (last and not last.isdigit()):
        raise invalid("Range must be one range: bytes=START- or bytes=START-END")
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        raise invalid(f"Range {quoted(header)} ends before it starts")
    if start >= size and size > 0:
        raise RequestError(
            grpc.StatusCode.OUT_OF_RANGE, f"Range {quoted(header)} is outside the result's {size} bytes"
        )
    return start, end


def _safe_name(name: str) -> str:
    """A result's name for Content-Disposition: its last part, printable ASCII without quotes."""
    base = name.rsplit("/", 1)[-1]
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in base) or "result"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, read up to :data:`MAX_BODY_BYTES` (413 past it)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BodyTooLarge
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise BodyTooLarge
    try:
        body = json.loads(bytes(data), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise invalid("the body must be a JSON object (UTF-8)") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body
