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

# Answers to RecoverJob that mean the job cannot come back, whatever we retry.
UNRECOVERABLE = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
}


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
        """Re-attaches every known job; a job the engine cannot recover is reported lost."""
        for handle in self.handles(supervisor.name):
            bound = log.bind(engine=supervisor.name, job_id=handle.job_id)
            assert supervisor.stub is not None
            try:
                reply = await supervisor.stub.RecoverJob(
                    engine_pb2.RecoverJobRequest(handle=handle), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in UNRECOVERABLE:
                    raise  # the engine itself is in trouble: the supervisor deals with that
                bound.warning("engine lost the job", code=exc.code().name, detail=exc.details())
                self.forget(supervisor.name, handle.job_id)
                self.lost.append((supervisor.name, handle.job_id))
                continue
            self.remember(supervisor.name, reply.handle)
            self.recovered.append((supervisor.name, handle.job_id))
            bound.info("re-attached job", last_sequence=reply.last_event.sequence)
