"""A real node (and a real engine plugin) set up for hostile requests, shared by the security tests.

:func:`hostile_node` runs ``python -m host`` with the external_stub engine and leaves it with a
finished stage (results to ask for) and a running one (its pod key, for PodService calls);
:class:`Caller` builds any request of the three services, signs it the way a consumer, the
operator or a pod does, and sends it; :func:`row_counts` reads what the node's database holds, so
a test can say that a refusal stored nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, config_struct
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from nodeproc import NodeProcess, running_node, wait_for

ENV = "stub-local"
S = common_pb2.JobStatus
RPC_TIMEOUT = 20
OPERATOR_METHODS = {"RegisterAsset", "ListAssets", "RemoveAsset", "ListEngines"}
# Runs until the test creates $C2D_DATA/go (the stub's job directory), at most 120 s.
WAIT_FOR_GO = 'i=0; while [ ! -e "$C2D_DATA/go" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done'
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class NodeSetup:
    """The node, its keys, and the stages a hostile caller can name."""

    node: NodeProcess
    consumer_key: str
    finished_job: str
    finished_workflow: str
    running_job: str
    pod_key: str


def _stage(index: int, script: str) -> dict[str, Any]:
    return {
        "index": index,
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
        },
    }


def _wait_status(client: Client, job_id: str, status: int, timeout: float = 60) -> None:
    def reached() -> bool:
        (job,) = client.status(job_id=job_id)
        assert job.status == status or not job.terminal, f"{job_id} ended as {job.status_text}"
        return job.status == status

    wait_for(reached, timeout, f"job {job_id} to reach {S.Name(status)}", interval=0.2)


@contextlib.contextmanager
def hostile_node(tmp_path: Path) -> Iterator[NodeSetup]:
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 4}}]',
    }
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_environment(ENV)
        key = auth.new_private_key()
        with Client(node.address, key) as consumer:
            finished = consumer.start(
                {"environment": ENV, "stages": [_stage(0, 'echo zero > "$C2D_DATA/outputs/zero.txt"')]},
                free=True,
            )
            _wait_status(consumer, finished.job_ids[0], S.JOB_STATUS_FINISHED)
            running = consumer.start({"environment": ENV, "stages": [_stage(0, WAIT_FOR_GO)]}, free=True)
            (job_id,) = running.job_ids
            _wait_status(consumer, job_id, S.JOB_STATUS_RUNNING)
            spec = node.data_dir / "engines" / "external_stub" / "jobs" / job_id / "spec.json"
            pod_key = str(json.loads(spec.read_text())["pod"]["private_key"])
            try:
                yield NodeSetup(node, key, finished.job_ids[0], finished.workflow_id, job_id, pod_key)
            finally:
                for job in consumer.status(all=True):
                    if not job.terminal:
                        with contextlib.suppress(Exception):
                            consumer.stop(job_id=job.job_id)
        node.settle()


@contextlib.contextmanager
def stub_engine(scratch: Path, name: str = "external_stub") -> Iterator[EngineProcess]:
    """An engine plugin (external_stub unless named), started and configured exactly as the node does
    (the conformance harness)."""
    from c2d.conformance.plugin import load_target

    loop = EventLoopThread()
    factory = EngineFactory(load_target(name, None), loop, scratch)
    try:
        yield factory.start(configure=True)
    finally:
        factory.close()
        loop.close()


def row_counts(data_dir: Path) -> dict[str, int]:
    """Rows per table of the node's database (read-only; the node keeps writing in WAL mode)."""
    db = sqlite3.connect(f"file:{data_dir / 'node.db'}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        db.close()


def engine_jobs(engine: EngineProcess) -> list[str]:
    jobs = Path(engine.state_dir) / "jobs"
    return sorted(p.name for p in jobs.iterdir()) if jobs.exists() else []


def tracebacks(lines: list[str]) -> list[str]:
    return [line[:300] for line in lines if TRACEBACK in line or '"request failed"' in line]


class Caller:
    """Builds, signs and sends requests of the three services to a real node and a real engine."""

    def __init__(self, setup: NodeSetup, engine: EngineProcess | None = None) -> None:
        self.setup = setup
        self.engine = engine
        node = setup.node
        self._channels = [
            grpc.insecure_channel(node.address),
            grpc.insecure_channel(f"127.0.0.1:{node.pod_port}"),
        ]
        self.compute = compute_pb2_grpc.ComputeServiceStub(self._channels[0])
        self.pods = pod_pb2_grpc.PodServiceStub(self._channels[1])
        self.engine_stub = (
            engine_pb2_grpc.ComputeEngineServiceStub(engine.channel) if engine is not None else None
        )

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    # Requests that would be accepted (or refused for a reason of state, not of their numbers).

    def workflow(self) -> compute_pb2.Workflow:
        workflow = compute_pb2.Workflow(environment_id=ENV)
        stage = workflow.stages.add(index=0)
        stage.algorithm.rawcode = "true"
        stage.algorithm.container.entrypoint = "sh $ALGO"
        stage.algorithm.container.image = "busybox"
        stage.algorithm.container.tag = "1"
        stage.resources.add(id="cpu", amount=1)
        return workflow

    def base(self, method: MethodDescriptor) -> Message:
        """A well-formed request for ``method`` naming the setup's stages."""
        name, setup = method.name, self.setup
        cls = _message_class(method)
        if method.containing_service.name == "ComputeService":
            fields: dict[str, Any] = {
                "InitializeCompute": {
                    "workflow": self.workflow(),
                    "consumer_address": auth.address_of(setup.consumer_key),
                },
                "StartCompute": {
                    "workflow": self.workflow(),
                    "payment": compute_pb2.Payment(chain_id=1, token_address="0x" + "11" * 20),
                },
                "FreeStartCompute": {"workflow": self.workflow()},
                "GetComputeStatus": {"job_id": setup.finished_job},
                "StopCompute": {"job_id": "no-such-job"},
                "GetComputeResult": {"job_id": setup.finished_job},
                "StreamComputeLogs": {"job_id": setup.finished_job},
                "GetPaymentProof": {"workflow_id": setup.finished_workflow},
                "RegisterAsset": {
                    "asset": compute_pb2.Asset(
                        did="did:op:hostile-numbers",
                        services=[
                            compute_pb2.AssetService(
                                service_id="compute", kind=compute_pb2.AssetService.KIND_DATASET
                            )
                        ],
                    ),
                    "replace": True,
                },
                "RemoveAsset": {"did": "did:op:no-such-asset"},
            }.get(name, {})
            return cls(**fields)
        if method.containing_service.name == "PodService":
            if name == "PublishResult":
                header = pod_pb2.UploadHeader(
                    name="hostile.txt",
                    kind=pod_pb2.UPLOAD_KIND_OUTPUT,
                    sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                )
                return cls(header=header)
            fields = {
                "UpdateJobStatus": {"phase": pod_pb2.POD_PHASE_PROVISIONING_STARTED},
                "GetUploadOffset": {"name": "algorithm.log", "kind": pod_pb2.UPLOAD_KIND_ALGORITHM_LOG},
                "FetchInput": {"source": "no-such-token"},
            }.get(name, {})
            return cls(**fields)
        engine = self.engine
        assert engine is not None
        if name == "Configure":
            return cls(
                api_version=engine.api_version,
                config=config_struct(engine.target.config),
                host_id=engine.host_id,
                state_dir=engine.state_dir,
            )
        if name == "StartJob":
            spec = engine.job_spec("true")
            engine.jobs.add(spec.job_id)  # destroyed at teardown if it ever starts
            return cls(spec=spec)
        fields = {
            "WatchJob": {"job_id": "conformance-no-such-job"},
            "StopJob": {"job_id": "conformance-no-such-job"},
            "StreamJobLogs": {"job_id": "conformance-no-such-job"},
            "DestroyJob": {"job_id": "conformance-no-such-job"},
        }.get(name, {})
        return cls(**fields)

    # Signing and sending.

    def sign(
        self, method: MethodDescriptor, request: Message, nonce: int | None = None, key: str = ""
    ) -> None:
        service = method.containing_service
        full = f"/{service.full_name}/{method.name}"
        if service.name == "ComputeService":
            if "auth" not in request.DESCRIPTOR.fields_by_name:
                return  # unsigned calls (GetEnvironments, InitializeCompute)
            if not key:
                key = (
                    self.setup.node.node_key() if method.name in OPERATOR_METHODS else self.setup.consumer_key
                )
            auth.sign_request(key, full, request, nonce=nonce)
        elif service.name == "PodService":
            signed = request.header if method.name == "PublishResult" else request  # type: ignore[attr-defined]
            auth.sign_pod_request(
                key or self.setup.pod_key, self.setup.running_job, full, signed, nonce=nonce
            )

    def send(self, method: MethodDescriptor, request: Message) -> tuple[grpc.StatusCode, str]:
        """The status the call ends with and its message (OK and "" on success)."""
        service = method.containing_service.name
        stub = {"ComputeService": self.compute, "PodService": self.pods}.get(service, self.engine_stub)
        call = getattr(stub, method.name)
        try:
            if method.client_streaming:
                call(iter([request]), timeout=RPC_TIMEOUT)
            elif method.server_streaming:
                for _ in call(request, timeout=RPC_TIMEOUT):
                    pass
            else:
                call(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""


def _message_class(method: MethodDescriptor) -> Any:
    module = {"ComputeService": compute_pb2, "PodService": pod_pb2, "ComputeEngineService": engine_pb2}[
        method.containing_service.name
    ]
    return getattr(module, method.input_type.name)
