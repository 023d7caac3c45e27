"""The kubelet's image pulls, for images on a registry on this machine (the only ones it can reach).

An image whose registry is a loopback address (``127.0.0.1:5000/team/algo:1``, ``localhost:5000/...``)
is pulled for real through Docker, as a kubelet's container runtime pulls it: with each of the
credentials the pod's image pull secrets hold for that registry, in order, the first that works
winning, and anonymously only when they hold none (the reason is then every attempt's, as the
kubelet aggregates them). A private registry therefore refuses a pod without the right secret, and the
pod waits with ErrImagePull / ImagePullBackOff and the registry's reason. Images anywhere else are
never pulled (the machine is offline): they must be present locally.
"""

from __future__ import annotations

from typing import Any

import docker.errors
from docker.utils import parse_repository_tag

from .secrets import PullCredentials, registry_host

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class PullFailed(Exception):
    """Every attempt failed; the message is the registry's (last) reason, never a credential."""


def pullable(image: str) -> bool:
    host = registry_host(image)
    return host.rsplit(":", 1)[0] in LOOPBACK_HOSTS if ":" in host else host in LOOPBACK_HOSTS


def present(client: Any, image: str) -> bool:
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def pull(client: Any, image: str, credentials: list[PullCredentials]) -> None:
    """Pulls ``image`` with each of ``credentials`` (without any when there are none); PullFailed
    with every attempt's reason when none works."""
    repository, tag = parse_repository_tag(image)
    attempts: list[dict[str, str] | None] = [
        {"username": c.username, "password": c.password} for c in credentials
    ] or [None]
    reasons = []
    for auth in attempts:
        try:
            client.images.pull(repository, tag=tag or "latest", auth_config=auth)
            return
        except docker.errors.APIError as exc:
            reasons.append(str(exc.explanation or exc))
    raise PullFailed(reasons[0] if len(reasons) == 1 else f"[{', '.join(reasons)}]")
