"""What Configure settles: the daemon, the disk quota mechanism, the pod image, the GPUs, the environments.

Each is detected rather than assumed, and each problem is said in words an
operator can act on: a missing daemon is not an error (the engine reports
UNDETECTED and waits for one), a disk quota the config demands but this
machine cannot give is (FAILED_PRECONDITION, with the reason).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path

import structlog

from c2d_docker_engine import drm, gpus, volumes
from c2d_docker_engine.config import DockerSettings
from c2d_docker_engine.errors import precondition

log = structlog.get_logger("c2d_docker_engine.detect")
POD_IMAGE_MODULE = "pods.image"


def default_state_dir() -> Path:
    """Stable across plugin restarts (unlike mkdtemp), so jobs can be recovered without a state_dir."""
    return Path(tempfile.gettempdir()) / f"c2d-docker-engine-{os.getuid()}"


def disk_quota_mode(settings: DockerSettings, state_dir: Path) -> str:
    """``loop-ext4`` where it works (``auto``) or is demanded, else ``none``."""
    if settings.disk_quota == volumes.NONE:
        return volumes.NONE
    problem = volumes.probe(state_dir)
    if problem is None:
        return volumes.LOOP_EXT4
    if settings.disk_quota == volumes.LOOP_EXT4:
        raise precondition(
            f'[engines.docker] disk_quota = "loop-ext4" cannot work here: {problem}; '
            'run the plugin as root with loop devices, or set disk_quota = "auto" or "none"'
        )
    log.warning("no filesystem disk quota: each file is capped at the granted disk instead", reason=problem)
    return volumes.NONE


def advertised_quota(mode: str) -> str:
    """The fingerprint's name for the mechanism: without a filesystem, ulimit fsize caps each file."""
    return volumes.LOOP_EXT4 if mode == volumes.LOOP_EXT4 else volumes.FILE_SIZE_LIMIT


def pod_image(settings: DockerSettings) -> str | None:
    """The configured pod image, else the one the node's ``pods.image`` names (when installed here)."""
    if settings.pod_image:
        return settings.pod_image
    try:
        module = importlib.import_module(POD_IMAGE_MODULE)
    except ImportError:
        log.warning(
            "no pod image: set pod_image (pods.image is not installed here); jobs with pods are refused"
        )
        return None
    try:
        return str(module.image_name())
    except Exception as exc:
        log.warning("pods.image could not name the pod image; set pod_image", reason=str(exc))
        return None


def machine_gpus(settings: DockerSettings) -> tuple[gpus.Gpu, ...]:
    """NVIDIA's GPUs (NVML, nvidia-smi), then the AMD and Intel ones sysfs lists; never raises."""
    found = gpus.detect() + drm.detect(settings.gpu_sysfs)
    if found:
        log.info("GPUs found", gpus=[f"{g.vendor} {g.id} {g.model}".strip() for g in found])
    return found
