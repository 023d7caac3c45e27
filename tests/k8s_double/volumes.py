"""A pod's volumes as the kubelet sets them up, turned into Docker mounts.

- ``persistentVolumeClaim``: the claim's directory (see storage.py), bind-mounted read-write.
- ``emptyDir``: a directory per pod, mode 0777 as the real kubelet creates it, shared by the pod's
  containers; with ``medium: Memory`` a Docker tmpfs volume (``sizeLimit`` becomes its size, and its
  pages count against the memory limit as on a cluster). A disk ``sizeLimit`` is not enforced.
- ``configMap`` / ``secret``: the keys (or ``items``) written as files with ``defaultMode``/``mode``
  into a per-pod directory, bind-mounted read-only; ``fsGroup`` makes them group-owned and readable.
  They are written once when the pod starts and not refreshed when the object changes.
- ``hostPath``: bind-mounted as is (``DirectoryOrCreate``/``FileOrCreate`` create it).
- Other sources (projected, downwardAPI, csi...) leave the container waiting with
  CreateContainerConfigError. ``subPath`` works on everything but a tmpfs volume (Docker API 1.41
  cannot mount a subpath of a volume).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import docker.types

from . import quantity
from .container_config import ContainerConfigError
from .node import Node
from .objects import Obj
from .resources import CONFIGMAPS, PVCS, SECRETS

_DEFAULT_FILE_MODE = 0o644


@dataclass(frozen=True)
class PreparedVolume:
    """A volume ready to mount: a host path to bind, or a Docker volume name."""

    kind: str  # "bind" or "volume"
    source: str
    read_only: bool = False


class PodVolumes:
    def __init__(self, node: Node, pod: Obj) -> None:
        self.node = node
        self.pod = pod
        self.root = node.pod_dir(pod) / "volumes"
        self._ready: dict[str, PreparedVolume] = {}
        self._docker_volumes: list[str] = []

    @property
    def _fs_group(self) -> int | None:
        return (self.pod["spec"].get("securityContext") or {}).get("fsGroup")

    def prepare(self) -> None:
        """Set every volume up; ContainerConfigError (retried by the worker) when one cannot be yet."""
        for volume in self.pod["spec"].get("volumes") or []:
            if volume["name"] not in self._ready:
                try:
                    self._ready[volume["name"]] = self._prepare(volume)
                except (OSError, docker.errors.APIError) as exc:
                    raise ContainerConfigError(f"volume {volume['name']!r}: {exc}") from exc

    def _prepare(self, volume: dict[str, Any]) -> PreparedVolume:
        name = volume["name"]
        if "emptyDir" in volume:
            return self._empty_dir(name, volume["emptyDir"] or {})
        if "persistentVolumeClaim" in volume:
            return self._claim(volume["persistentVolumeClaim"])
        if "configMap" in volume:
            return self._projected_keys(
                name, CONFIGMAPS, volume["configMap"], volume["configMap"].get("name", "")
            )
        if "secret" in volume:
            return self._projected_keys(
                name, SECRETS, volume["secret"], volume["secret"].get("secretName", "")
            )
        if "hostPath" in volume:
            return self._host_path(volume["hostPath"])
        source = next(key for key in volume if key != "name")
        raise ContainerConfigError(
            f"volume {name!r}: {source} volumes are not supported by the API server double"
        )

    def _empty_dir(self, name: str, spec: dict[str, Any]) -> PreparedVolume:
        if spec.get("medium") == "Memory":
            options = {"type": "tmpfs", "device": "tmpfs", "o": "mode=1777"}
            if spec.get("sizeLimit"):
                options["o"] += f",size={quantity.to_int(quantity.parse(spec['sizeLimit']))}"
            volume_name = f"k8sd-{self.pod['metadata']['uid']}-{name}"
            self.node.docker.volumes.create(
                name=volume_name, driver="local", driver_opts=options, labels=self.node.labels(self.pod)
            )
            self._docker_volumes.append(volume_name)
            return PreparedVolume("volume", volume_name)
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)
        return PreparedVolume("bind", str(path))

    def _claim(self, spec: dict[str, Any]) -> PreparedVolume:
        claim = self.node.store.find(PVCS, self.pod["metadata"]["namespace"], spec["claimName"])
        if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
            raise ContainerConfigError(f'persistentvolumeclaim "{spec["claimName"]}" is not bound')
        return PreparedVolume("bind", str(self.node.storage.directory(claim)), bool(spec.get("readOnly")))

    def _projected_keys(
        self, name: str, resource: Any, spec: dict[str, Any], object_name: str
    ) -> PreparedVolume:
        found = self.node.store.find(resource, self.pod["metadata"]["namespace"], object_name)
        if found is None and not spec.get("optional"):
            raise ContainerConfigError(f'{resource.kind.lower()} "{object_name}" not found')
        files = _file_contents(resource, found or {})
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        items = spec.get("items") or [{"key": key, "path": key} for key in files]
        for item in items:
            if item["key"] not in files:
                if spec.get("optional"):
                    continue
                raise ContainerConfigError(
                    f"{resource.kind.lower()} references non-existent config key: {item['key']}"
                )
            mode = item.get("mode", spec.get("defaultMode", _DEFAULT_FILE_MODE))
            self._write_file(path / item["path"], files[item["key"]], mode)
        return PreparedVolume("bind", str(path), read_only=True)

    def _write_file(self, target: Path, content: bytes, mode: int) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        if self._fs_group is not None:
            os.chown(target, 0, self._fs_group)
            mode |= 0o440
        os.chmod(target, mode)

    @staticmethod
    def _host_path(spec: dict[str, Any]) -> PreparedVolume:
        path = Path(spec["path"])
        if spec.get("type") == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif spec.get("type") == "FileOrCreate":
            path.touch(exist_ok=True)
        elif not path.exists():
            raise ContainerConfigError(f"hostPath {path} does not exist")
        return PreparedVolume("bind", str(path))

    def mounts_for(self, container: dict[str, Any]) -> list[docker.types.Mount]:
        """The Docker mounts for a container's ``volumeMounts`` (after :meth:`prepare`)."""
        mounts = []
        for mount in container.get("volumeMounts") or []:
            volume = self._ready[mount["name"]]
            read_only = volume.read_only or bool(mount.get("readOnly"))
            source = volume.source
            if mount.get("subPath"):
                source = self._sub_path(volume, mount["subPath"])
            mounts.append(
                docker.types.Mount(mount["mountPath"], source, type=volume.kind, read_only=read_only)
            )
        return mounts

    @staticmethod
    def _sub_path(volume: PreparedVolume, sub_path: str) -> str:
        if volume.kind != "bind":
            raise ContainerConfigError(
                "subPath of a memory-backed emptyDir is not supported by the API server double"
            )
        path = Path(volume.source) / sub_path
        if not path.exists():
            path.mkdir(parents=True)
            os.chmod(path, 0o777)
        return str(path)

    def cleanup(self) -> None:
        """Remove the pod's directories and Docker volumes (its containers must be gone already)."""
        shutil.rmtree(self.root.parent, ignore_errors=True)
        for name in self._docker_volumes:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.node.docker.volumes.get(name).remove(force=True)
        self._docker_volumes.clear()


def _file_contents(resource: Any, obj: Obj) -> dict[str, bytes]:
    """Key -> bytes of a ConfigMap (``data`` + ``binaryData``) or a Secret (base64 ``data``)."""
    if resource == SECRETS:
        return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
    files = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
    files |= {key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()}
    return files
