"""API errors as the real API server reports them: an HTTP code and a ``Status`` body.

The official client raises ``kubernetes.client.ApiException`` with ``.status`` = the HTTP code and
``.body`` = the JSON text, so engines branch on the code (404, 409, 410, 422...) and sometimes on
``reason``; both must match what a real cluster sends.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed request; :meth:`status` is the ``Status`` object sent as the response body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        return failure_status(self.code, self.reason, self.message, self.details)


def failure_status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def success_status(details: dict[str, Any]) -> dict[str, Any]:
    """What a DELETE of an object removed at once returns for most resources."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _details(resource: str, name: str | None, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"kind": resource}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def qualified(resource: str, group: str) -> str:
    """``pods`` or ``networkpolicies.networking.k8s.io``: how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        details=_details(resource, name, group),
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        details=_details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str = "", why: str = "") -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        details=_details(resource, name, group),
    )


def forbidden(resource: str, name: str, why: str, group: str = "") -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{qualified(resource, group)} "{name}" is forbidden: {why}',
        details=_details(resource, name, group),
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> ApiError:
    """422 for a body that fails validation; ``causes`` are ``(field, message)`` pairs."""
    listed = [f"{field}: {message}" for field, message in causes]
    text = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    details = _details(kind, name, group)
    details["causes"] = [
        {"reason": _cause_reason(message), "message": message, "field": field} for field, message in causes
    ]
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details=details)


def _cause_reason(message: str) -> str:
    if message.startswith("Required value"):
        return "FieldValueRequired"
    if message.startswith("Duplicate value"):
        return "FieldValueDuplicate"
    if message.startswith("Unsupported value"):
        return "FieldValueNotSupported"
    if message.startswith("Forbidden"):
        return "FieldValueForbidden"
    return "FieldValueInvalid"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    """410 for a resourceVersion older than the history kept (the real server says "Expired")."""
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
    )


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got "{content_type}"',
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")
