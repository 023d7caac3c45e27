"""The size of this machine, for the default environment: CPUs, memory, free disk of the state dir."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

GIB = 1 << 30
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class MachineSize:
    cpu: float
    ram_gib: float
    disk_gib: float


def measure(state_dir: Path) -> MachineSize:
    return MachineSize(cpu=float(cpu_count()), ram_gib=ram_gib(), disk_gib=free_disk_gib(state_dir))


def cpu_count() -> int:
    """CPUs this process may run on (an affinity mask or cpuset counts), else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def ram_gib() -> float:
    """MemTotal from /proc/meminfo; sysconf where there is no /proc."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return _floor(int(line.split()[1]) * 1024 / GIB)
    except (OSError, ValueError, IndexError):
        pass
    return _floor(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB)


def free_disk_gib(path: Path) -> float:
    return _floor(shutil.disk_usage(path).free / GIB)


def _floor(gib: float) -> float:
    """Rounded down to 0.01 GiB: never advertise more than there is."""
    return math.floor(gib * 100) / 100
