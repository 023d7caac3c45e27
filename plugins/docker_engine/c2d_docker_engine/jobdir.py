"""One job's directory: its durable state, next to the data the containers see.

Containers and this directory are all there is to a job: the plugin keeps
nothing in memory that a restart could lose. A new plugin process reads the
spec, the events and the step records here, finds the containers by their
names, and carries the job on from where it was.

```
<job_dir>/spec.json       what to run, written once by StartJob (0600: it may hold the pod key)
<job_dir>/events.jsonl    the job's events, one JSON object a line, fsync'd, sequences 1, 2, 3...
<job_dir>/steps.json      the steps that ended and how (configuration, algorithm, publishing)
<job_dir>/stop.json       a stop request (grace seconds, reason)
<job_dir>/algorithm.log   the algorithm's stdout and stderr, complete once it exists
<job_dir>/pods.log        the pods' own output, for the node's operator
<job_dir>/image.log       the output of building the algorithm's image from its Dockerfile
<job_dir>/disk.img        the job filesystem's backing file (disk quota "loop-ext4")
<job_dir>/data/           C2D_DATA (/data in the containers): inputs/ transformations/ outputs/ logs/
<job_dir>/scratch/        pod-publishing's work folder, outside the disk quota
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from c2d.plugin.kit import jobdir as kit
from c2d.plugin.kit.jobdir import EventTail, Record, read_json, utc_now, write_json_atomic

DATA_DIRS = ("inputs", "transformations", "outputs", "logs")
DISK_IMAGE = "disk.img"
IMAGE_LOG = "image.log"
DATA = "data"
SCRATCH = "scratch"

__all__ = ["DATA_DIRS", "EventTail", "JobDir", "Record", "read_json", "utc_now", "write_json_atomic"]


@dataclass(frozen=True)
class JobDir(kit.JobDir):
    """The kit's job directory, plus the folders the containers see and the disk's backing file."""

    @property
    def data(self) -> Path:
        return self.path / DATA

    @property
    def scratch(self) -> Path:
        return self.path / SCRATCH

    @property
    def disk_image(self) -> Path:
        return self.path / DISK_IMAGE

    @property
    def image_log_path(self) -> Path:
        """The image build's output (jobs whose container carries a Dockerfile)."""
        return self.path / IMAGE_LOG
