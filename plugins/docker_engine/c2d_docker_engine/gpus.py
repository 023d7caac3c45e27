"""The GPUs of this machine, for environments that offer them, and what a container needs to use them.

NVIDIA GPUs are found through NVML (the ``pynvml`` module of the optional
``nvidia-ml-py`` dependency) when it imports and a driver answers, else
through ``nvidia-smi``'s CSV output, else there are none. Each device is
named by its UUID, which stays the same across reboots and driver reloads
(indexes need not), and Docker's DeviceRequests accept it as is. The
parsers take plain values so they can be tested without a GPU. AMD and
Intel GPUs are found in sysfs (:mod:`c2d_docker_engine.drm`) and reach a
container as device nodes instead.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog

NVIDIA = "nvidia"
MIB = 1 << 20
GIB = 1 << 30
SMI_QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
SMI_TIMEOUT_SECONDS = 10.0

log = structlog.get_logger("c2d_docker_engine.gpus")


@dataclass(frozen=True)
class Gpu:
    """One device: ``id`` is what grants name.

    An NVIDIA GPU reaches a container through a DeviceRequest carrying its id
    (the NVIDIA container toolkit does the rest); any other through ``nodes``,
    the host's device files it needs (``/dev/dri/cardN``...), and ``groups``,
    the gids (or names) that may open them.
    """

    id: str
    index: str = ""
    vendor: str = NVIDIA
    model: str = ""
    memory_gib: float = 0.0
    nodes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Access:
    """What a container granted some GPUs gets: DeviceRequest ids, device nodes, extra groups.

    It is frozen into the job's spec at StartJob, so a recovered job keeps the
    nodes it started with.
    """

    nvidia: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, granted: Sequence[Gpu]) -> Access:
        """The granted GPUs' needs, each node and group once, in the order the GPUs were granted."""
        return cls(
            nvidia=tuple(g.id for g in granted if g.vendor == NVIDIA),
            nodes=_once(node for g in granted if g.vendor != NVIDIA for node in g.nodes),
            groups=_once(group for g in granted if g.vendor != NVIDIA for group in g.groups),
        )

    def to_json(self) -> dict[str, list[str]]:
        return {"nvidia": list(self.nvidia), "nodes": list(self.nodes), "groups": list(self.groups)}

    @classmethod
    def from_json(cls, data: object, granted_ids: Sequence[str]) -> Access:
        """The frozen access; a spec written before it existed granted NVIDIA GPUs only."""
        if not isinstance(data, Mapping):
            return cls(nvidia=tuple(granted_ids))
        return cls(**{key: _strings(data.get(key)) for key in ("nvidia", "nodes", "groups")})


def detect() -> tuple[Gpu, ...]:
    """Every NVIDIA GPU found, or none; never raises."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            return from_nvml(pynvml)
        except Exception as exc:  # no driver, no device: NVML says so with its own errors
            log.info("no GPU through NVML", reason=str(exc))
            return ()
    return from_nvidia_smi()


def from_nvml(nvml: ModuleType | Any) -> tuple[Gpu, ...]:
    """The devices NVML lists; ``nvml`` is the pynvml module (or a double of it in tests)."""
    nvml.nvmlInit()
    try:
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            devices.append(
                Gpu(
                    id=_text(nvml.nvmlDeviceGetUUID(handle)),
                    index=str(index),
                    model=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_gib=round(nvml.nvmlDeviceGetMemoryInfo(handle).total / GIB, 2),
                )
            )
        return tuple(devices)
    finally:
        nvml.nvmlShutdown()


def from_nvidia_smi() -> tuple[Gpu, ...]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        result = subprocess.run(
            [smi, *SMI_QUERY], capture_output=True, text=True, timeout=SMI_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("nvidia-smi failed", reason=str(exc))
        return ()
    if result.returncode != 0:
        log.info("nvidia-smi failed", reason=result.stderr.strip()[:200])
        return ()
    return parse_nvidia_smi(result.stdout.splitlines())


def parse_nvidia_smi(lines: Iterable[str]) -> tuple[Gpu, ...]:
    """``index, uuid, name, memory.total`` (MiB) CSV lines, as ``nvidia-smi`` prints them; bad lines skipped."""
    devices = []
    for line in lines:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4 or not fields[1]:
            continue
        index, uuid, memory = fields[0], fields[1], fields[-1]
        model = ", ".join(fields[2:-1])
        try:
            memory_gib = round(float(memory) * MIB / GIB, 2)
        except ValueError:
            memory_gib = 0.0
        devices.append(Gpu(id=uuid, index=index, model=model, memory_gib=memory_gib))
    return tuple(devices)


def _once(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _text(value: str | bytes) -> str:
    """Older pynvml releases return bytes, newer ones str."""
    return value.decode() if isinstance(value, bytes) else str(value)
