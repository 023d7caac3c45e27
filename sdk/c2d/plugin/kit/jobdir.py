"""One job's directory: the engine's durable record of a job, in plain files.

An engine that drives jobs from a thread of its own (a container engine, a
cluster, a remote service) keeps nothing in memory that a restart could lose:
a new plugin process reads the spec, the events and the step records here,
finds the job's containers or pods by name, and carries the job on from where
it was.

```
<job_dir>/spec.json       what to run, written once by StartJob (0600: it may hold the pod key)
<job_dir>/events.jsonl    the job's events, one JSON object a line, fsync'd, sequences 1, 2, 3...
<job_dir>/steps.json      the steps that ended and how (configuration, algorithm, publishing)
<job_dir>/stop.json       a stop request (grace seconds, reason)
<job_dir>/algorithm.log   the algorithm's stdout and stderr, complete once it exists
<job_dir>/pods.log        the pods' own output, for the node's operator
```

Engines add their own files next to these (a subclass of :class:`JobDir`).
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

SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
STEPS_FILE = "steps.json"
STOP_FILE = "stop.json"
ALGORITHM_LOG = "algorithm.log"
PODS_LOG = "pods.log"

Record = dict[str, Any]


def utc_now() -> str:
    """RFC 3339 in UTC, the form protobuf's Timestamp parses."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json_atomic(path: Path, data: object) -> None:
    """Writes through a temporary file and a rename, so a crash never leaves half a file (mode 0600)."""
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
    """Paths and files of one job."""

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
        """The algorithm's output; engines whose jobs follow the container contract keep it elsewhere."""
        return self.path / ALGORITHM_LOG

    @property
    def pods_log_path(self) -> Path:
        return self.path / PODS_LOG

    def exists(self) -> bool:
        return self.spec_path.is_file()

    def write_spec(self, spec: Record) -> None:
        write_json_atomic(self.spec_path, spec)

    def read_spec(self) -> Record | None:
        spec = read_json(self.spec_path)
        return spec if isinstance(spec, dict) else None

    # Steps -------------------------------------------------------------------------

    def steps(self) -> dict[str, Record]:
        steps = read_json(self.path / STEPS_FILE)
        return steps if isinstance(steps, dict) else {}

    def record_step(self, name: str, result: Record) -> None:
        """Remembers how a step ended, before anything depends on it: a restart never runs it twice."""
        write_json_atomic(self.path / STEPS_FILE, {**self.steps(), name: result})

    # Stop requests -----------------------------------------------------------------

    def request_stop(self, grace_seconds: float, reason: str) -> None:
        if not self.stop_requested():
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

    def is_ended(self) -> bool:
        last = self.last_event()
        return last is not None and bool(last.get("terminal"))

    def has_status(self, status: str) -> bool:
        return any(e.get("status") == status for e in self.read_events())

    def append_event(self, fields: Record) -> Record:
        """Appends an event with the next sequence number, durably.

        A job has exactly one terminal event: once it is written, further
        appends write nothing and return it.
        """
        created = not self.events_path.exists()
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
        if created:
            fsync_dir(self.path)
        return record

    @contextlib.contextmanager
    def _locked_events(self) -> Iterator[Any]:
        with open(self.events_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            f.seek(0)
            yield f


def fsync_dir(path: Path) -> None:
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
