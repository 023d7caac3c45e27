"""The orchestrator's v1 API through the official client (``bacalhau_apiclient``), with errors in words.

Requests and answers travel as the API's own JSON (``Job``, ``Tasks``,
``ComputeState``...): bodies are plain dicts, which the client sends as they
are, and answers are read raw (``_preload_content=False``) and parsed here,
because the client's generated models drop what its schema leaves untyped
(a job's ``State``, an execution's ``ComputeState`` and ``RunOutput``) and
expect a version answer of another shape than the orchestrator sends.

An :class:`ApiException` is an answer (404, 400, 401...), turned into a
:class:`BacalhauError` with the orchestrator's own message; anything else a
call raises (refused, reset, timed out, a proxy's 502/503/504) means the
orchestrator could not be reached, which jobs wait out instead of failing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bacalhau_apiclient
import grpc
import urllib3
from bacalhau_apiclient.api.ops_api import OpsApi
from bacalhau_apiclient.api.orchestrator_api import OrchestratorApi
from bacalhau_apiclient.rest import ApiException

from c2d.plugin.kit.errors import EngineError

NOT_FOUND = 404
UNAUTHORIZED = 401
FORBIDDEN = 403
UNAVAILABLE_STATUSES = (502, 503, 504)
LIST_PAGE = 100
# Pages of a job listing read at most (100 jobs each): a bound on what one ListJobs costs.
MAX_PAGES = 100

Obj = dict[str, Any]


class BacalhauError(Exception):
    """The orchestrator answered with an error: its HTTP status and its own message."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(f"{status}: {message}" if message else str(status))
        self.status = status
        self.message = message
        self.code = code

    @property
    def refused_credentials(self) -> bool:
        return self.status in (UNAUTHORIZED, FORBIDDEN)


def is_unreachable(exc: BaseException) -> bool:
    """Whether a call failed because the orchestrator could not be reached (or its proxy said so)."""
    if isinstance(exc, BacalhauError):
        return exc.status in UNAVAILABLE_STATUSES or exc.status == 0
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    """A short reason for an operator: the orchestrator's own message, or the innermost connection error."""
    if isinstance(exc, BacalhauError):
        return str(exc)
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "certificate verify failed",
    ):
        if marker in text:
            return marker.lower()
    return text[:300] or type(exc).__name__


def engine_error(exc: BacalhauError, doing: str) -> EngineError:
    """The orchestrator's refusal as the engine's own error: a gRPC status an operator can act on."""
    if exc.refused_credentials:
        code = grpc.StatusCode.FAILED_PRECONDITION
        hint = ": set token in [engines.bacalhau]"
    elif exc.status == NOT_FOUND:
        code, hint = grpc.StatusCode.NOT_FOUND, ""
    elif 400 <= exc.status < 500:
        code, hint = grpc.StatusCode.INVALID_ARGUMENT, ""
    else:
        code, hint = grpc.StatusCode.UNAVAILABLE, ""
    return EngineError(code, f"{doing}: the Bacalhau orchestrator answered {exc}{hint}")


def error_of(exc: ApiException) -> BacalhauError:
    """The orchestrator's error answer ``{"Status", "Message", "Code", "Component"}`` as a BacalhauError."""
    message, code = "", ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        body = json.loads(exc.body or "{}")
        message = str(body.get("Message") or body.get("message") or "")
        code = str(body.get("Code") or "")
    return BacalhauError(int(exc.status or 0), message or str(exc.reason or ""), code)


def _json(response: Any) -> Any:
    data = response.data
    return json.loads(data) if data else {}


@dataclass(frozen=True)
class Connection:
    """Where the orchestrator is and how to call it: a Configure changing it needs a new client."""

    url: str
    token: str | None
    timeout: float


class Orchestrator:
    """One orchestrator's API: each method is one call, its answer as JSON."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        configuration = bacalhau_apiclient.Configuration()
        configuration.host = connection.url.rstrip("/")
        header = ("Authorization", f"Bearer {connection.token}") if connection.token else (None, None)
        client = bacalhau_apiclient.ApiClient(configuration, header_name=header[0], header_value=header[1])
        self._ops = OpsApi(client)
        self._jobs = OrchestratorApi(client)

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def _timeout(self) -> tuple[float, float]:
        """(connect, read) seconds: the client takes an int or a pair, and silently ignores a float."""
        return (self.connection.timeout, self.connection.timeout)

    def _list_call(self, query: list[tuple[str, Any]]) -> Any:
        client = self._jobs.api_client
        try:
            response = client.call_api(
                "/api/v1/orchestrator/jobs",
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                response_type="ApiListJobsResponse",
                auth_settings=[],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            raise error_of(exc) from None
        return _json(response)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            response = method(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
        except ApiException as exc:
            raise error_of(exc) from None
        return _json(response)

    # Agent -------------------------------------------------------------------------

    def alive(self) -> Obj:
        answer = self._call(self._ops.agentalive)
        return answer if isinstance(answer, dict) else {}

    def version(self) -> str:
        """The orchestrator's GitVersion (``BuildVersionInfo`` in v1.9, the fields themselves before)."""
        answer = self._call(self._ops.agentversion)
        info = answer.get("BuildVersionInfo", answer) if isinstance(answer, dict) else {}
        return str((info or {}).get("GitVersion") or "unknown")

    def nodes(self) -> list[Obj]:
        answer = self._call(self._jobs.orchestratorlist_nodes)
        # v1.9 answers {"Nodes": [...]}; the contract and older versions said "Items".
        items = (
            (answer.get("Nodes") or answer.get("nodes") or answer.get("Items"))
            if isinstance(answer, dict)
            else None
        )
        return [n for n in items or [] if isinstance(n, dict)]

    # Jobs --------------------------------------------------------------------------

    def put_job(self, job: Obj, idempotency_token: str) -> str:
        """Submits ``job`` once; its Bacalhau job id.

        v1.9 takes an IdempotencyToken but does not act on it: what makes a submission idempotent
        is the job's Name, unique in its namespace. So a job of that name already there is the
        submission (its id is returned, nothing is sent), and a PUT refused with "no changes
        detected" (the same name and spec, sent concurrently) is too."""
        existing = self.job_id_by_name(str(job["Name"]))
        if existing is not None:
            return existing
        try:
            answer = self._call(
                self._jobs.orchestratorput_job, {"Job": job, "IdempotencyToken": idempotency_token}
            )
        except BacalhauError as exc:
            found = (
                self.job_id_by_name(str(job["Name"]))
                if "no changes detected" in exc.message.lower()
                else None
            )
            if found is None:
                raise
            return found
        job_id = answer.get("JobID") if isinstance(answer, dict) else None
        if not job_id:
            raise BacalhauError(0, "the orchestrator accepted the job but named no JobID")
        return str(job_id)

    def job_id_by_name(self, name: str) -> str | None:
        """The id of the job called ``name`` (``GET /jobs/{idOrName}`` resolves names first), or None."""
        try:
            answer = self._call(self._jobs.orchestratorget_job, name)
        except BacalhauError as exc:
            if exc.status == NOT_FOUND:
                return None
            raise
        job = answer.get("Job") if isinstance(answer, dict) else None
        if not isinstance(job, dict) or job.get("Name") != name or not job.get("ID"):
            return None
        return str(job["ID"])

    def get_job(self, job_id: str) -> Obj:
        """The job with its executions: ``{"Job": ..., "Executions": {"Items": [...]}}``."""
        answer = self._call(self._jobs.orchestratorget_job, job_id, include="executions")
        return answer if isinstance(answer, dict) else {}

    def stop_job(self, job_id: str, reason: str) -> None:
        self._call(self._jobs.orchestratorstop_job, job_id, reason=reason)

    def list_jobs(self, labels: dict[str, str]) -> Iterator[Obj]:
        """The namespace's jobs with these labels, page by page.

        The 1.4.1 client's ``orchestratorlist_jobs`` has no label argument, so the call goes through
        its ``call_api`` with v1.9's ``labels`` query parameters (one selector each); callers still
        check the labels, for an orchestrator that ignores the filter."""
        token: str | None = None
        for _ in range(MAX_PAGES):
            query: list[tuple[str, Any]] = [("labels", f"{k}={v}") for k, v in sorted(labels.items())]
            query.append(("limit", LIST_PAGE))
            if token:
                query.append(("next_token", token))
            answer = self._list_call(query)
            if not isinstance(answer, dict):
                return
            for job in answer.get("Items") or []:
                if isinstance(job, dict):
                    yield job
            token = answer.get("NextToken") or None
            if not token:
                return
