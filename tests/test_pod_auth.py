"""PodService refuses every pod call that is not its stage's own, live and fresh.

A real node runs a real workflow on the external_stub engine; the test then
calls the node's PodService directly, the way a pod (or an algorithm trying
its luck) would. Pod keys are read where the stub receives them: the
``pod.private_key`` of each job's ``spec.json`` under the engine's state dir.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
DID = "did:op:pod-auth-numbers"
SERVICE = "/c2d.pod.v1.PodService/"
NUMBERS = b"n\n1\n2\n3\n"
# Runs until the test creates outputs/go in the stub's job directory (the confined algorithm sees
# only the job's contract folders), at most 120 s.
WAIT_FOR_GO = (
    'i=0; while [ ! -e "$C2D_DATA/outputs/go" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done'
)


def stage(index: int, script: str, *, after: int | None = None, dataset: bool = False) -> dict[str, Any]:
    return {
        "index": index,
        "runAfter": after,
        "input": [{"index": 0, "did": DID, "serviceId": "compute"}] if dataset else [],
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
        },
    }


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    data_root = tmp_path / "datasets"
    data_root.mkdir()
    (data_root / "numbers.csv").write_bytes(NUMBERS)
    env = {
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 4}}]',
    }
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_listening()
        node.wait_environment(ENV)
        with Client(node.address, node.node_key()) as operator:
            operator.register_asset(
                {
                    "did": DID,
                    "services": [
                        {
                            "serviceId": "compute",
                            "kind": "dataset",
                            "files": {"files": [{"type": "local", "path": "numbers.csv"}]},
                            "policy": {"allowRawCode": True},
                        }
                    ],
                }
            )
        yield node
        node.settle()


class Pod:
    """Signed PodService calls for ``job_id`` with ``key`` (which need not be that job's key)."""

    def __init__(self, stub: pod_pb2_grpc.PodServiceStub, job_id: str, key: str) -> None:
        self.stub = stub
        self.job_id = job_id
        self.key = key

    def signed(self, name: str, request: Message, nonce: int | None = None) -> Message:
        auth.sign_pod_request(self.key, self.job_id, SERVICE + name, request, nonce=nonce)
        return request

    def upload_offset(self, nonce: int | None = None) -> int:
        request = self.signed("GetUploadOffset", offset_request(), nonce)
        return self.stub.GetUploadOffset(request, timeout=10).offset

    def provisioning(self) -> pod_pb2.GetProvisioningResponse:
        return self.stub.GetProvisioning(
            self.signed("GetProvisioning", pod_pb2.GetProvisioningRequest()), timeout=10
        )

    def fetch(self, source: str) -> bytes:
        request = self.signed("FetchInput", pod_pb2.FetchInputRequest(source=source))
        return b"".join(reply.data for reply in self.stub.FetchInput(request, timeout=10))


def offset_request() -> pod_pb2.GetUploadOffsetRequest:
    return pod_pb2.GetUploadOffsetRequest(name="algorithm.log", kind=pod_pb2.UPLOAD_KIND_ALGORITHM_LOG)


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def job_dir(node: NodeProcess, job_id: str) -> Path:
    """Where the stub engine keeps a job (its C2D_DATA); gone once the job is destroyed."""
    return node.data_dir / "engines" / "external_stub" / "jobs" / job_id


def pod_key(node: NodeProcess, job_id: str) -> str:
    """The stage's pod key, as the stub engine received it in StartJob."""
    return str(json.loads((job_dir(node, job_id) / "spec.json").read_text())["pod"]["private_key"])


def wait_status(client: Client, job_id: str, *statuses: int, timeout: float = 20) -> None:
    def reached() -> bool:
        (job,) = client.status(job_id=job_id)
        assert job.status in statuses or not job.terminal, f"{job_id} ended as {job.status_text}"
        return job.status in statuses

    wait_for(reached, timeout, f"job {job_id} to reach {statuses}", interval=0.2)


@pytest.fixture
def consumer(node: NodeProcess) -> Iterator[Client]:
    """A consumer whose unfinished jobs are stopped afterwards, even when the test fails half-way."""
    with Client(node.address, auth.new_private_key()) as client:
        yield client
        for job in client.status(all=True):
            if not job.terminal:
                client.stop(job_id=job.job_id)


@pytest.fixture
def pod_service(node: NodeProcess) -> Iterator[pod_pb2_grpc.PodServiceStub]:
    """The node's PodService, where the pods call it (C2D_PODS__LISTEN, set by nodeproc)."""
    with grpc.insecure_channel(f"127.0.0.1:{node.pod_port}") as channel:
        yield pod_pb2_grpc.PodServiceStub(channel)


def test_pod_calls_need_the_stage_own_live_key_and_a_fresh_nonce(
    node: NodeProcess, consumer: Client, pod_service: pod_pb2_grpc.PodServiceStub
) -> None:
    started = consumer.start(
        {
            "environment": ENV,
            "stages": [
                stage(0, 'echo zero > "$C2D_DATA/outputs/zero.txt"'),
                stage(1, "sleep 30", after=0, dataset=True),  # given stage 0's output and the dataset
                stage(2, WAIT_FOR_GO),  # given nothing
            ],
        },
        free=True,
    )
    zero, one, two = started.job_ids
    wait_status(consumer, one, S.JOB_STATUS_RUNNING)
    wait_status(consumer, two, S.JOB_STATUS_RUNNING)
    keys = {job_id: pod_key(node, job_id) for job_id in (one, two)}
    assert keys[one] != keys[two]

    # Each stage's own key is accepted (positive control for every refusal below): what refuses
    # it is the stage's state (host/orchestrator/podstates.py), checked only after the signature ...
    own = {job_id: Pod(pod_service, job_id, keys[job_id]) for job_id in (one, two)}
    error = refused(own[two].provisioning)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    # ... but once its algorithm runs, inputs are no longer handed out, even to its own key.
    (zero_job,) = consumer.status(job_id=zero)
    output = next(r for r in zero_job.results if r.name == "zero.txt")
    tokens = [f"job:{zero}:{output.index}", f"asset:{DID}:compute:0"]
    asset_tokens = tokens[1:]
    for call in (own[one].provisioning, lambda: own[one].fetch(asset_tokens[0])):
        error = refused(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
        assert "not accepted while the stage is running" in error.details()

    # A random key, signing for a real job: UNAUTHENTICATED.
    error = refused(lambda: Pod(pod_service, two, auth.new_private_key()).upload_offset())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert "does not match" in error.details()

    # Stage 1's key, signing for stage 2's job id: UNAUTHENTICATED.
    error = refused(lambda: Pod(pod_service, two, keys[one]).upload_offset())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    # ... and for a job that does not exist.
    error = refused(lambda: Pod(pod_service, "no-such-job", keys[one]).upload_offset())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()

    # The same signed call twice, or an older nonce: UNAUTHENTICATED.
    nonce = auth.new_nonce()
    request = own[two].signed("GetProvisioning", pod_pb2.GetProvisioningRequest(), nonce)
    error = refused(lambda: own[two].stub.GetProvisioning(request, timeout=10))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    error = refused(lambda: own[two].stub.GetProvisioning(request, timeout=10))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
    assert "replayed" in error.details()
    error = refused(lambda: own[two].upload_offset(nonce=nonce - 1))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()

    # Stage 2's own key for tokens handed to stage 1: PERMISSION_DENIED, and no bytes.
    for token in tokens:
        error = refused(lambda token=token: own[two].fetch(token))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (token, error.details())

    # A stage that ended, on its own (2) or stopped by its owner (1): its key is dead.
    (job_dir(node, two) / "outputs" / "go").touch()
    wait_status(consumer, two, S.JOB_STATUS_FINISHED)
    consumer.stop(job_id=one)
    wait_status(consumer, one, S.JOB_STATUS_STOPPED)
    for job_id in (one, two):
        error = refused(lambda job_id=job_id: own[job_id].upload_offset())
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
        assert "ended" in error.details()
    error = refused(lambda: own[one].fetch(asset_tokens[0]))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    # ... so it cannot rewrite how its stage ended either.
    report = pod_pb2.UpdateJobStatusRequest(phase=pod_pb2.POD_PHASE_PUBLISHING_FAILED, message="late")
    error = refused(
        lambda: pod_service.UpdateJobStatus(own[two].signed("UpdateJobStatus", report), timeout=10)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert consumer.status(job_id=two)[0].status == S.JOB_STATUS_FINISHED
    # For an ended stage, a key that is not its own is still UNAUTHENTICATED: the signature comes first.
    error = refused(lambda: Pod(pod_service, one, keys[two]).upload_offset())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()
