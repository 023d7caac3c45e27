"""The dashboard: read-only pages of what the node is doing, for whoever signs in with a key.

The operator (the node key, or an address in ``[http] operators``) sees the whole node; anyone
else sees their own workflows, and a workflow or job they were named a viewer of when they
follow its link, exactly as :mod:`host.services.access` decides over gRPC (a job they may not
see is "not found", never "forbidden", so its existence does not leak).

Pages are rendered on the server (Jinja2, escaping everything a consumer wrote: ids, images,
messages, logs) and refreshed by a few lines of the node's own JavaScript, which re-fetches the
page's main part and follows a log through ``/dashboard/api/jobs/{id}/log``; nothing else is loaded.
Every path is under ``/dashboard``; its cookies are sent to nothing else on the listener.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
import structlog
from aiohttp import web

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.units import TokenUnits
from host import statuses
from host.engines.registry import EngineRegistry
from host.environments import EnvironmentCatalog
from host.errors import RequestError
from host.joblogs import StageLogs
from host.metrics import Census
from host.services.access import visible_stage, visible_workflow
from host.store import jobs, runner
from host.store import payments as payments_store
from host.store.jobs import JobView
from host.store.models import Payment, Stage, Workflow
from host.web import graph
from host.web.sessions import Session, Sessions, SignInError

log = structlog.get_logger()

ROOT = (
    "/dashboard"  # every page and call of the dashboard is under it (the rest of the listener is other faces)
)
SESSION_COOKIE = "c2d_session"
CHALLENGE_COOKIE = "c2d_challenge"
LISTED = 100  # stages, workflows and payments shown on the overview
LOG_BYTES = 256 * 1024  # most of a log one request returns
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript", "favicon.svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class EnvironmentRow:
    """An environment as the overview lists it."""

    id: str
    engine: str
    health: str
    running: int
    queued: int
    capacity: list[tuple[str, float, float, str]]  # resource id, held, total, unit


@dataclass(frozen=True, slots=True)
class PaymentRow:
    workflow_id: str
    status: str
    payer: str
    locked: str
    claimed: str
    created_at: float


class Dashboard:
    """The dashboard's routes over the node's parts (engines, environments, store, logs)."""

    def __init__(
        self,
        *,
        engines: EngineRegistry,
        catalog: EnvironmentCatalog,
        census: Callable[[], Census],
        logs: StageLogs,
        sessions: Sessions,
        secure_cookies: bool = False,
    ) -> None:
        self.engines = engines
        self.catalog = catalog
        self.census = census
        self.logs = logs
        self.sessions = sessions
        self.secure_cookies = secure_cookies
        self.templates = page_templates()

    def add_routes(self, app: web.Application) -> None:
        app.add_routes(
            [
                web.get(ROOT, self.to_overview),
                web.get(ROOT + "/", self.overview),
                web.get(ROOT + "/login", self.login_page),
                web.post(ROOT + "/login", self.login),
                web.get(ROOT + "/login/{code}", self.login_link),
                web.post(ROOT + "/logout", self.logout),
                web.get(ROOT + "/api/challenge", self.challenge_api),
                web.post(ROOT + "/api/links", self.link_api),
                web.get(ROOT + "/workflows/{workflow_id}", self.workflow_page),
                web.get(ROOT + "/jobs/{job_id}/log", self.log_page),
                web.get(ROOT + "/api/jobs/{job_id}/log", self.log_api),
                web.get(ROOT + "/static/{name}", self.static),
            ]
        )

    # -- signing in ---------------------------------------------------------------------

    async def login_page(self, request: web.Request, problem: str = "", status: int = 200) -> web.Response:
        challenge = self.sessions.challenge(_origin(request))
        response = self._page("login.html", None, status=status, challenge=challenge.text, problem=problem)
        response.set_cookie(
            CHALLENGE_COOKIE, challenge.id, max_age=300, httponly=True, samesite="Strict",
            secure=self.secure_cookies, path=ROOT + "/login",
        )  # fmt: skip
        return response

    async def login(self, request: web.Request) -> web.Response:
        try:
            token, session = self.sessions.sign_in(
                request.cookies.get(CHALLENGE_COOKIE, ""), await _signature(request)
            )
        except SignInError as exc:
            return await self.login_page(request, str(exc), status=401)
        log.info("dashboard sign-in", address=session.address, operator=session.operator)
        response = self._signed_in(token)
        response.del_cookie(CHALLENGE_COOKIE, path=ROOT + "/login")
        raise response

    def _signed_in(self, token: str) -> web.HTTPSeeOther:
        """To the overview, with the session's cookie (HttpOnly, SameSite=Strict: no script or other
        site sends or reads it)."""
        response = web.HTTPSeeOther(ROOT + "/")
        response.set_cookie(
            SESSION_COOKIE, token, max_age=int(self.sessions.session_seconds), httponly=True,
            samesite="Strict", secure=self.secure_cookies, path=ROOT,
        )  # fmt: skip
        return response

    async def challenge_api(self, request: web.Request) -> web.Response:
        """``{"id", "text"}``: a challenge for a program that signs in for a browser (``c2d dashboard``)."""
        challenge = self.sessions.challenge(_origin(request))
        return web.json_response({"id": challenge.id, "text": challenge.text})

    async def link_api(self, request: web.Request) -> web.Response:
        """``{"challenge", "signature"}`` -> ``{"url", "address", "operator"}``: a one-time sign-in link."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) for k in ("challenge", "signature")
        ):
            raise web.HTTPBadRequest(text='send JSON: {"challenge": "<id>", "signature": "<hex>"}\n')
        try:
            token, session = self.sessions.sign_in(body["challenge"], body["signature"])
        except SignInError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        log.info("dashboard sign-in link", address=session.address, operator=session.operator)
        url = f"{_origin(request)}{ROOT}/login/{self.sessions.link(token)}"
        return web.json_response({"url": url, "address": session.address, "operator": session.operator})

    async def login_link(self, request: web.Request) -> web.Response:
        token = self.sessions.redeem(request.match_info["code"])
        if token is None:
            return await self.login_page(request, "this sign-in link is used or expired: sign in again", 401)
        raise self._signed_in(token)

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.sign_out(request.cookies.get(SESSION_COOKIE, ""))
        response = web.HTTPSeeOther(ROOT + "/login")
        response.del_cookie(SESSION_COOKIE, path=ROOT)
        raise response

    def _session(self, request: web.Request, *, api: bool = False) -> Session:
        session = self.sessions.session(request.cookies.get(SESSION_COOKIE, ""))
        if session is None:
            if api:
                raise web.HTTPUnauthorized(text="sign in first\n")
            raise web.HTTPSeeOther(ROOT + "/login")
        return session

    # -- pages --------------------------------------------------------------------------

    async def to_overview(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther(ROOT + "/")

    async def overview(self, request: web.Request) -> web.Response:
        session = self._session(request)
        owner = None if session.operator else session.address
        active, workflows, paid = await runner.run(_overview_rows, owner)
        return self._page(
            "overview.html",
            session,
            engines=self.engines.describe() if session.operator else [],
            environments=await self._environments(),
            active=active,
            workflows=workflows,
            payments=self._payment_rows(paid),
        )

    async def workflow_page(self, request: web.Request) -> web.Response:
        session = self._session(request)
        workflow, views = await runner.run(_workflow_rows, request.match_info["workflow_id"], session)
        nodes = [graph.StageNode(v.job_id, v.stage_index, v.run_after, v.status, v.terminal) for v in views]
        payment = views[0].payment if views else None
        return self._page(
            "workflow.html",
            session,
            workflow=workflow,
            stages=views,
            layout=graph.layout(nodes),
            payment=self._payment_rows([payment])[0] if payment is not None else None,
        )

    async def log_page(self, request: web.Request) -> web.Response:
        session = self._session(request)
        stage = await runner.run(_stage_for, request.match_info["job_id"], session)
        return self._page("log.html", session, stage=stage)

    async def log_api(self, request: web.Request) -> web.Response:
        """``{"data", "offset", "ended"}``: the log from ``?offset=`` (whole lines while the stage runs)."""
        session = self._session(request, api=True)
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="offset must be a whole number of bytes\n") from None
        if offset < 0:
            raise web.HTTPBadRequest(text="offset must not be negative\n")
        stage = await runner.run(_stage_for, request.match_info["job_id"], session)
        complete = await self.logs.complete(stage)  # before reading: then what is read is all of it
        data = bytearray()
        try:
            async for chunk in self.logs.read(stage, offset, follow=False):
                data += chunk.data
                if len(data) >= LOG_BYTES:
                    break
        except RequestError as exc:
            raise web.HTTPBadRequest(text=exc.message + "\n") from None
        ended = complete and len(data) < LOG_BYTES
        if not ended and b"\n" in data:  # a line (and a character) is shown whole, once
            data = data[: data.rindex(b"\n") + 1]
        return web.json_response(
            {"data": data.decode("utf-8", "replace"), "offset": offset + len(data), "ended": ended}
        )

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(text="not found\n")
        body = resources.files("host.web").joinpath("static", name).read_bytes()
        response = web.Response(body=body, content_type=STATIC[name])
        response.headers["Cache-Control"] = "max-age=300"
        return response

    # -- what pages show ----------------------------------------------------------------

    def _page(self, name: str, session: Session | None, *, status: int = 200, **values: Any) -> web.Response:
        html = self.templates.get_template(name).render(session=session, **values)
        return web.Response(text=html, content_type="text/html", status=status)

    async def _environments(self) -> list[EnvironmentRow]:
        census = self.census()
        health = {s.name: s.health for s in self.engines.supervisors.values()}
        return [
            EnvironmentRow(
                id=env.id,
                engine=env.engine,
                health=_health_name(health.get(env.engine, common_pb2.ENGINE_HEALTH_UNSPECIFIED)),
                running=env.running_jobs,
                queued=env.queued_jobs,
                capacity=[
                    (r.id, census.granted.get((env.id, r.id), 0.0), r.total, r.unit) for r in env.resources
                ],
            )
            for env in await self.catalog.listing()
        ]

    def _payment_rows(self, rows: list[Payment]) -> list[PaymentRow]:
        units = self._token_units()
        return [
            _payment_row(row, units.get((int(row.chain_id), row.token.lower()), TokenUnits())) for row in rows
        ]

    def _token_units(self) -> Mapping[tuple[int, str], TokenUnits]:
        return {
            (int(fees.chain_id), fees.token_address.lower()): TokenUnits(
                fees.token_decimals, fees.token_symbol
            )
            for env in self.catalog.list()
            for fees in env.fees
            if fees.token_decimals or fees.token_symbol
        }


def page_templates() -> jinja2.Environment:
    """The pages' templates, escaping every value they are given (what consumers and engines wrote)."""
    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("host.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.globals["root"] = ROOT
    templates.filters.update(
        when=_when,
        status=statuses.name,
        tone=graph.tone,
        short=_short,
        health=_health_name,
        kind=_result_kind,
    )
    return templates


async def _signature(request: web.Request) -> str:
    """The sign-in form's signature; "" when the body is no form (bytes that are no text, say)."""
    try:
        form = await request.post()
    except ValueError:
        return ""
    value = form.get("signature")
    return value if isinstance(value, str) else ""


def _payment_row(row: Payment, units: TokenUnits) -> PaymentRow:
    return PaymentRow(
        workflow_id=row.workflow_id,
        status=row.status.replace("_", " "),
        payer=row.payer,
        locked=units.show(row.amount) if row.amount else "",
        claimed=units.show(row.claim_amount) if row.claim_amount else "",
        created_at=row.created_at,
    )


# -- on the database thread ------------------------------------------------------------------


def _overview_rows(owner: str | None) -> tuple[list[JobView], list[Workflow], list[Payment]]:
    return (
        jobs.active_views(owner, LISTED),
        jobs.recent_workflows(owner, LISTED),
        payments_store.recent(owner, LISTED),
    )


def _workflow_rows(workflow_id: str, session: Session) -> tuple[Workflow, list[JobView]]:
    if session.operator:
        workflow = jobs.workflow(workflow_id)
    else:
        workflow = _visible(visible_workflow, workflow_id, session.address)
    if workflow is None:
        raise web.HTTPNotFound(text="no such workflow\n")
    return workflow, jobs.workflow_views(workflow.id)


def _stage_for(job_id: str, session: Session) -> Stage:
    stage = jobs.stage(job_id) if session.operator else _visible(visible_stage, job_id, session.address)
    if stage is None:
        raise web.HTTPNotFound(text="no such job\n")
    return stage


def _visible(check: Callable[[str, str], Any], key: str, caller: str) -> Any:
    """What ``check`` (a :mod:`host.services.access` lookup) finds, or None where the caller may not see it."""
    try:
        return check(key, caller)
    except RequestError:
        return None


# -- template filters -------------------------------------------------------------------------


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(value: str, keep: int = 10) -> str:
    return value if len(value) <= keep + 1 else value[:keep] + "…"


def _health_name(value: int) -> str:
    try:
        return common_pb2.EngineHealth.Name(value).removeprefix("ENGINE_HEALTH_").lower()
    except ValueError:
        return "unknown"


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _result_kind(kind: int) -> str:
    try:
        return compute_pb2.ResultKind.Name(kind).removeprefix("RESULT_KIND_").lower().replace("_", " ")
    except ValueError:
        return "result"
