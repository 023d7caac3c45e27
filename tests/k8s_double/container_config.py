"""A pod's container spec translated into ``docker.containers.create`` arguments, as kubelet + Docker would.

- ``command`` -> entrypoint and ``args`` -> cmd, with Kubernetes semantics (a command drops the
  image's CMD; ``$(VAR)`` references are expanded from the container's env, ``$$`` escapes).
- ``env`` values and ``valueFrom`` (``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``,
  ``resourceFieldRef``), ``envFrom``; a missing ConfigMap/Secret/key that is not ``optional`` leaves
  the container waiting with CreateContainerConfigError and the kubelet's message.
- ``resources.limits``: cpu -> ``nano_cpus``, memory -> ``mem_limit`` and an equal
  ``memswap_limit`` (no swap, so exceeding it is an OOM kill); requests.cpu -> ``cpu_shares``.
  Extended resources (``nvidia.com/gpu``) are only counted by the scheduler and quota: no device
  is given to the container.
- ``securityContext`` (pod, overridden per container): ``runAsUser``/``runAsGroup`` -> user,
  ``fsGroup`` and ``supplementalGroups`` -> group_add, ``readOnlyRootFilesystem`` -> read_only,
  ``allowPrivilegeEscalation: false`` -> no-new-privileges, ``capabilities`` -> cap_drop/cap_add,
  ``privileged``, pod ``sysctls``; ``runAsNonRoot`` refuses a container that would run as root (or
  as a non-numeric image user) the way the kubelet does. seccomp/AppArmor/SELinux are ignored.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from . import quantity
from .node import Node
from .objects import Obj
from .resources import CONFIGMAPS, SECRETS, Resource

_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


class ContainerConfigError(Exception):
    """The container cannot be created (yet); shown as ``state.waiting`` with this reason and message."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def create_kwargs(
    node: Node, pod: Obj, container: dict[str, Any], *, image_user: str, mounts: list[Any], network_mode: str
) -> dict[str, Any]:
    """Everything ``docker.containers.create`` needs to run ``container`` of ``pod``."""
    env = resolve_env(node, pod, container)
    kwargs: dict[str, Any] = {
        "image": container["image"],
        "name": node.container_name(pod, container["name"]),
        "labels": node.labels(pod, container["name"]),
        "hostname": pod["metadata"]["name"][:63].rstrip(".-"),
        "environment": [f"{name}={value}" for name, value in env.items()],
        "mounts": mounts,
        "network_mode": network_mode,
        "detach": True,
        "stdin_open": bool(container.get("stdin")),
        "tty": bool(container.get("tty")),
    }
    if container.get("command"):
        kwargs["entrypoint"] = [expand(part, env) for part in container["command"]]
    if container.get("args"):
        kwargs["command"] = [expand(part, env) for part in container["args"]]
    if container.get("workingDir"):
        kwargs["working_dir"] = container["workingDir"]
    kwargs |= resource_kwargs(container)
    kwargs |= security_kwargs(pod, container, image_user)
    return kwargs


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, unknown ones kept, ``$$`` -> ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


# environment ---------------------------------------------------------------------------------


def resolve_env(node: Node, pod: Obj, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = _object_data(node, pod, CONFIGMAPS, source["configMapRef"])
        else:
            data = _object_data(node, pod, SECRETS, source.get("secretRef") or {})
        env |= {prefix + key: value for key, value in data.items()}
    for variable in container.get("env") or []:
        if "valueFrom" in variable:
            value = _value_from(node, pod, container, variable["valueFrom"])
            if value is None:
                continue
        else:
            value = expand(variable.get("value", ""), env)
        env[variable["name"]] = value
    return env


def _object_data(node: Node, pod: Obj, resource: Resource, ref: dict[str, Any]) -> dict[str, str]:
    found = node.store.find(resource, pod["metadata"]["namespace"], ref.get("name", ""))
    if found is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(f'{resource.kind.lower()} "{ref.get("name", "")}" not found')
    data = found.get("data") or {}
    if resource == SECRETS:
        return {key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()}
    return dict(data)


def _value_from(node: Node, pod: Obj, container: dict[str, Any], source: dict[str, Any]) -> str | None:
    for key, resource in (("secretKeyRef", SECRETS), ("configMapKeyRef", CONFIGMAPS)):
        if key in source:
            ref = source[key]
            data = _object_data(node, pod, resource, ref)
            if ref["key"] in data:
                return data[ref["key"]]
            if ref.get("optional"):
                return None
            raise ContainerConfigError(
                f"couldn't find key {ref['key']} in {resource.kind} {pod['metadata']['namespace']}/{ref.get('name', '')}"
            )
    if "fieldRef" in source:
        return _field_ref(node, pod, source["fieldRef"]["fieldPath"])
    if "resourceFieldRef" in source:
        return _resource_field_ref(node, container, source["resourceFieldRef"])
    raise ContainerConfigError(f"unsupported valueFrom: {sorted(source)}")


def _field_ref(node: Node, pod: Obj, path: str) -> str:
    """The downward API fields; ``status.podIP`` is "" (Docker assigns the address only at start)."""
    metadata = pod["metadata"]
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path):
        return (metadata.get(match[1]) or {}).get(match[2], "")
    values = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata["uid"],
        "spec.nodeName": node.name,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.hostIP": node.host_ip,
        "status.hostIPs": node.host_ip,
        "status.podIP": "",
        "status.podIPs": "",
    }
    if path not in values:
        raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return values[path]


def _resource_field_ref(node: Node, container: dict[str, Any], ref: dict[str, Any]) -> str:
    kind, _, name = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    text = (resources.get(kind) or {}).get(name)
    if text is None:
        text = node.allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = quantity.parse(ref.get("divisor") or "1")
    return str(math.ceil(quantity.parse(text) / divisor))


# limits and security ------------------------------------------------------------------------


def resource_kwargs(container: dict[str, Any]) -> dict[str, Any]:
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    kwargs: dict[str, Any] = {}
    if "cpu" in limits:
        kwargs["nano_cpus"] = math.ceil(quantity.parse(limits["cpu"]) * 10**9)
    if "memory" in limits:
        memory = quantity.to_int(quantity.parse(limits["memory"]))
        kwargs["mem_limit"] = memory
        kwargs["memswap_limit"] = memory
    if "cpu" in requests:
        kwargs["cpu_shares"] = max(2, math.ceil(quantity.parse(requests["cpu"]) * 1024))
    return kwargs


def security_kwargs(pod: Obj, container: dict[str, Any], image_user: str) -> dict[str, Any]:
    pod_context = pod["spec"].get("securityContext") or {}
    context = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return context.get(key, pod_context.get(key))

    uid, gid = pick("runAsUser"), pick("runAsGroup")
    _check_non_root(pick("runAsNonRoot"), uid, image_user, pod, container["name"])
    kwargs: dict[str, Any] = {}
    if uid is not None or gid is not None:
        user = str(uid) if uid is not None else (image_user.split(":")[0] or "0")
        kwargs["user"] = f"{user}:{gid}" if gid is not None else user
    groups = [str(g) for g in pod_context.get("supplementalGroups") or []]
    if pod_context.get("fsGroup") is not None:
        groups.append(str(pod_context["fsGroup"]))
    if groups:
        kwargs["group_add"] = groups
    if context.get("readOnlyRootFilesystem"):
        kwargs["read_only"] = True
    if context.get("allowPrivilegeEscalation") is False:
        kwargs["security_opt"] = ["no-new-privileges"]
    capabilities = context.get("capabilities") or {}
    if capabilities.get("drop"):
        kwargs["cap_drop"] = list(capabilities["drop"])
    if capabilities.get("add"):
        kwargs["cap_add"] = list(capabilities["add"])
    if context.get("privileged"):
        kwargs["privileged"] = True
    if pod_context.get("sysctls"):
        kwargs["sysctls"] = {s["name"]: s["value"] for s in pod_context["sysctls"]}
    return kwargs


def _check_non_root(
    non_root: bool | None, uid: int | None, image_user: str, pod: Obj, container: str
) -> None:
    """The kubelet's runAsNonRoot verification, with its messages."""
    if not non_root:
        return
    metadata = pod["metadata"]
    where = f'(pod: "{metadata["name"]}_{metadata["namespace"]}({metadata["uid"]})", container: {container})'
    if uid is not None:
        if uid == 0:
            raise ContainerConfigError(f"container's runAsUser breaks non-root policy {where}")
        return
    user = image_user.split(":")[0]
    if user in ("", "root", "0"):
        raise ContainerConfigError(f"container has runAsNonRoot and image will run as root {where}")
    if not user.isdigit():
        raise ContainerConfigError(
            f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {where}"
        )
