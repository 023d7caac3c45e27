"""Process identity that survives pid reuse: a pid plus its start time from ``/proc``.

The plugin finds a job's shim and algorithm again after it restarts by the pids
they recorded; a pid alone may meanwhile belong to another process, so every
record carries the kernel's start time of the process too, and a process only
counts as the recorded one when both match.

Standard library only: the shim imports this module.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# States of a process that has ended (zombie, dead): it only waits to be reaped.
ENDED_STATES = ("Z", "X", "x")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; None when the process is gone.

    The command name (field 2) may hold spaces and parentheses, so the split
    starts after its last closing parenthesis.
    """
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    _, _, rest = raw.rpartition(")")
    fields = rest.split()
    return fields if len(fields) > 19 else None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22), zombies included."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


@dataclass(frozen=True)
class ProcessRef:
    """One particular process: its pid and the start time that tells it from a later one with that pid."""

    pid: int
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The process now holding ``pid``, or None when there is none."""
        started = start_time(pid)
        return None if started is None else cls(pid, started)

    @classmethod
    def of_self(cls) -> ProcessRef:
        ref = cls.of(os.getpid())
        assert ref is not None, "/proc is required"
        return ref

    def alive(self) -> bool:
        """True while this very process runs (an unreaped zombie has ended and is not alive)."""
        fields = _stat_fields(self.pid)
        return fields is not None and int(fields[19]) == self.start_time and fields[0] not in ENDED_STATES

    def signal(self, signum: int) -> bool:
        """Sends ``signum`` to this process if it still runs; whether it was sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def signal_group(self, signum: int) -> bool:
        """Sends ``signum`` to the process group this process leads, if the leader still runs."""
        if not self.alive():
            return False
        return signal_group(self.pid, signum)

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_json(cls, data: object) -> ProcessRef | None:
        if not isinstance(data, dict):
            return None
        pid, started = data.get("pid"), data.get("start_time")
        if not isinstance(pid, int) or not isinstance(started, int) or pid <= 0:
            return None
        return cls(pid, started)


def signal_group(pgid: int, signum: int) -> bool:
    """killpg that treats a group with no members left as already done."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Every live process of process group ``pgid`` (field 5 of /proc/<pid>/stat)."""
    return [pid for pid, fields in _all_stats() if int(fields[2]) == pgid]


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (field 4 of /proc/<pid>/stat)."""
    return [child for child, fields in _all_stats() if int(fields[1]) == pid]


def parents_first(pids: Iterable[int]) -> list[int]:
    """``pids`` ordered so that each comes after its ancestors. A SIGTERM sent in this order reaches
    a shell before the child it waits for: a shell that saw its child die first would report it
    ("Terminated") into the algorithm's log before its own signal arrived."""
    parent = {pid: int(fields[1]) for pid, fields in _all_stats()}

    def depth(pid: int) -> int:
        steps = 0
        while pid in parent and steps <= len(parent):  # bounded: a pid reused mid-scan can't loop
            pid, steps = parent[pid], steps + 1
        return steps

    return sorted(pids, key=depth)


def _all_stats() -> list[tuple[int, list[str]]]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] not in ENDED_STATES:
                found.append((int(entry.name), fields))
    return found


SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


def signal_name(signum: int) -> str:
    return SIGNAL_NAMES.get(signum, f"signal {signum}")
