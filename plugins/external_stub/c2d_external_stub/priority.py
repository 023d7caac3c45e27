"""A job's processes yield the CPU to the node, so a machine full of algorithms still answers.

Three kernel settings, because each alone is defeated by the others' absence:

- **niceness 19**: a task's weight (15 against 1,024) among the tasks of its scheduling group;
- **SCHED_IDLE**: a waking node thread preempts a job's process at once, and the scheduler places
  it on a CPU that runs only idle-policy tasks as on an idle one. An unprivileged process cannot
  leave the policy (its ``RLIMIT_NICE`` is 0), so neither can the algorithm;
- **the session's autogroup nice**: where the kernel groups tasks by session
  (``CONFIG_SCHED_AUTOGROUP``, on in Debian's kernels), each session is a group that competes with
  the node's session at full weight, whatever the niceness of its tasks. The shim and each pod and
  algorithm run in sessions of their own (so that a stop reaches all they started), so each of
  those sessions gets niceness 19 as a group too.

Each setting is best effort: a kernel without autogroups, or a policy refused, leaves the others.
"""

from __future__ import annotations

import contextlib
import os

JOB_NICENESS = 19
AUTOGROUP = "/proc/self/autogroup"


def lower_for_job() -> None:
    """Lowers the calling process (the shim) and what it will start; its children inherit it."""
    os.nice(max(0, JOB_NICENESS - os.nice(0)))
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    lower_session()


def lower_session() -> None:
    """Lowers the calling process's session as a scheduling group: call it after each ``setsid``."""
    with contextlib.suppress(OSError), open(AUTOGROUP, "w") as group:
        group.write(str(JOB_NICENESS))
