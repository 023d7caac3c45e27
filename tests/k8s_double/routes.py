"""REST routing: which verb a method and URL mean, as in the real API's URL scheme.

- ``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}[/{version}]``, ``/version``, ``/healthz``...
- ``/api/v1/{resource}`` and ``/apis/{group}/{version}/{resource}``: a cluster-scoped collection,
  or every namespace's objects of a namespaced resource (list and watch only);
- ``.../namespaces/{ns}/{resource}[/{name}[/{subresource}]]``: namespaced objects;
- ``/api/v1/{resource}/{name}[/{subresource}]`` for cluster-scoped ones (namespaces, nodes).

GET on a collection lists (or watches with ``watch=true``), POST creates, DELETE deletes the
collection; on an object GET reads, PUT replaces, PATCH patches, DELETE deletes; ``/status`` and
``/finalize`` address the subresources, ``pods/{name}/log`` the logs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import errors, logs, resources, watch
from .api import Api, DeleteOptions
from .kubelet import Kubelet
from .resources import Resource
from .selectors import FieldSelector, LabelSelector, object_matcher


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str = ""
    body: bytes = b""

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise errors.bad_request(f"the body of the request could not be decoded as JSON: {exc}") from None


@dataclass
class Response:
    code: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    stream: Iterator[bytes] | None = field(default=None, repr=False)

    @classmethod
    def json(cls, obj: Any, code: int = 200) -> Response:
        return cls(code, json.dumps(obj).encode())


@dataclass(frozen=True)
class Target:
    resource: Resource
    namespace: str | None  # None: cluster-scoped, or every namespace for a collection
    name: str | None
    subresource: str | None


def parse_target(path: str) -> Target | None:
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    nested = resources.lookup(group, version, rest[2]) if rest[0] == "namespaces" and len(rest) >= 3 else None
    if nested is not None and nested.namespaced:
        resource, namespace, tail = nested, rest[1], rest[3:]
    else:
        found = resources.lookup(group, version, rest[0])
        if found is None or (found.namespaced and len(rest) > 1):
            return None
        resource, namespace, tail = found, None, rest[1:]
    if len(tail) > 2 or (len(tail) == 2 and tail[1] not in resource.subresources):
        return None
    return Target(resource, namespace, tail[0] if tail else None, tail[1] if len(tail) == 2 else None)


class Router:
    def __init__(self, api: Api, kubelet: Kubelet, server_address: Callable[[], str]) -> None:
        self.api = api
        self.kubelet = kubelet
        self.server_address = server_address

    def handle(self, request: Request) -> Response:
        discovered = self._discovery(request.path.rstrip("/") or "/")
        if discovered is not None:
            if request.method != "GET":
                raise errors.method_not_allowed(request.method)
            return discovered
        target = parse_target(request.path)
        if target is None:
            raise errors.path_not_found()
        if target.name is None:
            return self._collection(request, target)
        return self._object(request, target)

    def _discovery(self, path: str) -> Response | None:
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return Response.json(resources.VERSION_INFO)
        if path == "/api":
            return Response.json(resources.api_versions(self.server_address()))
        if path == "/apis":
            return Response.json(resources.api_group_list())
        parts = path.strip("/").split("/")
        document = None
        if parts == ["api", "v1"]:
            document = resources.api_resource_list("", "v1")
        elif parts[0] == "apis" and len(parts) == 2:
            document = resources.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            document = resources.api_resource_list(parts[1], parts[2])
        return Response.json(document) if document is not None else None

    # collections ---------------------------------------------------------------------------------

    def _collection(self, request: Request, target: Target) -> Response:
        resource, query = target.resource, request.query
        labels = LabelSelector.parse(query.get("labelSelector"))
        fields = FieldSelector.parse(query.get("fieldSelector"), resource.field_labels)
        across = resource.namespaced and target.namespace is None
        namespace = target.namespace or ""
        if request.method == "GET" and logs.truthy(query.get("watch")):
            return self._watch(target, labels, fields, query)
        if request.method == "GET":
            limit = _int(query, "limit")
            listing = self.api.list(
                resource, None if across else namespace, labels, fields, limit, query.get("continue")
            )
            return Response.json(listing)
        if across:
            raise errors.method_not_allowed(request.method)
        if request.method == "POST":
            created = self.api.create(resource, namespace, request.json(), dry_run=_dry_run(query))
            return Response.json(created, 201)
        if request.method == "DELETE":
            options = DeleteOptions.parse(query, request.json())
            return Response.json(self.api.delete_collection(resource, namespace, labels, fields, options))
        raise errors.method_not_allowed(request.method)

    def _watch(
        self, target: Target, labels: LabelSelector, fields: FieldSelector, query: dict[str, str]
    ) -> Response:
        since = _int(query, "resourceVersion")
        timeout = _int(query, "timeoutSeconds")
        matcher = object_matcher(labels, fields)
        events = watch.stream(
            self.api.store,
            target.resource,
            target.namespace if target.resource.namespaced else None,
            matcher,
            since,
            float(timeout) if timeout else watch.DEFAULT_TIMEOUT,
        )
        return Response(stream=events)

    # objects -------------------------------------------------------------------------------------

    def _object(self, request: Request, target: Target) -> Response:
        resource, name, sub = target.resource, target.name or "", target.subresource
        namespace = target.namespace or ""
        if sub == "log":
            if request.method != "GET":
                raise errors.method_not_allowed(request.method)
            return self._log(namespace, name, request.query)
        dry_run = _dry_run(request.query)
        match request.method:
            case "GET":
                return Response.json(self.api.read(resource, namespace, name))
            case "PUT":
                return Response.json(
                    self.api.replace(resource, namespace, name, request.json(), sub, dry_run=dry_run)
                )
            case "PATCH":
                patched = self.api.patch(
                    resource, namespace, name, request.json(), request.content_type, sub, dry_run=dry_run
                )
                return Response.json(patched)
            case "DELETE" if sub is None:
                code, body = self.api.delete(
                    resource, namespace, name, DeleteOptions.parse(request.query, request.json())
                )
                return Response.json(body, code)
        raise errors.method_not_allowed(request.method)

    def _log(self, namespace: str, name: str, query: dict[str, str]) -> Response:
        result = logs.pod_log(self.api, self.kubelet, namespace, name, query)
        if isinstance(result, bytes):
            return Response(200, result, "text/plain")
        return Response(200, content_type="text/plain", stream=result)


def _int(query: dict[str, str], key: str) -> int | None:
    if query.get(key) in (None, ""):
        return None
    try:
        return int(query[key])
    except ValueError:
        raise errors.bad_request(f"{key}: invalid value {query[key]!r}: must be an integer") from None


def _dry_run(query: dict[str, str]) -> bool:
    return query.get("dryRun") == "All"
