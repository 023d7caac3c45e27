"""PodService: the calls a stage's pods make back to the node, each signed with the stage's pod key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from c2d.common.v1 import common_pb2
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from host.auth import verify_pod
from host.errors import grpc_errors, invalid, precondition, unavailable
from host.orchestrator import podstates
from host.orchestrator.orchestrator import Orchestrator
from host.orchestrator.provisioning import Provisioner
from host.results import ResultStore, file_chunks
from host.statuses import as_job_status
from host.store import jobs, runner
from host.store.models import Stage

SERVICE = pod_pb2.DESCRIPTOR.services_by_name["PodService"].full_name
S = common_pb2.JobStatus
P = pod_pb2.PodPhase

# phase -> (status to record, failure that refines the engine's terminal status)
PHASES: dict[pod_pb2.PodPhase, tuple[common_pb2.JobStatus | None, common_pb2.JobStatus | None]] = {
    P.POD_PHASE_PROVISIONING_STARTED: (S.JOB_STATUS_PROVISIONING, None),
    P.POD_PHASE_PROVISIONING_FINISHED: (None, None),
    P.POD_PHASE_DATA_PROVISIONING_FAILED: (None, S.JOB_STATUS_DATA_PROVISIONING_FAILED),
    P.POD_PHASE_ALGORITHM_PROVISIONING_FAILED: (None, S.JOB_STATUS_ALGORITHM_PROVISIONING_FAILED),
    P.POD_PHASE_PUBLISHING_STARTED: (S.JOB_STATUS_PUBLISHING, None),
    P.POD_PHASE_PUBLISHING_FINISHED: (None, None),
    P.POD_PHASE_PUBLISHING_FAILED: (None, S.JOB_STATUS_RESULTS_UPLOAD_FAILED),
}


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


class PodServicer(pod_pb2_grpc.PodServiceServicer):
    def __init__(self, orchestrator: Orchestrator, provisioner: Provisioner, results: ResultStore) -> None:
        self.orchestrator = orchestrator
        self.provisioner = provisioner
        self.results = results

    async def admitted(self, call: str, stage: Stage) -> Stage:
        """The stage, re-read, if ``call`` is allowed in its state (:mod:`host.orchestrator.podstates`).

        Where the engine's next events could still allow the call (an honest pod-publishing may
        call a moment before the host has applied the engine's PUBLISHING event), it waits for
        them a while; if they have not come by then, UNAVAILABLE: not yet, and pods retry that
        code, so an honest pod never depends on how busy the node is. A call its stage's state can
        no longer allow is FAILED_PRECONDITION naming the call and the state. Nothing is recorded
        for a refused call.
        """
        allowed = podstates.ALLOWED[call]
        state = podstates.state_of(stage)
        deadline = time.monotonic() + podstates.CATCH_UP_SECONDS
        while state not in allowed and podstates.may_catch_up(state, allowed) and time.monotonic() < deadline:
            await self.orchestrator.stage_changed(stage.job_id, podstates.CATCH_UP_POLL_SECONDS)
            fresh = await runner.run(jobs.stage, stage.job_id)
            stage = fresh or stage
            state = podstates.state_of(stage)
        if state in allowed:
            return stage
        if podstates.may_catch_up(state, allowed):
            raise unavailable(podstates.not_yet(call, state))
        raise precondition(podstates.refusal(call, state))

    @grpc_errors
    async def GetProvisioning(self, request: Any, context: Any) -> pod_pb2.GetProvisioningResponse:
        stage = await self.admitted("GetProvisioning", await verify_pod(method("GetProvisioning"), request))
        return await runner.run(self.provisioner.provisioning, stage)

    @grpc_errors
    async def UpdateJobStatus(self, request: Any, context: Any) -> pod_pb2.UpdateJobStatusResponse:
        stage = await verify_pod(method("UpdateJobStatus"), request)
        if request.phase not in PHASES:
            raise invalid(f"unknown pod phase {request.phase}")
        stage = await self.admitted(podstates.phase_call(request.phase), stage)
        status, failure = PHASES[request.phase]
        await self.orchestrator.pod_phase(stage.job_id, status, failure, request.message[:2000])
        return pod_pb2.UpdateJobStatusResponse(status=as_job_status(status or stage.status))

    @grpc_errors
    async def GetUploadOffset(self, request: Any, context: Any) -> pod_pb2.GetUploadOffsetResponse:
        stage = await self.admitted("GetUploadOffset", await verify_pod(method("GetUploadOffset"), request))
        offset = await runner.run(self.results.offset, stage.job_id, request.name, request.kind)
        return pod_pb2.GetUploadOffsetResponse(offset=offset)

    @grpc_errors
    async def PublishResult(self, request_iterator: Any, context: Any) -> pod_pb2.PublishResultResponse:
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid("the first message of an upload must be its header")
        stage = await self.admitted("PublishResult", await verify_pod(method("PublishResult"), first.header))

        async def data() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "data":
                    raise invalid("only data may follow the header")
                yield message.data

        result = await self.results.receive(stage, first.header, data())
        return pod_pb2.PublishResultResponse(received=result.received, complete=result.complete)

    @grpc_errors
    async def FetchInput(self, request: Any, context: Any) -> AsyncIterator[pod_pb2.FetchInputResponse]:
        stage = await verify_pod(method("FetchInput"), request)
        path, size = self.provisioner.open_token(
            stage, request.source
        )  # another stage's token: refused first
        stage = await self.admitted("FetchInput", stage)
        if request.offset > size:
            raise invalid(f"offset {request.offset} is past the end ({size} bytes)")
        offset = request.offset
        async for chunk in file_chunks(path, offset, size):
            yield pod_pb2.FetchInputResponse(data=chunk, offset=offset)
            offset += len(chunk)
