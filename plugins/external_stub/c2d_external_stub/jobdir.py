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

Standard library only: the shim imports this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from c2d_external_stub.procinfo import ProcessRef

DATA_DIRS = ("inputs", "transformations", "outputs", "logs")
ALGORITHM_PATH = "transformations/algorithm"
ALGORITHM_LOG = "logs/algorithm.log"
SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
STOP_FILE = "stop.json"
SHIM_LOG = "shim.log"
SHIM = "shim"
ALGORITHM = "algorithm"
POD = "pod"
# The process records whose process groups must not outlive the shim.
CHILDREN = (ALGORITHM, POD)

Record = dict[str, Any]


def utc_now() -> str:
    """RFC 3339 in UTC, the form protobuf's Timestamp parses."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json_atomic(path: Path, data: object) -> None:
    """Writes through a temporary file and a rename, so a crash never leaves half a file.

    The file is readable by its owner only: a job's spec may hold the stage's pod key.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """The file's JSON, or None when it is missing or unreadable (a record not written yet)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def parse_event_lines(data: bytes) -> list[Record]:
    """Complete lines only: a line without its newline is a write still under way (or torn by a crash)."""
    events: list[Record] = []
    for line in data.split(b"\n")[:-1]:
        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("sequence"), int):
                events.append(record)
    return events


@dataclass(frozen=True)
class JobDir:
    """Paths and files of one job; every method is safe to call from the plugin and the shim at once."""

    path: Path

    @property
    def job_id(self) -> str:
        return self.path.name

    @property
    def spec_path(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / ALGORITHM_LOG

    @property
    def algorithm_path(self) -> Path:
        return self.path / ALGORITHM_PATH

    def exists(self) -> bool:
        return self.spec_path.is_file()

    def create_layout(self) -> None:
        for name in DATA_DIRS:
            (self.path / name).mkdir(parents=True, exist_ok=True)

    def write_spec(self, spec: Record) -> None:
        write_json_atomic(self.spec_path, spec)

    def read_spec(self) -> Record | None:
        spec = read_json(self.spec_path)
        return spec if isinstance(spec, dict) else None

    # Process records ---------------------------------------------------------------

    def write_process(self, name: str, ref: ProcessRef) -> None:
        write_json_atomic(self.path / f"{name}.json", ref.to_json())

    def read_process(self, name: str) -> ProcessRef | None:
        return ProcessRef.from_json(read_json(self.path / f"{name}.json"))

    # Stop requests -----------------------------------------------------------------

    def request_stop(self, grace_seconds: float, reason: str) -> None:
        write_json_atomic(self.path / STOP_FILE, {"grace_seconds": grace_seconds, "reason": reason})

    def stop_request(self) -> Record | None:
        request = read_json(self.path / STOP_FILE)
        return request if isinstance(request, dict) else None

    def stop_requested(self) -> bool:
        return (self.path / STOP_FILE).exists()

    # Events ------------------------------------------------------------------------

    def read_events(self) -> list[Record]:
        try:
            return parse_event_lines(self.events_path.read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def last_event(self) -> Record | None:
        events = self.read_events()
        return events[-1] if events else None

    def append_event(self, fields: Record) -> Record:
        """Appends an event with the next sequence number, durably.

        A job has exactly one terminal event: once it is written, further
        appends (a late LOST from the plugin, say) write nothing and return it.
        """
        with self._locked_events() as f:
            data = f.read()
            events = parse_event_lines(data)
            if events and events[-1].get("terminal"):
                return events[-1]
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)  # drop a line torn by a crash
            record = {"time": utc_now(), **fields, "sequence": events[-1]["sequence"] + 1 if events else 1}
            record.setdefault("terminal", False)
            f.seek(0, os.SEEK_END)
            f.write(json.dumps(record, sort_keys=True).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
            return record

    @contextlib.contextmanager
    def _locked_events(self) -> Iterator[Any]:
        created = not self.events_path.exists()
        with open(self.events_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            f.seek(0)
            yield f
        if created:
            _fsync_dir(self.path)


def _fsync_dir(path: Path) -> None:
    """Makes a new file's directory entry durable too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventTail:
    """Reads a growing events file incrementally, as ``tail -f`` does."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0

    def read_new(self) -> list[Record]:
        """Events completed since the last call."""
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except (FileNotFoundError, NotADirectoryError):
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return parse_event_lines(complete)
