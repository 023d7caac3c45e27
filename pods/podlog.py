"""A pod's log: plain timestamped lines, to its file under ``$C2D_DATA/logs`` and to stderr.

The file is published to the consumer, so it must never name a location
(a URL, a path, a header): :meth:`PodLog.info` is for what anyone may read.
:meth:`PodLog.private` goes to stderr only, which the engine keeps for the
node's operator, who owns those locations anyway.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PodLog:
    def __init__(self, path: Path | None, stderr: TextIO | None = None) -> None:
        self._stderr = stderr or sys.stderr
        self._file: TextIO | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the pod
            except OSError as exc:
                self._write_stderr(f"cannot write the pod log: {exc}")

    def info(self, message: str) -> None:
        """A line for the consumer's log and the operator's: it names no location."""
        line = f"{timestamp()} {message}"
        if self._file is not None:
            try:
                self._file.write(line + "\n")
            except OSError:
                self._file = None
        self._write_stderr(line)

    def private(self, message: str) -> None:
        """A line for the operator only (stderr): it may name locations."""
        self._write_stderr(f"{timestamp()} [operator] {message}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write_stderr(self, line: str) -> None:
        try:
            self._stderr.write(line + "\n")
            self._stderr.flush()
        except (OSError, ValueError):
            pass
