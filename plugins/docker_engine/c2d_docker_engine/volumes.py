"""The job's data folder, and the disk quota that holds for it.

Docker's own ``--storage-opt size=`` needs XFS project quotas, which most
hosts lack, so where the plugin runs as root and loop devices work, each job
gets a filesystem of its own: a sparse file sized to the granted disk,
formatted ext4, attached to a loop device and mounted on ``<job_dir>/data``
(``disk_quota = "loop-ext4"``). A job that fills it gets ENOSPC and nothing
else on the machine notices. The containers see subfolders of it through bind
mounts. Elsewhere the data folder is a plain folder and each file is capped
by ``ulimit fsize`` instead (the fingerprint then says ``file-size-limit``).

The filesystem has no journal (it is scratch space that lives as long as the
job) and keeps 1% of its blocks for root, so that the plugin (root) can
still write the algorithm's log into a filesystem the algorithm filled up.
Every step is idempotent: a restarted plugin re-runs ``prepare`` and finds
what is already there, and ``release`` undoes whatever exists.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import structlog

from c2d_docker_engine.jobdir import DATA_DIRS, JobDir

LOOP_EXT4 = "loop-ext4"
NONE = "none"
FILE_SIZE_LIMIT = "file-size-limit"
MIB = 1 << 20
# The filesystem is made a little larger than the grant, so that after ext4's own
# metadata the algorithm can still write at least what it was granted.
OVERHEAD_FACTOR = 1.05
OVERHEAD_BYTES = 8 * MIB
MIN_IMAGE_BYTES = 16 * MIB
PROBE_BYTES = 16 * MIB
# Less free than this (for the non-root user) counts as a full disk.
FULL_BELOW_BYTES = MIB
COMMAND_TIMEOUT_SECONDS = 60.0
TOOLS = ("truncate", "mkfs.ext4", "losetup", "mount", "umount")

log = structlog.get_logger("c2d_docker_engine.volumes")


class VolumeError(Exception):
    """The job's data folder could not be made (the message says which step failed and why)."""


def image_bytes(granted_bytes: int) -> int:
    return max(MIN_IMAGE_BYTES, math.ceil(granted_bytes * OVERHEAD_FACTOR) + OVERHEAD_BYTES)


def prepare(job: JobDir, mode: str, granted_bytes: int, uid: int, gid: int) -> None:
    """Makes (or finds) the job's data folder with its quota, the contract's folders, and the scratch folder."""
    job.data.mkdir(mode=0o755, exist_ok=True)
    if mode == LOOP_EXT4:
        if not job.disk_image.exists():
            make_filesystem(job.disk_image, image_bytes(granted_bytes), uid, gid)
        if not os.path.ismount(job.data):
            attach_and_mount(job.disk_image, job.data)
    for path in (job.data, *(job.data / name for name in DATA_DIRS), job.scratch):
        path.mkdir(mode=0o755, exist_ok=True)
        os.chown(path, uid, gid)


def make_filesystem(image: Path, size: int, uid: int, gid: int) -> None:
    """A sparse ext4 file, made beside its final name and renamed into place once whole."""
    partial = image.with_name(image.name + ".partial")
    partial.unlink(missing_ok=True)
    with open(partial, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.truncate(size)
    run(
        "format the job's disk",
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "1",
            "-O",
            "^has_journal",
            "-E",
            f"root_owner={uid}:{gid}",
            str(partial),
        ],
    )
    os.replace(partial, image)


def attach_and_mount(image: Path, mountpoint: Path) -> None:
    device = run(
        "attach the job's disk to a loop device", ["losetup", "--find", "--show", str(image)]
    ).strip()
    try:
        run("mount the job's disk", ["mount", "-t", "ext4", "-o", "nosuid,nodev", device, str(mountpoint)])
    except VolumeError:
        with contextlib.suppress(VolumeError):
            run("detach a loop device", ["losetup", "--detach", device])
        raise


def release(job: JobDir) -> None:
    """Unmounts the job's filesystem and detaches its loop devices; nothing to do is fine."""
    if os.path.ismount(job.data):
        try:
            run("unmount the job's disk", ["umount", str(job.data)])
        except VolumeError as exc:
            log.warning("unmount failed, detaching lazily", job_id=job.job_id, reason=str(exc))
            run("unmount the job's disk", ["umount", "--lazy", str(job.data)])
    if job.disk_image.exists():
        for device in loop_devices(job.disk_image):
            with contextlib.suppress(VolumeError):
                run("detach a loop device", ["losetup", "--detach", device])


def loop_devices(image: Path) -> list[str]:
    """The loop devices backed by ``image`` (``losetup -j``)."""
    try:
        out = run("list loop devices", ["losetup", "--associated", str(image)])
    except VolumeError:
        return []
    return [line.split(":", 1)[0] for line in out.splitlines() if line.startswith("/dev/")]


def free_bytes(job: JobDir) -> int | None:
    """What the job's user may still write on its filesystem; None without one."""
    if not os.path.ismount(job.data):
        return None
    stats = os.statvfs(job.data)
    return stats.f_bavail * stats.f_frsize


def is_full(job: JobDir) -> bool:
    free = free_bytes(job)
    return free is not None and free < FULL_BELOW_BYTES


def probe(state_dir: Path) -> str | None:
    """Why loop-mounted ext4 cannot be used here, or None when a test filesystem mounted fine."""
    if os.geteuid() != 0:
        return "the plugin does not run as root (loop devices and mounts need root)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    folder = Path(tempfile.mkdtemp(prefix=".probe-", dir=state_dir))
    probe_job = JobDir(folder)
    try:
        probe_job.data.mkdir()
        make_filesystem(probe_job.disk_image, PROBE_BYTES, 0, 0)
        attach_and_mount(probe_job.disk_image, probe_job.data)
        return None
    except (VolumeError, OSError) as exc:
        return str(exc)
    finally:
        with contextlib.suppress(VolumeError, OSError):
            release(probe_job)
        shutil.rmtree(folder, ignore_errors=True)


def run(what: str, argv: list[str]) -> str:
    """Runs a system tool; VolumeError saying ``what`` failed, with the tool's own words."""
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise VolumeError(f"could not {what}: {exc}") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise VolumeError(
            f"could not {what}: {detail[-1] if detail else f'{argv[0]} exited {result.returncode}'}"
        )
    return result.stdout
