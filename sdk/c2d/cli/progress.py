"""Progress while the CLI waits: a live table of stages, and download bars.

On a terminal these are rich live displays; in a pipe they become one line
per change (stages) or per saved file (downloads); with --json they are
silent, so stdout stays one JSON document.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from c2d.cli.output import Output, rich_table
from c2d.cli.render import WATCH_COLUMNS, message, status_name, watch_row
from c2d.compute.v1 import compute_pb2


class StageWatch:
    """Shows each stage's status while ``Client.wait`` polls (pass ``update`` as ``on_update``)."""

    def __init__(self, out: Output, title: str) -> None:
        self.out = out
        self.title = title
        self._live: Live | None = None
        self._seen: dict[str, int] = {}

    def __enter__(self) -> StageWatch:
        if self.out.rich:
            self._live = Live(
                rich_table(WATCH_COLUMNS, [], self.title), console=self.out.console, refresh_per_second=4
            )
            self._live.start()
        return self

    def update(self, jobs: list[compute_pb2.JobInfo]) -> None:
        if self._live is not None:
            self._live.update(rich_table(WATCH_COLUMNS, [watch_row(job) for job in jobs], self.title))
            return
        if self.out.json_mode:
            return
        for job in jobs:
            if self._seen.get(job.job_id) != job.status:
                self._seen[job.job_id] = job.status
                text = f": {message(job)}" if message(job) else ""
                self.out.line(f"stage {job.stage_index} {job.job_id} {status_name(job.status)}{text}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()


class DownloadWatch:
    """Byte progress of result downloads (pass ``update`` to ``Client.results``)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self._progress: Progress | None = None
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> DownloadWatch:
        if self.out.rich:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.out.console,
            )
            self._progress.start()
        return self

    def update(self, file: compute_pb2.ResultFile, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(file.index)
        if task is None:
            task = self._tasks[file.index] = self._progress.add_task(
                file.name or str(file.index), total=total
            )
        self._progress.update(task, completed=done, total=total)
        if total is not None and done >= total:
            self._progress.refresh()  # show it complete before the "saved" line

    def __exit__(self, *exc_info: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
