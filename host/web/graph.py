"""A workflow's stages laid out as a graph: one column per depth, arrows from what a stage runs after.

Pure geometry for the dashboard's SVG (drawn server-side, so the page needs no script to show
it): a stage's column is one more than the deepest stage it runs after; within a column stages
keep their index order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from c2d.common.v1 import common_pb2
from host import statuses

BOX_WIDTH = 230
BOX_HEIGHT = 54
GAP_X = 56
GAP_Y = 18
MARGIN = 8

S = common_pb2.JobStatus
_WAITING = {S.JOB_STATUS_QUEUED, S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE}
_DONE = {S.JOB_STATUS_FINISHED, S.JOB_STATUS_SETTLING_PAYMENT}
_STOPPED = {S.JOB_STATUS_STOPPED, S.JOB_STATUS_SKIPPED}


def tone(status: int, terminal: bool) -> str:
    """The colour class of a status: waiting, active, done, stopped or failed."""
    if status in _WAITING:
        return "waiting"
    if status in _DONE:
        return "done"
    if status in _STOPPED:
        return "stopped"
    return "failed" if terminal else "active"


@dataclass(frozen=True, slots=True)
class StageNode:
    """What the graph needs of a stage."""

    job_id: str
    index: int
    run_after: Sequence[str]
    status: int
    terminal: bool


@dataclass(frozen=True, slots=True)
class Box:
    job_id: str
    index: int
    x: int
    y: int
    status: str  # its name, for people
    tone: str


@dataclass(frozen=True, slots=True)
class Arrow:
    path: str  # an SVG path from the earlier stage's right edge to the later one's left edge


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    boxes: list[Box]
    arrows: list[Arrow]
    box_width: int = BOX_WIDTH
    box_height: int = BOX_HEIGHT


def layout(stages: Sequence[StageNode]) -> Layout:
    """The boxes and arrows of ``stages`` (a workflow's, by index; dependencies on unknown ids ignored)."""
    by_id = {stage.job_id: stage for stage in stages}
    depth: dict[str, int] = {}

    def depth_of(job_id: str, seen: frozenset[str] = frozenset()) -> int:
        if job_id not in depth:
            before = [d for d in by_id[job_id].run_after if d in by_id and d not in seen]
            depth[job_id] = 1 + max((depth_of(d, seen | {job_id}) for d in before), default=-1)
        return depth[job_id]

    rows: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for stage in sorted(stages, key=lambda s: s.index):
        column = depth_of(stage.job_id)
        row = rows.get(column, 0)
        rows[column] = row + 1
        boxes[stage.job_id] = Box(
            job_id=stage.job_id,
            index=stage.index,
            x=MARGIN + column * (BOX_WIDTH + GAP_X),
            y=MARGIN + row * (BOX_HEIGHT + GAP_Y),
            status=statuses.name(stage.status),
            tone=tone(stage.status, stage.terminal),
        )
    arrows = [
        _arrow(boxes[before], boxes[stage.job_id])
        for stage in stages
        for before in stage.run_after
        if before in boxes
    ]
    columns = max(rows, default=-1) + 1
    height = max(rows.values(), default=0)
    return Layout(
        width=2 * MARGIN + columns * BOX_WIDTH + max(columns - 1, 0) * GAP_X,
        height=2 * MARGIN + height * BOX_HEIGHT + max(height - 1, 0) * GAP_Y,
        boxes=list(boxes.values()),
        arrows=arrows,
    )


def _arrow(start: Box, end: Box) -> Arrow:
    x1, y1 = start.x + BOX_WIDTH, start.y + BOX_HEIGHT // 2
    x2, y2 = end.x, end.y + BOX_HEIGHT // 2
    middle = (x1 + x2) // 2
    return Arrow(path=f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2 - 6},{y2}")
