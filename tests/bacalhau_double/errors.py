"""Bacalhau's API error body (``apimodels.APIError``) and the errors the double answers with.

Every failure goes out as ``{"Status", "Message", "RequestID", "Code", "Component", "Hint"?,
"Details"?}`` with ``Status`` equal to the HTTP status, as ``middleware.CustomHTTPErrorHandler``
writes it. The constructors below reproduce the messages, codes and components of the v1.9 code
paths the double imitates (job store, authorizer, echo's binder and validator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    """An error answered to the client; ``status`` is the HTTP status (Bacalhau infers it from Code)."""

    status: int
    message: str
    code: str = ""
    component: str = "Bacalhau"
    hint: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def body(self, request_id: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {
            "Status": self.status,
            "Message": self.message,
            "RequestID": request_id,
            "Code": self.code,
            "Component": self.component,
        }
        if self.hint:
            out["Hint"] = self.hint
        if self.details:
            out["Details"] = dict(self.details)
        return out


def job_not_found(id_or_name: str) -> ApiError:
    """``jobstore.NewErrJobNotFound``: what GET/DELETE on an unknown job or name answers."""
    return ApiError(404, f"job not found: {id_or_name}", "NotFound", "JobStore")


def node_not_found(node_id: str) -> ApiError:
    return ApiError(404, f"node not found: {node_id}", "NotFound", "NodeManager")


def route_not_found() -> ApiError:
    """Echo's 404 for an unknown path, as the error handler rewrites it."""
    return ApiError(
        404,
        "The requested resource/URL was not found.",
        "NotFound",
        "APIServer",
        "The server version may be older than this CLI version and does not support the endpoint yet.",
        {
            "cli_usage": "If you are using the CLI, try updating your server to a newer version or check "
            "if the command is supported in your server version."
        },
    )


def method_not_allowed() -> ApiError:
    return ApiError(405, "Method Not Allowed", "InternalError", "APIServer")


def bad_request(message: str) -> ApiError:
    """An ``echo.HTTPError`` 400 (bind or validation failure): the handler gives it Code InternalError."""
    return ApiError(400, message, "InternalError", "APIServer")


def unauthorized(reason: str) -> ApiError:
    """The authorizer's refusal of a request without a valid token."""
    return ApiError(
        401,
        "Request Unauthorized",
        "Unauthorized",
        "Authorizer",
        "Unauthorized principal. Event has been recorded.",
        {"reason": reason},
    )


def no_changes(name: str, job_id: str) -> ApiError:
    """SubmitJob's answer to a job whose Name exists with the same spec (a bacerror without a code: 500)."""
    return ApiError(
        500,
        f"no changes detected for new job spec. Job Name: '{name}', Job Id: '{job_id}'",
        hint="Use the --force flag to override this warning",
    )


def cannot_stop(state: str) -> ApiError:
    return ApiError(500, f"cannot stop job in state {state}")
