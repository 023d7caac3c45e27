"""The jobs of one node in one state dir: ``<state_dir>/jobs/<job_id>/``, one :class:`JobDir` each.

Nothing here is kept in memory: every answer is read from the job
directories, so a plugin that restarts (and is configured with the same
state dir and host id) knows every job the previous process started. A job
belongs to the node whose ``host_id`` its spec names; other nodes' jobs are
invisible to this one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import grpc

from c2d.plugin.kit.errors import EngineError, not_found
from c2d.plugin.kit.jobdir import Record
from c2d.plugin.kit.jobspec import JOB_ID

STAGING_PREFIX = ".new-"
TRASH_PREFIX = ".trash-"
PROBE_PREFIX = ".probe-"
STALE_STAGING_SECONDS = 300.0


class StoredJob(Protocol):
    """What the store needs of a job directory (the kit's :class:`JobDir`, or an engine's own)."""

    def __init__(self, path: Path) -> None: ...
    @property
    def path(self) -> Path: ...
    @property
    def job_id(self) -> str: ...
    def read_spec(self) -> Record | None: ...
    def write_spec(self, spec: Record) -> None: ...


J = TypeVar("J", bound=StoredJob)


def _removable(path: Path) -> bool:
    return True


class JobStore(Generic[J]):
    """Finds, creates and removes job directories of type ``job_type``."""

    def __init__(
        self,
        root: Path,
        host_id: str,
        job_type: type[J],
        removable: Callable[[Path], bool] = _removable,
    ) -> None:
        self.root = root
        self.host_id = host_id
        self.job_type = job_type
        # Whether sweep may delete a leftover folder (a folder with a mount in it must stay).
        self.removable = removable

    # Finding jobs ------------------------------------------------------------------

    def find(self, job_id: str) -> tuple[J, Record] | None:
        """The job with this id, whichever node it belongs to; None for an id no job can have (it would
        not name one folder under the root: a NUL, a separator, dots only, too long)."""
        if not JOB_ID.match(job_id) or set(job_id) == {"."}:
            return None
        job = self.job_type(self.root / job_id)
        spec = job.read_spec()
        return None if spec is None else (job, spec)

    def lookup(self, job_id: str) -> tuple[J, Record] | None:
        """This node's job with this id, or None."""
        found = self.find(job_id)
        if found is None or found[1].get("host_id") != self.host_id:
            return None
        return found

    def get(self, job_id: str) -> tuple[J, Record]:
        """This node's job, or NOT_FOUND."""
        found = self.lookup(job_id)
        if found is None:
            raise not_found(job_id)
        return found

    def jobs(self) -> Iterator[tuple[J, Record]]:
        """Every job of this node, ended ones included, in job id order."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return
        for name in names:
            if not name.startswith("."):
                found = self.lookup(name)
                if found is not None:
                    yield found

    # Making and removing -----------------------------------------------------------

    def create(self, spec: Record) -> J:
        """Writes the job directory off to the side, then renames it into place in one step."""
        job = self.job_type(self.root / spec["job_id"])
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{job.job_id[:60]}-", dir=self.root))
        try:
            os.chmod(staging, 0o700)
            self.lay_out(self.job_type(staging))
            self.job_type(staging).write_spec(spec)
            os.rename(staging, job.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return job

    def lay_out(self, job: Any) -> None:
        """Makes what a new job directory holds besides its spec (nothing, unless an engine says)."""

    def remove_tree(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def remove(self, job: StoredJob) -> None:
        """Renames the directory away first, so the job disappears at once and never half-way."""
        trash = self.root / f"{TRASH_PREFIX}{job.job_id[:60]}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(job.path, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise EngineError(grpc.StatusCode.INTERNAL, f"cannot remove job {job.job_id!r}: {exc}") from None
        self.remove_tree(trash)

    def sweep(self) -> None:
        """Removes what crashes left half-made or half-removed (never what ``removable`` refuses)."""
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.root):
                path = self.root / name
                stale = (
                    name.startswith((STAGING_PREFIX, PROBE_PREFIX))
                    and now - _mtime(path) > STALE_STAGING_SECONDS
                )
                if (name.startswith(TRASH_PREFIX) or stale) and self.removable(path):
                    self.remove_tree(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
