"""The orchestrator's v1 REST endpoints (aiohttp handlers) in v1.9's shapes.

``/api/v1/agent/{alive,version,node}``, ``/api/v1/orchestrator/nodes[/{id}]``, and under
``/api/v1/orchestrator/jobs``: PUT (submit), GET (list, ``labels`` selectors, ``limit`` /
``next_token``), ``/{id}`` GET (``include=executions,history``) and DELETE (stop, ``reason``),
``/{id}/executions``, ``/{id}/history`` (``event_type``, ``execution_id``, ``since``),
``/{id}/results``. ``{id}`` is a job ID, a unique short ID or a Name. Errors are
:class:`errors.ApiError` bodies; every answer carries ``X-Bacalhau-Git-Version``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import errors
from .records import ExecutionState
from .selectors import parse_selector
from .spec import decode_job, field_of

if TYPE_CHECKING:
    from .double import BacalhauDouble

log = logging.getLogger("bacalhau_double")

GIT_VERSION = "v1.9.3"
GIT_COMMIT = "2b0ed139efadcb4a7fbce49b819613f11eeb3f2d"
BUILD_DATE = "2026-08-09T23:18:47Z"
OPEN_PATHS = ("/api/v1/agent/alive", "/api/v1/agent/version", "/api/v1/version", "/api/v1/agent/authconfig")
VERSION_INFO = {
    "Major": "1",
    "Minor": "9",
    "GitVersion": GIT_VERSION,
    "GitCommit": GIT_COMMIT,
    "BuildDate": BUILD_DATE,
    "GOOS": "linux",
    "GOARCH": "amd64",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body),
        status=status,
        content_type="application/json",
        headers={"X-Bacalhau-Git-Version": GIT_VERSION, "X-Bacalhau-Git-Commit": GIT_COMMIT},
    )


def build_app(double: BacalhauDouble) -> web.Application:
    """The API application; ``double`` gives the orchestrator, the node and the token."""

    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id", "")
        try:
            _authenticate(double.token, request)
            if request.method == "PUT":  # reads its body first; submit() takes the lock itself
                return await handler(request)
            # The other handlers never await: holding the double's lock while they run gives each
            # answer a consistent snapshot of jobs and executions that compute threads update.
            with double.changed:
                return await handler(request)
        except errors.ApiError as exc:
            return _json(exc.body(request_id), exc.status)
        except web.HTTPNotFound:
            return _json(errors.route_not_found().body(request_id), 404)
        except web.HTTPMethodNotAllowed:
            return _json(errors.method_not_allowed().body(request_id), 405)
        except Exception as exc:
            log.exception("%s %s failed in the double", request.method, request.path)
            body = errors.ApiError(500, f"Internal server error. {exc}", "InternalError", "Unknown").body(
                request_id
            )
            return _json(body, 500)

    orchestrator, node = double.orchestrator, double.node

    async def alive(request: web.Request) -> web.Response:
        return _json({"Status": "OK"})

    async def version(request: web.Request) -> web.Response:
        return _json(dict(VERSION_INFO))

    async def agent_node(request: web.Request) -> web.Response:
        return _json(double.node_state()["Info"])

    async def list_nodes(request: web.Request) -> web.Response:
        return _json({"NextToken": "", "Nodes": [double.node_state()]})

    async def get_node(request: web.Request) -> web.Response:
        if request.match_info["id"] not in (node.node_id, node.node_id[:10]):
            raise errors.node_not_found(request.match_info["id"])
        return _json({"Node": double.node_state()})

    async def put_job(request: web.Request) -> web.Response:
        body = await _body(request)
        try:
            submission = decode_job(field_of(body, "Job"))
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from exc
        job_id, eval_id, warnings = orchestrator.submit(submission)
        return _json({"JobID": job_id, "EvaluationID": eval_id, "Warnings": warnings})

    async def list_jobs(request: web.Request) -> web.Response:
        try:
            selector = parse_selector(request.query.getall("labels", []))
        except ValueError as exc:
            raise errors.bad_request(str(exc)) from exc
        jobs = orchestrator.list_jobs(request.query.get("namespace", ""), selector)
        order = request.query.get("order_by", "")
        if order not in ("", "created_at", "modified_at"):
            raise errors.ApiError(
                500, "Internal server error", "InternalError", "Unknown"
            )  # a plain Go error
        jobs.sort(
            key=lambda j: j.modify_time if order == "modified_at" else j.create_time,
            reverse=request.query.get("reverse", "") == "true",
        )
        items, token = _page(request, [job.to_json() for job in jobs])
        return _json({"NextToken": token, "Items": items})

    async def get_job(request: web.Request) -> web.Response:
        job = orchestrator.find(request.match_info["id"], request.query.get("namespace", ""))
        out: dict[str, Any] = {"Job": job.to_json()}
        for include in request.query.get("include", "").split(","):
            include = include.strip()
            if include == "history" and "History" not in out:
                out["History"] = {
                    "NextToken": "",
                    "Items": [h.to_json() for h in orchestrator.history_of(job)],
                }
            elif include == "executions" and "Executions" not in out:
                items = [e.to_json() for e in orchestrator.executions_of(job)]
                out["Executions"] = {"NextToken": "", "Items": items}
        return _json(out)

    async def job_executions(request: web.Request) -> web.Response:
        job = orchestrator.find(request.match_info["id"], request.query.get("namespace", ""))
        all_versions = request.query.get("all_job_versions", "") == "true"
        executions = orchestrator.executions_of(job, all_versions)
        key = (
            "modify_time"
            if request.query.get("order_by", "") in ("modified_at", "modify_time")
            else "create_time"
        )
        executions.sort(key=lambda e: getattr(e, key), reverse=request.query.get("reverse", "") == "true")
        limit = _int_query(request, "limit")
        items = [e.to_json() for e in executions][: limit or None]
        return _json({"NextToken": "", "Items": items})

    async def job_history(request: web.Request) -> web.Response:
        job = orchestrator.find(request.match_info["id"], request.query.get("namespace", ""))
        event_type = request.query.get("event_type", "all") or "all"
        if event_type not in ("all", "job", "execution"):
            raise errors.bad_request(
                "Key: 'ListJobHistoryRequest.EventType' Error:Field validation for 'EventType' failed on the 'oneof' tag"
            )
        execution_id = request.query.get("execution_id", "")
        since = _int_query(request, "since") * 1_000_000_000
        entries = [
            h
            for h in orchestrator.history_of(job)
            if (event_type != "job" or not h.execution_id)
            and (event_type != "execution" or h.execution_id)
            and (not execution_id or h.execution_id == execution_id)
            and h.event.timestamp >= since
        ]
        items, token = _page(request, [h.to_json() for h in entries])
        return _json({"NextToken": token, "Items": items})

    async def job_results(request: web.Request) -> web.Response:
        job = orchestrator.find(request.match_info["id"], request.query.get("namespace", ""))
        items = [
            e.published_result.to_json()
            for e in orchestrator.executions_of(job)
            if e.published_result is not None and e.compute_state == ExecutionState.COMPLETED
        ]
        return _json({"NextToken": "", "Items": items})

    async def stop_job(request: web.Request) -> web.Response:
        reason = request.query.get("reason", "")
        eval_id = orchestrator.stop(request.match_info["id"], request.query.get("namespace", ""), reason)
        return _json({"EvaluationID": eval_id})

    app = web.Application(middlewares=[errors_and_auth], client_max_size=8 * 1024 * 1024)
    app.router.add_get("/api/v1/agent/alive", alive)
    app.router.add_get("/api/v1/agent/version", version)
    app.router.add_get("/api/v1/agent/node", agent_node)
    app.router.add_get("/api/v1/orchestrator/nodes", list_nodes)
    app.router.add_get("/api/v1/orchestrator/nodes/{id}", get_node)
    app.router.add_put("/api/v1/orchestrator/jobs", put_job)
    app.router.add_get("/api/v1/orchestrator/jobs", list_jobs)
    app.router.add_get("/api/v1/orchestrator/jobs/{id}", get_job)
    app.router.add_delete("/api/v1/orchestrator/jobs/{id}", stop_job)
    app.router.add_get("/api/v1/orchestrator/jobs/{id}/executions", job_executions)
    app.router.add_get("/api/v1/orchestrator/jobs/{id}/history", job_history)
    app.router.add_get("/api/v1/orchestrator/jobs/{id}/results", job_results)
    return app


def build_results_app(double: BacalhauDouble) -> web.Application:
    """The local publisher's own HTTP server (v1.9 serves it on Publishers.Types.Local.Port)."""
    app = web.Application()
    app.router.add_static("/", double.node.published_dir, show_index=False)
    return app


def _authenticate(token: str | None, request: web.Request) -> None:
    if token is None or request.path.rstrip("/") in OPEN_PATHS:
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise errors.unauthorized("Missing Authorization header")
    if header != f"Bearer {token}":
        raise errors.unauthorized("invalid API key")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise errors.bad_request("Request body can't be empty")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.bad_request(f"Syntax error: {exc}") from exc


def _int_query(request: web.Request, name: str) -> int:
    text = request.query.get(name, "")
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError as exc:
        raise errors.bad_request(f"{name}: strconv.ParseUint: parsing {text!r}: invalid syntax") from exc
    if value < 0:
        raise errors.bad_request(f"{name}: must not be negative")
    return value


def _page(request: web.Request, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """``limit`` and an opaque ``next_token`` (the offset), as the list endpoints page."""
    token = request.query.get("next_token", "")
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError as exc:
            raise errors.bad_request(f"invalid paging token: {token}") from exc
    limit = _int_query(request, "limit")
    end = offset + limit if limit else len(items)
    next_token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return items[offset:end], next_token
