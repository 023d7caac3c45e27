"""Secrets as the API server checks them, and as the kubelet reads a pod's image pull secrets.

Validation (``ValidateSecret`` / ``ValidateSecretUpdate`` of a real server): every ``data`` value is
base64 (else 400, as the JSON decoding of ``[]byte`` fails), the data together at most 1 MiB, a
``kubernetes.io/dockerconfigjson`` Secret holds a ``.dockerconfigjson`` key of well-formed JSON (a
``kubernetes.io/dockercfg`` one a ``.dockercfg`` key), both reported with the contents redacted, and
``type`` never changes on update.

The kubelet's keyring (:func:`pull_credentials`): the ``auths`` entries of the pod's
``imagePullSecrets`` (missing ones skipped, as the kubelet only warns), matched to the image's
registry host the way the kubelet matches them (a key's scheme and path are ignored; Docker Hub's
keys ``https://index.docker.io/v1/``, ``index.docker.io``, ``docker.io`` all name it); each entry's
``username``/``password``, else its base64 ``auth``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .objects import Obj, ObjectStore
from .resources import SECRETS

MAX_SECRET_BYTES = 1 << 20
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
_REQUIRED_KEYS = {DOCKER_CONFIG_JSON: ".dockerconfigjson", DOCKER_CFG: ".dockercfg"}
DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class PullCredentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"PullCredentials(username={self.username!r})"


def decoded_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """The Secret's ``data`` decoded, ``stringData`` folded in (it wins, as on a server); 400 when a
    value is not base64."""
    data: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise errors.bad_request(
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[{key}]'
            ) from None
    for key, value in (obj.get("stringData") or {}).items():
        data[key] = str(value).encode()
    return data


def check(obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The 422 causes of a Secret (a 400 for data that is not base64)."""
    causes: list[tuple[str, str]] = []
    data = decoded_data(obj)
    if sum(len(value) for value in data.values()) > MAX_SECRET_BYTES:
        causes.append(("data", f"Too long: must have at most {MAX_SECRET_BYTES} bytes"))
    kind = obj.get("type") or "Opaque"
    required = _REQUIRED_KEYS.get(kind)
    if required is not None:
        if required not in data:
            causes.append((f"data[{required}]", "Required value"))
        else:
            try:
                json.loads(data[required])
            except (ValueError, UnicodeDecodeError) as exc:
                causes.append((f"data[{required}]", f'Invalid value: "<secret contents redacted>": {exc}'))
    if old is not None and (old.get("type") or "Opaque") != kind:
        causes.append(("type", f'Invalid value: "{kind}": field is immutable'))
    return causes


def pull_credentials(store: ObjectStore, pod: Obj, image: str) -> list[PullCredentials]:
    """What the kubelet tries for pulling ``image`` for ``pod``: each matching entry of its
    ``imagePullSecrets``, in order (none: an anonymous pull)."""
    host = registry_host(image)
    found: list[PullCredentials] = []
    namespace = pod["metadata"]["namespace"]
    for ref in pod["spec"].get("imagePullSecrets") or []:
        secret = store.find(SECRETS, namespace, str(ref.get("name") or ""))
        if secret is None or secret.get("type") not in _REQUIRED_KEYS:
            continue
        found += _matching(secret, host)
    return found


def _matching(secret: Obj, host: str) -> list[PullCredentials]:
    raw = decoded_data(secret).get(_REQUIRED_KEYS[str(secret["type"])], b"{}")
    try:
        config = json.loads(raw)
    except ValueError:
        return []
    auths = config.get("auths", {}) if secret["type"] == DOCKER_CONFIG_JSON else config
    found = []
    for key, entry in (auths or {}).items():
        if _key_host(str(key)) != host or not isinstance(entry, dict):
            continue
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if not username and entry.get("auth"):
            username, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        if username:
            found.append(PullCredentials(username, password))
    return found


def _key_host(key: str) -> str:
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def registry_host(image: str) -> str:
    """The registry of an image name by Docker's rule (a first part with a dot, a colon or
    ``localhost`` is a host; anything else is Docker Hub)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return _key_host(first)
    return DOCKER_HUB
