"""One job's directory: the container contract's layout plus the engine's own files.

The directory is the job's durable state. The plugin and the job's shim (which
outlives plugin restarts) share it, so everything either side must know about
a job is a file here, written atomically: a new plugin process picks up where
the old one left off by reading it.

```
<job_dir>/inputs/ transformations/ outputs/ logs/   the contract; C2D_DATA = <job_dir>
<job_dir>/logs/algorithm.log                          the algorithm's stdout and stderr
<job_dir>/logs/configuration.log, publishing.log      the pods' own logs (jobs with pods)
<job_dir>/spec.json                                   what to run, written once by StartJob (0600)
<job_dir>/events.jsonl                                the job's events, one JSON object a line
<job_dir>/shim.json, algorithm.json, pod.json         pid + start time of the shim, algorithm, running pod
<job_dir>/stop.json                                   a stop request (grace seconds, reason)
<job_dir>/shim.log                                    the shim's own messages, and the pods' stderr
```

The files every engine keeps (spec, events, stop request) are the SDK kit's
:class:`c2d.plugin.kit.jobdir.JobDir`; this adds the contract's layout and the
process records. Standard library only (with the kit's jobdir, which is too):
the shim imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from c2d.plugin.kit import jobdir as kit
from c2d.plugin.kit.jobdir import Record, read_json, utc_now, write_json_atomic
from c2d_external_stub.procinfo import ProcessRef

DATA_DIRS = ("inputs", "transformations", "outputs", "logs")
ALGORITHM_PATH = "transformations/algorithm"
ALGORITHM_LOG = "logs/algorithm.log"
SHIM_LOG = "shim.log"
SHIM = "shim"
ALGORITHM = "algorithm"
POD = "pod"
# The process records whose process groups must not outlive the shim.
CHILDREN = (ALGORITHM, POD)

__all__ = [
    "ALGORITHM",
    "ALGORITHM_PATH",
    "CHILDREN",
    "POD",
    "SHIM",
    "SHIM_LOG",
    "JobDir",
    "Record",
    "utc_now",
]


@dataclass(frozen=True)
class JobDir(kit.JobDir):
    """Paths and files of one job; every method is safe to call from the plugin and the shim at once."""

    @property
    def log_path(self) -> Path:
        return self.path / ALGORITHM_LOG

    @property
    def algorithm_path(self) -> Path:
        return self.path / ALGORITHM_PATH

    def create_layout(self) -> None:
        for name in DATA_DIRS:
            (self.path / name).mkdir(parents=True, exist_ok=True)

    def write_process(self, name: str, ref: ProcessRef) -> None:
        write_json_atomic(self.path / f"{name}.json", ref.to_json())

    def read_process(self, name: str) -> ProcessRef | None:
        return ProcessRef.from_json(read_json(self.path / f"{name}.json"))

    def request_stop(self, grace_seconds: float, reason: str) -> None:
        """The latest request wins (the kit keeps the first): a second StopJob may shorten the grace."""
        write_json_atomic(self.path / kit.STOP_FILE, {"grace_seconds": grace_seconds, "reason": reason})
