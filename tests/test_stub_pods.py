"""external_stub running the pods around the algorithm, against the test PodService.

The plugin is a real process started as the node starts it; its jobs' pods are
real processes calling back a real gRPC PodService (tests/podservice.py) that
checks their signatures.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin import launcher
from c2d.pod.v1 import pod_pb2
from podservice import FakePodService, Kind, Stage, sha256

PLUGIN_ARGV = [sys.executable, "-m", "c2d_external_stub"]
HOST_ID = "test-node"
Status = common_pb2.JobStatus
ALGORITHM = b"""
import os, pathlib
data = pathlib.Path(os.environ["C2D_DATA"])
text = (data / "inputs" / "0" / "a.txt").read_text()
(data / "outputs" / "result.txt").write_text(text.upper())
print("algorithm ran on", len(text), "bytes")
"""

pytestmark = pytest.mark.timeout(60)


class Engine:
    def __init__(self, plugin: launcher.PluginProcess, channel: grpc.aio.Channel) -> None:
        self.plugin = plugin
        self.stub = engine_pb2_grpc.ComputeEngineServiceStub(channel)

    async def configure(self, state_dir: Path) -> None:
        config = struct_pb2.Struct()
        config.update({"enabled": True, "pod_timeout_seconds": 60})
        request = engine_pb2.ConfigureRequest(
            api_version=1, config=config, host_id=HOST_ID, state_dir=str(state_dir)
        )
        await self.stub.Configure(request)

    async def start(self, spec: engine_pb2.JobSpec) -> engine_pb2.JobHandle:
        return (await self.stub.StartJob(engine_pb2.StartJobRequest(spec=spec))).handle

    async def watch(self, job_id: str, after: int = 0) -> list[engine_pb2.JobEvent]:
        stream = self.stub.WatchJob(
            engine_pb2.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=30
        )
        return [reply.event async for reply in stream]

    async def wait_for(self, job_id: str, status: int) -> engine_pb2.JobEvent:
        stream = self.stub.WatchJob(engine_pb2.WatchJobRequest(job_id=job_id), timeout=30)
        async for reply in stream:
            if reply.event.status == status:
                stream.cancel()
                return reply.event
        raise AssertionError(f"no {Status.Name(status)} event")


@asynccontextmanager
async def running_engine(state_dir: Path) -> AsyncIterator[Engine]:
    plugin = await launcher.start("external_stub", PLUGIN_ARGV, timeout=30)
    try:
        async with grpc.aio.insecure_channel(plugin.target) as channel:
            await launcher.wait_serving(channel, 10)
            engine = Engine(plugin, channel)
            await engine.configure(state_dir)
            yield engine
    finally:
        await plugin.terminate(grace=2)


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stub-pods")


@pytest.fixture(scope="module")
def engine(runner: asyncio.Runner, state_dir: Path) -> Iterator[Engine]:
    context = running_engine(state_dir)
    started = runner.run(context.__aenter__())
    yield started
    runner.run(context.__aexit__(None, None, None))


def with_service(job_id: str, checksum: str = "") -> tuple[Stage, FakePodService]:
    """A stage and its started PodService, provisioning one input file and the algorithm above."""
    stage = Stage(job_id=job_id)
    service = FakePodService(job_id, stage.pod_address).start()
    text = pod_pb2.FileSource(type="data", data=b"hello pods", name="a.txt", checksum=checksum)
    service.provisioning.inputs.add(folder="0", files=[text])
    service.provisioning.algorithm.CopyFrom(pod_pb2.FileSource(type="data", data=ALGORITHM))
    return stage, service


def pod_job(
    stage: Stage, service: FakePodService, command: str = f"{sys.executable} $ALGO"
) -> engine_pb2.JobSpec:
    return engine_pb2.JobSpec(
        job_id=stage.job_id,
        workflow_id=f"wf-{stage.job_id}",
        environment_id="stub-local",
        container=engine_pb2.Container(image="none", tag="latest", command=command),
        pod=engine_pb2.PodAccess(
            node_peer_id=stage.node_address, node_http_api=service.target, private_key=stage.private_key
        ),
    )


def statuses(events: list[engine_pb2.JobEvent]) -> list[str]:
    return [Status.Name(e.status).removeprefix("JOB_STATUS_") for e in events]


def test_job_with_pods_runs_end_to_end(runner: asyncio.Runner, engine: Engine, state_dir: Path) -> None:
    stage, service = with_service("pods-e2e", checksum="sha256:" + sha256(b"hello pods"))

    async def scenario() -> list[engine_pb2.JobEvent]:
        handle = await engine.start(pod_job(stage, service))
        assert stage.private_key.removeprefix("0x") not in handle.state.decode()
        return await engine.watch(stage.job_id)

    try:
        events = runner.run(scenario())
    finally:
        service.stop()

    assert statuses(events) == ["PROVISIONING", "RUNNING", "PUBLISHING", "FINISHED"]
    assert [e.sequence for e in events] == [1, 2, 3, 4] and events[-1].terminal
    assert events[-1].HasField("algorithm_started") and events[-1].HasField("algorithm_finished")
    assert events[-1].algorithm_started == events[1].algorithm_started
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "result.txt") == b"HELLO PODS"
    assert b"algorithm ran on 10 bytes" in (
        service.upload(Kind.UPLOAD_KIND_ALGORITHM_LOG, "algorithm.log") or b""
    )
    assert service.upload(Kind.UPLOAD_KIND_CONFIGURATION_LOG, "configuration.log")
    assert service.upload(Kind.UPLOAD_KIND_PUBLISHING_LOG, "publishing.log")
    assert service.phases() == [
        "POD_PHASE_PROVISIONING_STARTED",
        "POD_PHASE_PROVISIONING_FINISHED",
        "POD_PHASE_PUBLISHING_STARTED",
        "POD_PHASE_PUBLISHING_FINISHED",
    ]
    spec_file = state_dir / "jobs" / stage.job_id / "spec.json"
    assert spec_file.stat().st_mode & 0o777 == 0o600
    key = stage.private_key.removeprefix("0x")
    assert key not in engine.plugin.stderr_text()
    assert key not in (state_dir / "jobs" / stage.job_id / "logs" / "algorithm.log").read_text()


def test_provisioning_failure_still_publishes_the_logs(runner: asyncio.Runner, engine: Engine) -> None:
    stage, service = with_service("pods-bad-input", checksum="sha256:" + sha256(b"not it"))
    try:
        runner.run(engine.start(pod_job(stage, service)))
        events = runner.run(engine.watch(stage.job_id))
    finally:
        service.stop()

    assert statuses(events) == ["PROVISIONING", "PUBLISHING", "DATA_PROVISIONING_FAILED"]
    assert not events[-1].HasField("algorithm_started")
    log = service.upload(Kind.UPLOAD_KIND_CONFIGURATION_LOG, "configuration.log")
    assert log is not None and b"checksum mismatch" in log
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "result.txt") is None
    assert "POD_PHASE_DATA_PROVISIONING_FAILED" in service.phases()


def test_algorithm_failure_still_publishes_the_logs(runner: asyncio.Runner, engine: Engine) -> None:
    stage, service = with_service("pods-algo-fails")
    try:
        job = pod_job(stage, service, command="echo failing on purpose; exit 3")
        runner.run(engine.start(job))
        events = runner.run(engine.watch(stage.job_id))
    finally:
        service.stop()

    assert statuses(events) == ["PROVISIONING", "RUNNING", "PUBLISHING", "ALGORITHM_FAILED"]
    assert events[-1].exit_code == 3 and events[-1].HasField("algorithm_finished")
    assert service.upload(Kind.UPLOAD_KIND_ALGORITHM_LOG, "algorithm.log") == b"failing on purpose\n"


def test_stop_during_provisioning(runner: asyncio.Runner, engine: Engine) -> None:
    stage, service = with_service("pods-stopped")
    service.hold_provisioning.set()

    async def scenario() -> list[engine_pb2.JobEvent]:
        await engine.start(pod_job(stage, service))
        await engine.wait_for(stage.job_id, Status.JOB_STATUS_PROVISIONING)
        await engine.stub.StopJob(
            engine_pb2.StopJobRequest(job_id=stage.job_id, grace_seconds=1, reason="test")
        )
        return await engine.watch(stage.job_id)

    try:
        events = runner.run(scenario())
    finally:
        service.stop()

    assert statuses(events) == ["PROVISIONING", "STOPPED"]
    assert events[-1].stopped and "test" in events[-1].message
    assert "POD_PHASE_PUBLISHING_STARTED" not in service.phases()


def test_plugin_restart_during_provisioning(runner: asyncio.Runner, tmp_path: Path) -> None:
    stage, service = with_service("pods-recovered")
    service.hold_provisioning.set()

    async def scenario() -> list[engine_pb2.JobEvent]:
        async with running_engine(tmp_path) as first:
            handle = await first.start(pod_job(stage, service))
            await first.wait_for(stage.job_id, Status.JOB_STATUS_PROVISIONING)
        async with running_engine(tmp_path) as second:  # a new plugin process, same state dir
            recovered = await second.stub.RecoverJob(engine_pb2.RecoverJobRequest(handle=handle))
            assert Status.Name(recovered.last_event.status) == "JOB_STATUS_PROVISIONING"
            service.hold_provisioning.clear()
            return await second.watch(stage.job_id, after=recovered.last_event.sequence)

    try:
        events = runner.run(scenario())
    finally:
        service.stop()

    assert statuses(events) == ["RUNNING", "PUBLISHING", "FINISHED"]
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "result.txt") == b"HELLO PODS"
