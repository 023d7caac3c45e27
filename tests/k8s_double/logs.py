"""``GET .../pods/{name}/log``: a container's stdout and stderr from Docker, as the kubelet serves it.

Supports ``container``, ``follow``, ``tailLines``, ``limitBytes``, ``timestamps``, ``sinceSeconds``
and ``sinceTime``; logs stay readable after the container exited and until the pod is deleted.
``previous`` always answers 400 (containers are never restarted, so there is no previous one).
Errors use the real wording: a pod with several containers needs ``container``; a container that
has not started yet is "waiting to start".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from . import errors
from .api import Api
from .kubelet import Kubelet
from .resources import PODS


def truthy(value: str | None) -> bool:
    return value in ("true", "True", "1")


def pod_log(
    api: Api, kubelet: Kubelet, namespace: str, name: str, query: dict[str, str]
) -> bytes | Iterator[bytes]:
    """The log text, or for ``follow=true`` an iterator of chunks that ends when the container does."""
    pod = api.read(PODS, namespace, name)
    container_name = _container_name(pod, query.get("container"))
    if truthy(query.get("previous")):
        raise errors.bad_request(
            f'previous terminated container "{container_name}" in pod "{name}" not found'
        )
    container = kubelet.container(pod, container_name)
    if container is None or container.attrs["State"]["Status"] == "created":
        reason = _waiting_reason(pod, container_name)
        raise errors.bad_request(
            f'container "{container_name}" in pod "{name}" is waiting to start: {reason}'
        )
    options = _docker_options(query)
    limit = _int(query, "limitBytes")
    if truthy(query.get("follow")):
        return _limited(container.logs(stream=True, follow=True, **options), limit)
    data = container.logs(**options)
    return data[:limit] if limit is not None else data


def _container_name(pod: dict[str, Any], wanted: str | None) -> str:
    spec = pod["spec"]
    names = [c["name"] for c in spec["containers"]]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    if not wanted:
        if len(names) == 1:
            return names[0]
        message = f"a container name must be specified for pod {pod['metadata']['name']}, choose one of: [{' '.join(names)}]"
        if init_names:
            message += f" or one of the init containers: [{' '.join(init_names)}]"
        raise errors.bad_request(message)
    if wanted not in names + init_names:
        raise errors.bad_request(f"container {wanted} is not valid for pod {pod['metadata']['name']}")
    return wanted


def _waiting_reason(pod: dict[str, Any], container: str) -> str:
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if entry["name"] == container:
            reason = (entry.get("state", {}).get("waiting") or {}).get("reason", "ContainerCreating")
            return (
                "trying and failing to pull image"
                if reason in ("ErrImagePull", "ImagePullBackOff")
                else reason
            )
    return "ContainerCreating"


def _docker_options(query: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": truthy(query.get("timestamps"))}
    tail = _int(query, "tailLines")
    if tail is not None:
        options["tail"] = tail
    since = _int(query, "sinceSeconds")
    if since is not None:
        options["since"] = int(time.time()) - since
    elif query.get("sinceTime"):
        try:
            options["since"] = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise errors.bad_request(f"sinceTime: invalid value {query['sinceTime']!r}") from None
    return options


def _int(query: dict[str, str], key: str) -> int | None:
    if query.get(key) in (None, ""):
        return None
    try:
        value = int(query[key])
    except ValueError:
        raise errors.bad_request(f"{key}: invalid value {query[key]!r}") from None
    if value < 0 or (key == "limitBytes" and value == 0):
        raise errors.invalid("PodLogOptions", "", [(key, f"Invalid value: {value}: must be greater than 0")])
    return value


def _limited(chunks: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in chunks:
            if limit is not None and sent + len(chunk) >= limit:
                yield chunk[: limit - sent]
                return
            sent += len(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
