"""Thin helpers over the official client: JSON in and out, idempotent create and delete, errors in words.

Objects travel as plain dicts (the API's own JSON, camelCase), which the
client passes through unchanged; answers are read raw (``_preload_content=False``)
and parsed as JSON, so the rest of the engine reads ``pod["status"]["phase"]``
exactly as ``kubectl get -o json`` shows it.

An :class:`ApiException` is an answer (404, 409, 403...); anything else a
call raises (refused, reset, timed out, a proxy's 502/503/504) means the API
could not be reached, which jobs wait out instead of failing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.quantity import parse_quantity

NOT_FOUND = 404
CONFLICT = 409
GONE = 410
UNAUTHORIZED = 401
FORBIDDEN = 403
UNAVAILABLE_STATUSES = (502, 503, 504)

Obj = dict[str, Any]


def status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def is_unreachable(exc: BaseException) -> bool:
    """Whether a call failed because the API server could not be reached (or its proxy said so)."""
    if isinstance(exc, ApiException):
        return exc.status in UNAVAILABLE_STATUSES or exc.status == 0
    return isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    """A short reason for an operator: the API's own message, or the innermost connection error."""
    if isinstance(exc, ApiException):
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(exc.body or "{}").get("message") or "")
        return f"{exc.status} {exc.reason or ''}".strip() + (f": {message}" if message else "")
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "certificate verify failed",
    ):
        if marker in text:
            return marker.lower() if marker != "timed out" else "the call timed out"
    reason = getattr(exc, "reason", None)
    return str(reason or text)[:300] or type(exc).__name__


def read(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
    """Calls ``call`` and returns its JSON answer as a dict."""
    response = call(*args, _preload_content=False, **kwargs)
    try:
        return dict(json.loads(response.data or b"{}"))
    finally:
        response.release_conn()


def read_or_none(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj | None:
    """The object, or None when it does not exist."""
    try:
        return read(call, *args, **kwargs)
    except ApiException as exc:
        if exc.status == NOT_FOUND:
            return None
        raise


def create(
    create_call: Callable[..., Any], read_call: Callable[..., Any], namespace: str, body: Obj, **kwargs: Any
) -> Obj:
    """Creates the object, or returns the one already there (a retry, a restarted plugin)."""
    try:
        return read(create_call, namespace, body, **kwargs)
    except ApiException as exc:
        if exc.status != CONFLICT:
            raise
    existing = read_or_none(read_call, body["metadata"]["name"], namespace, **kwargs)
    if existing is None:  # deleted in between: make it again
        return read(create_call, namespace, body, **kwargs)
    return existing


def delete(delete_call: Callable[..., Any], name: str, namespace: str, **kwargs: Any) -> bool:
    """Deletes the object; whether it was there. A missing object is fine (deletion is idempotent)."""
    try:
        read(delete_call, name, namespace, **kwargs)
    except ApiException as exc:
        if exc.status == NOT_FOUND:
            return False
        raise
    return True


def items(listed: Obj) -> list[Obj]:
    return list(listed.get("items") or [])


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def annotation(obj: Obj, key: str) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key, ""))


def quantity(value: object) -> Decimal:
    """A resource quantity (``3800m``, ``16Gi``, ``1e3``) as a number; 0 when unreadable."""
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)
