"""Validation of created and updated objects: the 422 Invalid answers an engine must not provoke.

Checks the rules an engine is most likely to break, with the real messages: names (RFC 1123),
label keys and values (63 characters, alphanumeric ends: job ids and DIDs in labels fail here as on
a cluster), pod containers/volumes/mounts, resource quantities and requests <= limits, extended
resources (whole numbers, requests == limits), PVC access modes and size, quota quantities, Secret
data and types (see secrets.py), and pod spec immutability on update. It is not the full OpenAPI validation of a real server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import errors, quantity, secrets
from .resources import NAMESPACES, NETWORK_POLICIES, PODS, PVCS, QUOTAS, SECRETS, Resource

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[^=\s]+$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
# Pod spec fields an update may change; any other spec change is refused as on a real server.
_MUTABLE_POD_FIELDS = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`"
NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage", "hugepages-")


class Causes:
    """Collects ``(field, message)`` failures, then raises one 422 listing them all."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def required(self, field: str, what: str = "") -> None:
        self.add(field, f"Required value{': ' + what if what else ''}")

    def invalid(self, field: str, value: Any, why: str) -> None:
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        self.add(field, f"Invalid value: {shown}: {why}")

    def raise_if_any(self, resource: Resource, name: str) -> None:
        if self.items:
            raise errors.invalid(resource.kind, name, self.items, resource.group)


def validate(resource: Resource, obj: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> None:
    """Raise 422 Invalid when ``obj`` breaks a rule; ``old`` is the stored state for an update."""
    causes = Causes()
    name = obj.get("metadata", {}).get("name") or obj.get("metadata", {}).get("generateName") or ""
    try:
        _check_metadata(resource, obj.get("metadata") or {}, causes)
        check = _CHECKS.get(resource.key)
        if check is not None:
            check(obj.get("spec") or {}, obj, causes)
        if old is not None and resource == PODS:
            _check_pod_update(old, obj, causes)
        if resource == SECRETS:
            for field, message in secrets.check(obj, old):
                causes.add(field, message)
        if old is not None and resource == PVCS and _pvc_fixed(old) != _pvc_fixed(obj):
            causes.add("spec", "Forbidden: spec is immutable after creation except resources.requests")
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise errors.bad_request(f"malformed {resource.kind}: {type(exc).__name__}: {exc}") from exc
    causes.raise_if_any(resource, name)


# metadata ------------------------------------------------------------------------------------


def _check_metadata(resource: Resource, metadata: Mapping[str, Any], causes: Causes) -> None:
    name = metadata.get("name")
    if not name and not metadata.get("generateName"):
        causes.required("metadata.name", "name or generateName is required")
    elif name:
        check_name(resource, name, causes)
    for key, value in (metadata.get("labels") or {}).items():
        _check_label(key, value, causes)
    for key in metadata.get("annotations") or {}:
        _check_qualified_key("metadata.annotations", key, causes)
    for i, ref in enumerate(metadata.get("ownerReferences") or []):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                causes.required(f"metadata.ownerReferences[{i}].{field}")


def check_name(resource: Resource, name: str, causes: Causes) -> None:
    if resource == NAMESPACES:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            causes.invalid("metadata.name", name, _LABEL_MSG)
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.invalid("metadata.name", name, _SUBDOMAIN_MSG)


def _check_label(key: str, value: Any, causes: Causes) -> None:
    _check_qualified_key("metadata.labels", key, causes)
    if not isinstance(value, str):
        causes.invalid("metadata.labels", value, "label values must be strings")
    elif len(value) > 63:
        causes.invalid("metadata.labels", value, "must be no more than 63 characters")
    elif not _LABEL_VALUE.match(value):
        causes.invalid("metadata.labels", value, _LABEL_VALUE_MSG)


def _check_qualified_key(field: str, key: str, causes: Causes) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        causes.invalid(field, key, "prefix part " + _SUBDOMAIN_MSG)
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        causes.invalid(
            field,
            key,
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character, at most 63 characters",
        )


# pods ----------------------------------------------------------------------------------------


def _check_pod(spec: Mapping[str, Any], obj: Mapping[str, Any], causes: Causes) -> None:
    volumes = _check_volumes(spec.get("volumes") or [], causes)
    containers = spec.get("containers") or []
    if not containers:
        causes.required("spec.containers")
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            _check_container(f"spec.{group}[{i}]", container, volumes, seen, causes)
    restart = spec.get("restartPolicy", "Always")
    if restart not in _RESTART_POLICIES:
        causes.add(
            "spec.restartPolicy",
            f'Unsupported value: "{restart}": supported values: "Always", "OnFailure", "Never"',
        )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline < 1):
        causes.invalid("spec.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive")
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.invalid("spec.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0")


def _check_volumes(volumes: list[Mapping[str, Any]], causes: Causes) -> set[str]:
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        name = volume.get("name", "")
        if not name:
            causes.required(f"spec.volumes[{i}].name")
        elif not _DNS_LABEL.match(name) or len(name) > 63:
            causes.invalid(f"spec.volumes[{i}].name", name, _LABEL_MSG)
        elif name in names:
            causes.add(f"spec.volumes[{i}].name", f'Duplicate value: "{name}"')
        names.add(name)
        sources = [key for key in volume if key != "name"]
        if len(sources) != 1:
            causes.required(f"spec.volumes[{i}]", "must specify exactly 1 volume type")
        elif "persistentVolumeClaim" in volume and not volume["persistentVolumeClaim"].get("claimName"):
            causes.required(f"spec.volumes[{i}].persistentVolumeClaim.claimName")
    return names


def _check_container(
    field: str, container: Mapping[str, Any], volumes: set[str], seen: set[str], causes: Causes
) -> None:
    name = container.get("name", "")
    if not name:
        causes.required(f"{field}.name")
    elif not _DNS_LABEL.match(name) or len(name) > 63:
        causes.invalid(f"{field}.name", name, _LABEL_MSG)
    elif name in seen:
        causes.add(f"{field}.name", f'Duplicate value: "{name}"')
    seen.add(name)
    if not container.get("image"):
        causes.required(f"{field}.image")
    for j, mount in enumerate(container.get("volumeMounts") or []):
        _check_mount(f"{field}.volumeMounts[{j}]", mount, volumes, causes)
    for j, env in enumerate(container.get("env") or []):
        if not _ENV_NAME.match(env.get("name", "")):
            causes.invalid(f"{field}.env[{j}].name", env.get("name", ""), "a valid environment variable name")
    _check_resources(f"{field}.resources", container.get("resources") or {}, causes)


def _check_mount(field: str, mount: Mapping[str, Any], volumes: set[str], causes: Causes) -> None:
    if mount.get("name") not in volumes:
        causes.add(f"{field}.name", f'Not found: "{mount.get("name", "")}"')
    if not mount.get("mountPath"):
        causes.required(f"{field}.mountPath")
    sub_path = mount.get("subPath", "")
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        causes.invalid(f"{field}.subPath", sub_path, "must be a relative path without '..'")


def is_extended(resource: str) -> bool:
    """``nvidia.com/gpu`` and the like: counted whole, never overcommitted, requests == limits."""
    return not resource.startswith(NATIVE_RESOURCES) and "/" in resource


def _check_resources(field: str, resources: Mapping[str, Any], causes: Causes) -> None:
    parsed: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    for kind in ("limits", "requests"):
        for name, text in (resources.get(kind) or {}).items():
            try:
                parsed[kind][name] = quantity.parse(text)
            except quantity.QuantityError as exc:
                causes.invalid(f"{field}.{kind}[{name}]", text, str(exc))
                continue
            if is_extended(name) and parsed[kind][name].denominator != 1:
                causes.invalid(f"{field}.{kind}[{name}]", text, "must be an integer")
    limits, requests = parsed["limits"], parsed["requests"]
    for name, requested in requests.items():
        if is_extended(name) and name not in limits:
            causes.required(f"{field}.limits", "Limit must be set for non overcommitable resources")
        elif is_extended(name) and requested != limits[name]:
            causes.invalid(
                f"{field}.requests[{name}]",
                resources["requests"][name],
                f"must be equal to {name} limit of {resources['limits'][name]}",
            )
        elif name in limits and requested > limits[name]:
            causes.invalid(
                f"{field}.requests",
                resources["requests"][name],
                f"must be less than or equal to {name} limit of {resources['limits'][name]}",
            )


def _check_pod_update(old: Mapping[str, Any], new: Mapping[str, Any], causes: Causes) -> None:
    if _pod_fixed(old.get("spec") or {}) != _pod_fixed(new.get("spec") or {}):
        causes.add("spec", f"Forbidden: pod updates may not change fields other than {_MUTABLE_POD_FIELDS}")


def _pod_fixed(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod spec that may not change: everything but images and the deadline."""
    fixed = {key: value for key, value in spec.items() if key not in ("activeDeadlineSeconds", "nodeName")}
    for group in ("containers", "initContainers"):
        if group in fixed:
            fixed[group] = [{k: v for k, v in c.items() if k != "image"} for c in fixed[group]]
    return fixed


# other kinds ---------------------------------------------------------------------------------


def _check_pvc(spec: Mapping[str, Any], obj: Mapping[str, Any], causes: Causes) -> None:
    modes = spec.get("accessModes") or []
    if not modes:
        causes.required("spec.accessModes")
    for mode in modes:
        if mode not in _ACCESS_MODES:
            causes.add(
                "spec.accessModes",
                f'Unsupported value: "{mode}": supported values: {", ".join(_ACCESS_MODES)}',
            )
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        causes.required("spec.resources[storage]")
    elif not quantity.is_quantity(storage) or quantity.parse(storage) <= 0:
        causes.invalid("spec.resources[storage]", storage, "must be greater than zero")


def _pvc_fixed(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value for key, value in (obj.get("spec") or {}).items() if key not in ("resources", "volumeName")
    }


def _check_quota(spec: Mapping[str, Any], obj: Mapping[str, Any], causes: Causes) -> None:
    for name, text in (spec.get("hard") or {}).items():
        if not quantity.is_quantity(text):
            causes.invalid(f"spec.hard[{name}]", text, "quantities must match the regular expression")


def _check_network_policy(spec: Mapping[str, Any], obj: Mapping[str, Any], causes: Causes) -> None:
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            causes.add(
                f"spec.policyTypes[{i}]",
                f'Unsupported value: "{kind}": supported values: "Ingress", "Egress"',
            )


def _check_config_data(spec: Mapping[str, Any], obj: Mapping[str, Any], causes: Causes) -> None:
    for section in ("data", "binaryData", "stringData"):
        for key in obj.get(section) or {}:
            if not _CONFIG_KEY.match(key) or len(key) > 253:
                causes.invalid(
                    f"{section}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )


_CHECKS = {
    PODS.key: _check_pod,
    PVCS.key: _check_pvc,
    QUOTAS.key: _check_quota,
    NETWORK_POLICIES.key: _check_network_policy,
    "configmaps": _check_config_data,
    "secrets": _check_config_data,
}
