"""A stage's algorithm log, from any byte offset: live from its engine while the stage runs, then
the file the pods (or the engine) stored with its results.

One reader for every face that shows logs (the gRPC ``StreamComputeLogs``, the dashboard), so a
log reads the same wherever it is read. Who may read it is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from c2d.compute.v1 import compute_pb2
from host.engines.client import EngineError, LogChunk
from host.engines.registry import EngineRegistry
from host.errors import invalid, not_found
from host.results import ResultStore
from host.store import jobs, runner
from host.store.models import Result, Stage

POLL_SECONDS = 0.5  # how often a followed log looks again when its engine cannot stream it


class StageLogs:
    """Reads stages' algorithm logs from their engines and the result store."""

    def __init__(self, engines: EngineRegistry, results: ResultStore) -> None:
        self.engines = engines
        self.results = results

    async def read(self, stage: Stage, offset: int, *, follow: bool) -> AsyncIterator[LogChunk]:
        """The log from ``offset``; with ``follow``, until the stage has ended and all of it is read.

        INVALID_ARGUMENT when the stage has ended and ``offset`` is past its log's end; NOT_FOUND
        when the stage is gone (its results expired) while followed.
        """
        if stage.terminal:
            stored = await self._stored_file(stage)
            if stored is None and (live := self._live(stage, False, offset)) is not None:
                # Ended, its log not kept yet (a stopped stage's is read from the engine before it
                # cleans up): the engine still has it.
                async for chunk in live:
                    yield chunk
                return
            if offset > (size := stored.size if stored else 0):
                raise invalid(f"offset {offset} is past the end of the log ({size} bytes)")
        while not stage.terminal:
            live = self._live(stage, follow, offset)
            if live is not None:
                async for chunk in live:
                    offset = chunk.offset + len(chunk.data)
                    yield chunk
                stage = await _reread(stage)
                if not follow:
                    return
                continue
            if not follow:
                break
            await asyncio.sleep(POLL_SECONDS)
            stage = await _reread(stage)
        async for chunk in self._stored(stage, offset):
            yield chunk

    def _live(self, stage: Stage, follow: bool, offset: int) -> AsyncIterator[LogChunk] | None:
        supervisor = self.engines.supervisors.get(stage.engine)
        client = supervisor.client if supervisor is not None else None
        if (
            supervisor is None
            or client is None
            or supervisor.fingerprint is None
            or not supervisor.fingerprint.capabilities.log_streaming
            or not on_engine(stage)
        ):
            return None
        return _tolerant(client.stream_logs(stage.job_id, offset=offset, follow=follow))

    async def complete(self, stage: Stage) -> bool:
        """Whether the stage's log can grow no more: it ended and its log is kept, or its engine
        has cleaned up (so there is none to keep)."""
        if not stage.terminal:
            return False
        return stage.destroyed or await self._stored_file(stage) is not None

    async def _stored_file(self, stage: Stage) -> Result | None:
        """The algorithm log the pods (or the engine) left with the stage's results, if any."""
        return await runner.run(self.results.first_of_kind, stage, compute_pb2.RESULT_KIND_ALGORITHM_LOG)

    async def _stored(self, stage: Stage, offset: int) -> AsyncIterator[LogChunk]:
        """The stored log from ``offset``, streamed from the file (read off the loop, as results are)."""
        stored = await self._stored_file(stage)
        if stored is None or offset >= stored.size:
            return
        async for data in self.results.chunks(stored, offset):
            yield LogChunk(offset, data)
            offset += len(data)


def on_engine(stage: Stage) -> bool:
    """Whether the stage's job is on its engine: it holds capacity, or it ended and is not cleaned up."""
    return stage.granted is not None or (stage.terminal and not stage.destroyed)


async def _reread(stage: Stage) -> Stage:
    """The stage as the database has it now (NOT_FOUND once its results expired and it is gone)."""
    row = await runner.run(jobs.stage, stage.job_id)
    if row is None:
        raise not_found(f"no job {stage.job_id}")
    return row


async def _tolerant(chunks: AsyncGenerator[LogChunk, None]) -> AsyncIterator[LogChunk]:
    """Engine log streams end quietly when the engine goes away; the stored log takes over."""
    async with contextlib.aclosing(chunks):
        try:
            async for chunk in chunks:
                yield chunk
        except EngineError:
            return
