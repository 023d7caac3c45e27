"""Class 5: a stage's pod key is accepted only for the calls that fit the stage's state.

A real node runs real stages on the external_stub engine with real pods; the
test takes a stage's pod key where the stub receives it (as an algorithm that
got hold of it could) and makes every PodService call in a state where it does
not belong: while the stage provisions (held by an input server that does not
answer yet), while its algorithm runs, and after it ended. Each is refused
(FAILED_PRECONDITION naming the call and the state, UNAVAILABLE where that state may still
come, or PERMISSION_DENIED once the key is dead) and nothing is recorded: the status history and the result
rows in the node's database stay as they were. The allowed states are the
table in host/orchestrator/podstates.py.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
P = pod_pb2.PodPhase
ENV = "stub-local"
DID = "did:op:pod-states-numbers"
TOKEN = f"asset:{DID}:compute:0"  # the running stage's own input, a "node" file
SERVICE = "/c2d.pod.v1.PodService/"
PROVISIONING_PHASES = (
    P.POD_PHASE_PROVISIONING_STARTED,
    P.POD_PHASE_PROVISIONING_FINISHED,
    P.POD_PHASE_DATA_PROVISIONING_FAILED,
    P.POD_PHASE_ALGORITHM_PROVISIONING_FAILED,
)
PUBLISHING_PHASES = (
    P.POD_PHASE_PUBLISHING_STARTED,
    P.POD_PHASE_PUBLISHING_FINISHED,
    P.POD_PHASE_PUBLISHING_FAILED,
)


class HeldServer:
    """An HTTP server on 127.0.0.1 whose answers wait until :meth:`release` (holds a stage in provisioning)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.asked = threading.Event()
        held = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                held.asked.set()
                held.released.wait(120)
                body = b"a,b\n1,2\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data.csv"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held() -> Iterator[HeldServer]:
    server = HeldServer()
    yield server
    server.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    data_root = tmp_path / "datasets"
    data_root.mkdir()
    (data_root / "numbers.csv").write_bytes(b"n\n1\n2\n")
    env = {
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 4}}]',
        # The held input server stands in for a public one.
        "C2D_SECURITY__ALLOW_HOSTS": '["127.0.0.1"]',
    }
    with running_node(tmp_path / "node", env=env) as node:
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


@pytest.fixture
def consumer(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client
        for job in client.status(all=True):
            if not job.terminal:
                client.stop(job_id=job.job_id)


@pytest.fixture
def pod_service(node: NodeProcess) -> Iterator[pod_pb2_grpc.PodServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{node.pod_port}") as channel:
        yield pod_pb2_grpc.PodServiceStub(channel)


def start(client: Client, script: str, inputs: list[dict[str, Any]] | None = None) -> str:
    stage = {
        "index": 0,
        "input": inputs or [],
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
        },
    }
    return client.start({"environment": ENV, "stages": [stage]}, free=True).job_ids[0]


def pod_key(node: NodeProcess, job_id: str) -> str:
    spec = node.data_dir / "engines" / "external_stub" / "jobs" / job_id / "spec.json"
    wait_for(spec.is_file, 30, f"the stub's spec of {job_id}")
    return str(json.loads(spec.read_text())["pod"]["private_key"])


def wait_status(client: Client, job_id: str, status: int, timeout: float = 60) -> None:
    wait_for(lambda: client.status(job_id=job_id)[0].status == status, timeout, f"{job_id} at {status}", 0.2)


def recorded(
    node: NodeProcess, job_id: str
) -> tuple[list[tuple[int, str]], list[tuple[Any, ...]], int | None]:
    """What the node's database holds for the stage: its status history, its result rows, its pod report."""
    db = sqlite3.connect(f"file:{node.data_dir / 'node.db'}?mode=ro", uri=True)
    try:
        history = db.execute(
            "SELECT status, message FROM status_event WHERE stage_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        results = db.execute("SELECT name, kind, size FROM result WHERE stage_id = ?", (job_id,)).fetchall()
        (report,) = db.execute("SELECT pod_report FROM stage WHERE job_id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    return history, results, report


class Pod:
    """Every PodService call, signed with ``key`` for ``job_id``: name -> a call that returns or raises."""

    def __init__(self, stub: pod_pb2_grpc.PodServiceStub, job_id: str, key: str) -> None:
        self.stub = stub
        self.job_id = job_id
        self.key = key

        self.nonces: list[int] = []  # signed so far, rising

    def signed(self, name: str, request: Message) -> Message:
        nonce = max(auth.new_nonce(), (self.nonces or [0])[-1] + 1)
        self.nonces.append(nonce)
        auth.sign_pod_request(self.key, self.job_id, SERVICE + name, request, nonce=nonce)
        return request

    def phase(self, phase: int) -> Callable[[], Any]:
        request = pod_pb2.UpdateJobStatusRequest(phase=phase, message="forged")  # type: ignore[arg-type]
        return lambda: self.stub.UpdateJobStatus(self.signed("UpdateJobStatus", request), timeout=60)

    def provisioning_calls(self, token: str) -> dict[str, Callable[[], Any]]:
        def fetch() -> bytes:
            request = self.signed("FetchInput", pod_pb2.FetchInputRequest(source=token))
            return b"".join(r.data for r in self.stub.FetchInput(request, timeout=60))

        calls: dict[str, Callable[[], Any]] = {
            "GetProvisioning": lambda: self.stub.GetProvisioning(
                self.signed("GetProvisioning", pod_pb2.GetProvisioningRequest()), timeout=60
            ),
            "FetchInput": fetch,
        }
        for phase in PROVISIONING_PHASES:
            calls[f"UpdateJobStatus({P.Name(phase)})"] = self.phase(phase)
        return calls

    def publishing_calls(self) -> dict[str, Callable[[], Any]]:
        payload = b"forged result\n"

        def publish() -> Any:
            header = pod_pb2.UploadHeader(
                name="forged.txt",
                kind=pod_pb2.UPLOAD_KIND_OUTPUT,
                size=len(payload),
                sha256=hashlib.sha256(payload).hexdigest(),
            )
            self.signed("PublishResult", header)
            messages = [
                pod_pb2.PublishResultRequest(header=header),
                pod_pb2.PublishResultRequest(data=payload),
            ]
            return self.stub.PublishResult(iter(messages), timeout=60)

        calls: dict[str, Callable[[], Any]] = {
            "GetUploadOffset": lambda: self.stub.GetUploadOffset(
                self.signed(
                    "GetUploadOffset",
                    pod_pb2.GetUploadOffsetRequest(name="forged.txt", kind=pod_pb2.UPLOAD_KIND_OUTPUT),
                ),
                timeout=60,
            ),
            "PublishResult": publish,
        }
        for phase in PUBLISHING_PHASES:
            calls[f"UpdateJobStatus({P.Name(phase)})"] = self.phase(phase)
        return calls


def pod_nonce(node: NodeProcess, job_id: str) -> int:
    db = sqlite3.connect(f"file:{node.data_dir / 'node.db'}?mode=ro", uri=True)
    try:
        (nonce,) = db.execute("SELECT pod_nonce FROM stage WHERE job_id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    return int(nonce)


def refusals(
    node: NodeProcess, pod: Pod, calls: dict[str, Callable[[], Any]]
) -> dict[str, grpc.RpcError | str]:
    """Runs the calls side by side: a refused publishing call first waits a while for the engine to
    catch up. Each is sent only once the node has taken the one before (its nonce), so the nonces
    arrive in the order they rise."""

    def outcome(call: Callable[[], Any]) -> grpc.RpcError | str:
        try:
            call()
        except grpc.RpcError as error:
            return error
        return "accepted"

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {}
        for name, call in calls.items():
            sent = len(pod.nonces)
            future = futures[name] = pool.submit(outcome, call)

            def taken(future: Any = future, sent: int = sent) -> bool:
                if future.done():
                    return True
                return len(pod.nonces) > sent and pod_nonce(node, pod.job_id) >= pod.nonces[sent]

            wait_for(taken, 60, f"the node to take {name}", interval=0.02)
        return {name: future.result() for name, future in futures.items()}


def assert_refused(outcomes: dict[str, grpc.RpcError | str], code: grpc.StatusCode, state: str = "") -> None:
    for name, outcome in outcomes.items():
        assert isinstance(outcome, grpc.RpcError), f"{name} was accepted"
        assert outcome.code() == code, (name, outcome.code(), outcome.details())
        if state:
            assert f"while the stage is {state}" in (outcome.details() or ""), (name, outcome.details())
            call = name.split("(")[0]
            assert call in (outcome.details() or ""), (name, outcome.details())


def test_pod_calls_are_refused_outside_their_states(
    node: NodeProcess, consumer: Client, pod_service: pod_pb2_grpc.PodServiceStub, held: HeldServer
) -> None:
    # Provisioning, held: the input server has been asked and does not answer yet.
    provisioning = start(
        consumer, 'cat "$C2D_DATA"/inputs/0/*', [{"index": 0, "files": {"type": "url", "url": held.url}}]
    )
    # Running: the algorithm (given the dataset) runs until stopped.
    running = start(consumer, "sleep 300", [{"index": 0, "did": DID, "serviceId": "compute"}])
    wait_for(held.asked.is_set, 60, "pod-configuration to ask the held input server")
    wait_status(consumer, running, S.JOB_STATUS_RUNNING)
    keys = {job_id: pod_key(node, job_id) for job_id in (provisioning, running)}
    before = {job_id: recorded(node, job_id) for job_id in keys}
    assert before[provisioning][0][-1][0] == S.JOB_STATUS_PROVISIONING

    # While provisioning, nothing of publishing: no forged start of publishing, no result. The stage
    # may still get there (the engine's events may lag), so the answer is "not yet": UNAVAILABLE.
    pod = Pod(pod_service, provisioning, keys[provisioning])
    assert_refused(refusals(node, pod, pod.publishing_calls()), grpc.StatusCode.UNAVAILABLE, "provisioning")

    # While the algorithm runs (with the key it might have got hold of): no inputs (never again:
    # FAILED_PRECONDITION), no reports, no results (not yet: UNAVAILABLE).
    pod = Pod(pod_service, running, keys[running])
    assert_refused(
        refusals(node, pod, pod.provisioning_calls(TOKEN)), grpc.StatusCode.FAILED_PRECONDITION, "running"
    )
    assert_refused(refusals(node, pod, pod.publishing_calls()), grpc.StatusCode.UNAVAILABLE, "running")

    after = {job_id: recorded(node, job_id) for job_id in keys}
    assert after == before, "a refused call changed what the node recorded"
    for job_id in keys:
        assert consumer.status(job_id=job_id)[0].status == before[job_id][0][-1][0]

    # The honest sequence still goes through: released, the held stage provisions, runs and publishes.
    held.release()
    (done,) = consumer.wait([provisioning], timeout=120)
    assert done.status == S.JOB_STATUS_FINISHED, done.status_text
    assert any(r.kind for r in done.results)

    # Ended: the key is dead for every call, and the ended stage's record stays as it is.
    consumer.stop(job_id=running)
    wait_status(consumer, running, S.JOB_STATUS_STOPPED)
    for job_id in keys:
        ended = recorded(node, job_id)
        pod = Pod(pod_service, job_id, keys[job_id])
        assert_refused(
            refusals(node, pod, {**pod.provisioning_calls(TOKEN), **pod.publishing_calls()}),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert recorded(node, job_id) == ended
