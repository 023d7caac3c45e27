"""The API verbs (create, read, list, replace, patch, delete, deletecollection) over the object store.

This is the API server proper, independent of HTTP: it decodes bodies, validates and defaults them,
admits them (namespace exists and is not terminating, quota), enforces ``resourceVersion``
preconditions (409 Conflict), keeps ``status`` apart from the main resource, and implements
deletion as the real server does:

- an object with finalizers, or deleted with ``propagationPolicy: Foreground`` or ``Orphan``, gets a
  ``deletionTimestamp`` and stays until its finalizers are gone (the garbage collector removes
  ``foregroundDeletion`` once the dependents are gone, ``orphan`` once they are orphaned);
- a scheduled, still running pod deleted with a grace period > 0 stays until the kubelet has
  stopped its containers (``deletionGracePeriodSeconds`` is the grace period), then goes;
- a pod that is terminal, unscheduled or deleted with ``gracePeriodSeconds=0`` goes at once, the
  kubelet removing its containers afterwards;
- a namespace goes Terminating and is removed by the namespace controller once it is empty;
- with the default ``Background`` policy an owner goes at once and the garbage collector deletes
  its dependents afterwards.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import defaults, errors, patching, quota
from .objects import Obj, ObjectStore
from .resources import NAMESPACES, PODS, PVCS, Resource
from .selectors import FieldSelector, LabelSelector, object_matcher
from .validation import validate

_SYSTEM_METADATA = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_RETURNS_DELETED_OBJECT = (PODS, PVCS, NAMESPACES)
_TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class DeleteOptions:
    """``metav1.DeleteOptions`` from the query string and/or the body, the body winning."""

    propagation_policy: str | None = None
    grace_period_seconds: int | None = None
    preconditions: dict[str, Any] | None = None
    dry_run: bool = False

    @classmethod
    def parse(cls, query: dict[str, str], body: Any) -> DeleteOptions:
        body = body if isinstance(body, dict) else {}
        policy = body.get("propagationPolicy") or query.get("propagationPolicy")
        orphan = body.get("orphanDependents", query.get("orphanDependents"))
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan in (True, "true") else "Background"
        if policy not in (None, "Foreground", "Background", "Orphan"):
            raise errors.bad_request(f'propagationPolicy: Unsupported value: "{policy}"')
        grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        try:
            grace = None if grace is None else int(grace)
        except ValueError:
            raise errors.bad_request(f"gracePeriodSeconds: invalid value {grace!r}") from None
        dry_run = bool(body.get("dryRun") or query.get("dryRun"))
        return cls(policy, grace, body.get("preconditions"), dry_run)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def strip_type(obj: Obj) -> Obj:
    """List items carry no ``kind``/``apiVersion`` on a real server; engines must not rely on them."""
    obj.pop("kind", None)
    obj.pop("apiVersion", None)
    return obj


class Api:
    """The verbs of the REST API; every method raises :class:`errors.ApiError` as the server answers."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._awaiting_kubelet: set[str] = set()  # uids of pods deleted gracefully, kubelet not done yet

    # create / read / list ----------------------------------------------------------------------

    def create(self, resource: Resource, namespace: str, body: Any, *, dry_run: bool = False) -> Obj:
        obj = self._decode(resource, namespace, body)
        metadata = obj["metadata"]
        with self.store.lock:
            if resource.namespaced:
                self._require_live_namespace(resource, namespace, metadata.get("name") or "")
            if not metadata.get("name") and metadata.get("generateName"):
                metadata["name"] = self._fresh_name(resource, namespace, metadata["generateName"])
            validate(resource, obj)
            defaults.apply(resource, obj)
            quota.admit(self.store, resource, obj)
            if dry_run:
                return obj
            return self.store.create(resource, obj)

    def _decode(self, resource: Resource, namespace: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request must be a {resource.kind} object")
        if body.get("apiVersion") not in (None, resource.api_version):
            raise errors.bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the expected API version "
                f"({resource.api_version})"
            )
        if body.get("kind") not in (None, resource.kind):
            raise errors.bad_request(
                f"the kind in the data ({body['kind']}) does not match the expected kind ({resource.kind})"
            )
        obj = copy.deepcopy(body)
        metadata = obj.get("metadata") or {}
        obj["metadata"] = metadata
        if resource.namespaced:
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        return obj

    def _require_live_namespace(self, resource: Resource, namespace: str, name: str) -> None:
        found = self.store.find(NAMESPACES, "", namespace)
        if found is None:
            raise errors.not_found("namespaces", namespace)
        if found["metadata"].get("deletionTimestamp"):
            why = f"unable to create new content in namespace {namespace} because it is being terminated"
            raise errors.forbidden(resource.plural, name, why, resource.group)

    def _fresh_name(self, resource: Resource, namespace: str, prefix: str) -> str:
        for _ in range(100):
            name = defaults.generate_name(prefix)
            if self.store.find(resource, namespace, name) is None:
                return name
        raise errors.ApiError(500, "InternalError", "could not generate a unique name")

    def read(self, resource: Resource, namespace: str, name: str) -> Obj:
        return self.store.get(resource, namespace, name)

    def list(
        self,
        resource: Resource,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        """A ``<Kind>List``; ``limit``/``continue`` page through the current state (no snapshot)."""
        with self.store.lock:
            items = self.store.list(resource, namespace)
            resource_version = self.store.resource_version
        matcher = object_matcher(labels or LabelSelector(), fields or FieldSelector())
        items = [item for item in items if matcher(item)]
        if continue_token:
            after, resource_version = _decode_continue(continue_token)
            items = [item for item in items if _position(item) > after]
        metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
        if limit and len(items) > limit:
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            metadata["continue"] = _encode_continue(_position(items[-1]), resource_version)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": [strip_type(item) for item in items],
        }

    # update ------------------------------------------------------------------------------------

    def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: Any,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        obj = self._decode(resource, namespace, body)
        if obj["metadata"].get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the name on the URL ({name})"
            )
        with self.store.lock:
            old = self.store.get(resource, namespace, name)
            self._check_resource_version(resource, old, obj)
            return self._update(resource, old, obj, subresource, dry_run)

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        with self.store.lock:
            old = self.store.get(resource, namespace, name)
            patched = patching.apply(content_type, old, patch)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            patched.setdefault("metadata", {})
            for field in ("name", "namespace"):
                if patched["metadata"].get(field) != old["metadata"].get(field):
                    raise errors.invalid(
                        resource.kind, name, [(f"metadata.{field}", "Invalid value: field is immutable")]
                    )
            self._check_resource_version(resource, old, patched)
            return self._update(resource, old, patched, subresource, dry_run)

    def _check_resource_version(self, resource: Resource, old: Obj, new: Obj) -> None:
        wanted = new["metadata"].get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.plural, old["metadata"]["name"], resource.group)

    def _update(self, resource: Resource, old: Obj, new: Obj, subresource: str | None, dry_run: bool) -> Obj:
        new = self._carry_over(resource, old, new, subresource)
        validate(resource, new, old)
        if dry_run:
            return new
        stored = self.store.update(resource, new)
        self.finalize_if_ready(resource, stored)
        return stored

    @staticmethod
    def _carry_over(resource: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
        """What an update may not change: system metadata, and status or spec depending on the endpoint."""
        if subresource == "status":
            return {**copy.deepcopy(old), "status": copy.deepcopy(new.get("status") or {})}
        if subresource == "finalize":
            return {**copy.deepcopy(old), "spec": copy.deepcopy(new.get("spec") or {})}
        result = copy.deepcopy(new)
        result["kind"], result["apiVersion"] = resource.kind, resource.api_version
        metadata = result.setdefault("metadata", {})
        for field in _SYSTEM_METADATA:
            if field in old["metadata"]:
                metadata[field] = old["metadata"][field]
            else:
                metadata.pop(field, None)
        if resource.has_status:
            result["status"] = copy.deepcopy(old.get("status") or {})
        if resource == NAMESPACES:
            result["spec"] = copy.deepcopy(old.get("spec") or {})
        if "stringData" in result:
            defaults.apply_secret_string_data(result)
        return result

    # delete ------------------------------------------------------------------------------------

    def delete(
        self, resource: Resource, namespace: str, name: str, options: DeleteOptions
    ) -> tuple[int, Obj]:
        """``(http code, body)``: the object (being deleted, or as it was) or a Success Status."""
        with self.store.lock:
            obj = self.store.get(resource, namespace, name)
            self._check_preconditions(resource, obj, options)
            metadata = obj["metadata"]
            if options.dry_run:
                return 200, obj
            if metadata.get("deletionTimestamp"):
                return self._delete_again(resource, obj, options)
            finalizers = list(metadata.get("finalizers") or [])
            if options.propagation_policy == "Orphan":
                finalizers.append("orphan")
            elif options.propagation_policy == "Foreground":
                finalizers.append("foregroundDeletion")
            grace = self._grace_period(resource, obj, options)
            if not finalizers and grace is None and resource != NAMESPACES:
                removed = self.store.remove(resource, namespace, name)
                return 200, removed if resource in _RETURNS_DELETED_OBJECT else self._deleted_status(
                    resource, removed
                )
            return self._begin_deletion(resource, obj, finalizers, grace, options)

    def _begin_deletion(
        self, resource: Resource, obj: Obj, finalizers: list[str], grace: int | None, options: DeleteOptions
    ) -> tuple[int, Obj]:
        metadata = obj["metadata"]
        metadata["deletionTimestamp"] = _rfc3339(datetime.now(UTC) + timedelta(seconds=grace or 0))
        metadata["deletionGracePeriodSeconds"] = grace or 0
        if finalizers:
            metadata["finalizers"] = finalizers
        if resource == NAMESPACES:
            obj.setdefault("status", {})["phase"] = "Terminating"
        if resource == PODS and grace is not None:
            self._awaiting_kubelet.add(metadata["uid"])
        stored = self.store.update(resource, obj)
        self.finalize_if_ready(resource, stored)
        return 200, stored

    def _delete_again(self, resource: Resource, obj: Obj, options: DeleteOptions) -> tuple[int, Obj]:
        """A second DELETE of a terminating pod may shorten its grace period; 0 removes it at once."""
        grace, metadata = options.grace_period_seconds, obj["metadata"]
        if resource != PODS or grace is None or grace >= metadata.get("deletionGracePeriodSeconds", 0):
            return 200, obj
        if grace == 0:
            self._awaiting_kubelet.discard(metadata["uid"])
            if not metadata.get("finalizers"):
                return 200, self.store.remove(resource, metadata["namespace"], metadata["name"])
        metadata["deletionGracePeriodSeconds"] = grace
        metadata["deletionTimestamp"] = _rfc3339(datetime.now(UTC) + timedelta(seconds=grace))
        return 200, self.store.update(resource, obj)

    @staticmethod
    def _deleted_status(resource: Resource, removed: Obj) -> Obj:
        details = {
            "name": removed["metadata"]["name"],
            "kind": resource.plural,
            "uid": removed["metadata"]["uid"],
        }
        if resource.group:
            details["group"] = resource.group
        return errors.success_status(details)

    @staticmethod
    def _check_preconditions(resource: Resource, obj: Obj, options: DeleteOptions) -> None:
        wanted = options.preconditions or {}
        for field in ("uid", "resourceVersion"):
            if wanted.get(field) and wanted[field] != obj["metadata"].get(field):
                why = f"Precondition failed: {field}: {wanted[field]}, {field} in object meta: {obj['metadata'].get(field)}"
                raise errors.conflict(resource.plural, obj["metadata"]["name"], resource.group, why)

    @staticmethod
    def _grace_period(resource: Resource, obj: Obj, options: DeleteOptions) -> int | None:
        """Seconds the kubelet gets to stop a pod; None when the pod goes at once, as the real server rules."""
        if resource != PODS:
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in _TERMINAL:
            return None
        grace = options.grace_period_seconds
        grace = spec.get("terminationGracePeriodSeconds", 30) if grace is None else grace
        return grace if grace > 0 else None

    def delete_collection(
        self,
        resource: Resource,
        namespace: str,
        labels: LabelSelector,
        fields: FieldSelector,
        options: DeleteOptions,
    ) -> Obj:
        listing = self.list(resource, namespace, labels, fields)
        deleted = []
        for item in listing["items"]:
            try:
                _, obj = self.delete(resource, namespace, item["metadata"]["name"], options)
            except errors.ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            deleted.append(strip_type(obj) if obj.get("kind") == resource.kind else item)
        listing["items"] = deleted
        listing["metadata"] = {"resourceVersion": str(self.store.resource_version)}
        return listing

    # for controllers and the kubelet -------------------------------------------------------------

    def finalize_if_ready(self, resource: Resource, obj: Obj) -> bool:
        """Remove an object being deleted once nothing holds it any more; True if it went."""
        metadata = obj["metadata"]
        if not metadata.get("deletionTimestamp") or metadata.get("finalizers"):
            return False
        if resource == NAMESPACES and (obj.get("spec") or {}).get("finalizers"):
            return False
        if resource == PODS and metadata["uid"] in self._awaiting_kubelet:
            return False
        with self.store.lock:
            current = self.store.find(resource, metadata.get("namespace", ""), metadata["name"])
            if current is None or current["metadata"]["uid"] != metadata["uid"]:
                return False
            self.store.remove(resource, metadata.get("namespace", ""), metadata["name"])
        return True

    def release_pod(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet has stopped and removed the pod's containers: the pod object may now go."""
        with self.store.lock:
            self._awaiting_kubelet.discard(uid)
            pod = self.store.find(PODS, namespace, name)
            if pod is not None and pod["metadata"]["uid"] == uid:
                self.finalize_if_ready(PODS, pod)

    def remove_finalizer(self, resource: Resource, obj: Obj, finalizer: str) -> None:
        """Drop one finalizer of a stored object (if it is still that object) and remove it if free."""
        with self.store.lock:
            metadata = obj["metadata"]
            current = self.store.find(resource, metadata.get("namespace", ""), metadata["name"])
            if current is None or current["metadata"]["uid"] != metadata["uid"]:
                return
            current["metadata"]["finalizers"] = [
                f for f in current["metadata"].get("finalizers") or [] if f != finalizer
            ]
            if not current["metadata"]["finalizers"]:
                del current["metadata"]["finalizers"]
            self.finalize_if_ready(resource, self.store.update(resource, current))

    def finish_namespace(self, namespace: Obj) -> None:
        """The namespace controller emptied a terminating namespace: clear ``spec.finalizers``, remove it."""
        with self.store.lock:
            current = self.store.find(NAMESPACES, "", namespace["metadata"]["name"])
            if current is None or current["metadata"]["uid"] != namespace["metadata"]["uid"]:
                return
            current.setdefault("spec", {})["finalizers"] = []
            self.finalize_if_ready(NAMESPACES, self.store.update(NAMESPACES, current))

    def update_pod_status(self, namespace: str, name: str, uid: str, status: dict[str, Any]) -> bool:
        """Write a pod's status as the kubelet does (MODIFIED only if it changed); False if the pod is gone."""
        with self.store.lock:
            pod = self.store.find(PODS, namespace, name)
            if pod is None or pod["metadata"]["uid"] != uid:
                return False
            scheduled = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
            pod["status"] = {**status, "conditions": [*(status.get("conditions") or []), *scheduled]}
            self.store.update(PODS, pod)
            return True


def _position(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _encode_continue(after: str, resource_version: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after, "rv": resource_version}).encode()).decode()


def _decode_continue(token: str) -> tuple[str, int]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(decoded["after"]), int(decoded["rv"])
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request("continue key is not valid: the token could not be decoded") from None
