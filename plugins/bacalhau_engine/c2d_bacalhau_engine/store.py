"""The jobs of one node in one state dir: the kit's store of job folders (spec, events, steps).

The orchestrator holds the rest: the Bacalhau jobs of each step, found by
the ids in ``steps.json``, and, for a job whose folder is gone, by the
labels and ``Meta`` every one of them carries (see ``EngineServicer.ListJobs``).
"""

from __future__ import annotations

from pathlib import Path

from c2d.plugin.kit import jobstore
from c2d.plugin.kit.jobdir import JobDir


class JobStore(jobstore.JobStore[JobDir]):
    def __init__(self, root: Path, host_id: str) -> None:
        super().__init__(root, host_id, JobDir)
