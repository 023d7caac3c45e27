"""Re-attaching to jobs after an engine plugin (re)starts.

The node hands every engine start to :meth:`JobHandles.recover`, which calls
``RecoverJob`` for each non-terminal job the node knows on that engine, so a
plugin restart never loses a job. The workflow store keeps the handles
durably; this in-memory book is what the plugin host itself needs.
"""

from __future__ import annotations

import grpc
import structlog
from c2d.engine.v1 import engine_pb2

from host.engines.supervisor import EngineSupervisor

log = structlog.get_logger()


class JobHandles:
    def __init__(self) -> None:
        self._handles: dict[str, dict[str, engine_pb2.JobHandle]] = {}
        self.lost: list[tuple[str, str]] = []
        self.recovered: list[tuple[str, str]] = []

    def remember(self, engine: str, handle: engine_pb2.JobHandle) -> None:
        self._handles.setdefault(engine, {})[handle.job_id] = handle

    def forget(self, engine: str, job_id: str) -> None:
        self._handles.get(engine, {}).pop(job_id, None)

    def handles(self, engine: str) -> list[engine_pb2.JobHandle]:
        return list(self._handles.get(engine, {}).values())

    async def recover(self, supervisor: EngineSupervisor) -> None:
        assert supervisor.stub is not None
        for handle in self.handles(supervisor.name):
            bound = log.bind(engine=supervisor.name, job_id=handle.job_id)
            try:
                reply = await supervisor.stub.RecoverJob(
                    engine_pb2.RecoverJobRequest(handle=handle), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                bound.warning("engine lost the job", detail=exc.details())
                self.forget(supervisor.name, handle.job_id)
                self.lost.append((supervisor.name, handle.job_id))
                continue
            self.remember(supervisor.name, reply.handle)
            self.recovered.append((supervisor.name, handle.job_id))
            bound.info("re-attached job", last_sequence=reply.last_event.sequence)
