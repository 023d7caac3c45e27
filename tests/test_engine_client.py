"""host.engines.client against a real engine plugin process (external_stub): domain errors, idempotent calls.

The host reaches engines only through :class:`EngineClient`; these tests pin what
its callers rely on: which gRPC failures become which domain error, and that the
calls documented as idempotent can be repeated without error or effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin import launcher
from host.engines.client import (
    EngineClient,
    EngineRefused,
    EngineUnavailable,
    JobNotFound,
    LogChunk,
)

PLUGIN_ARGV = [sys.executable, "-m", "c2d_external_stub"]
HOST_ID = "client-test-node"
ENVIRONMENT = "stub-local"
Status = common_pb2.JobStatus

pytestmark = pytest.mark.timeout(120)


class Plugin:
    """A configured external_stub process and the host's client of it."""

    def __init__(self, process: launcher.PluginProcess, client: EngineClient) -> None:
        self.process = process
        self.client = client


@contextlib.asynccontextmanager
async def running_plugin(state_dir: Path) -> AsyncIterator[Plugin]:
    process = await launcher.start("external_stub", PLUGIN_ARGV, timeout=30)
    try:
        async with grpc.aio.insecure_channel(process.target) as channel:
            await launcher.wait_serving(channel, 10)
            assert process.line is not None  # start() returns once the handshake line is read
            config = struct_pb2.Struct()
            config.update({"enabled": True})
            request = engine_pb2.ConfigureRequest(
                api_version=process.line.app_version, config=config, host_id=HOST_ID, state_dir=str(state_dir)
            )
            # Configure is the supervisor's handshake, not a job call: the raw stub is the test's here.
            await engine_pb2_grpc.ComputeEngineServiceStub(channel).Configure(request, timeout=10)
            yield Plugin(process, EngineClient(channel, "external_stub"))
    finally:
        await process.terminate(grace=2)


def job(job_id: str, command: str) -> engine_pb2.JobSpec:
    return engine_pb2.JobSpec(
        job_id=job_id,
        workflow_id=f"wf-{job_id}",
        environment_id=ENVIRONMENT,
        container=engine_pb2.Container(image="none", tag="latest", command=command),
    )


async def events_of(client: EngineClient, job_id: str, after: int = 0) -> list[engine_pb2.JobEvent]:
    async with contextlib.aclosing(client.watch_job(job_id, after)) as events:
        return [event async for event in events]


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def plugin(runner: asyncio.Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugin]:
    context = running_plugin(tmp_path_factory.mktemp("client-stub"))
    yield runner.run(context.__aenter__())
    runner.run(context.__aexit__(None, None, None))


def test_unknown_job_is_job_not_found(runner: asyncio.Runner, plugin: Plugin) -> None:
    async def scenario() -> None:
        with pytest.raises(JobNotFound) as watched:
            await events_of(plugin.client, "no-such-job")
        assert watched.value.call == "WatchJob" and watched.value.engine == "external_stub"
        with pytest.raises(JobNotFound):
            await plugin.client.recover_job(engine_pb2.JobHandle(job_id="no-such-job", version=1))
        with pytest.raises(JobNotFound):
            async with contextlib.aclosing(plugin.client.stream_logs("no-such-job")) as logs:
                _ = [chunk async for chunk in logs]

    runner.run(scenario())


def test_a_spec_the_engine_cannot_run_is_refused(runner: asyncio.Runner, plugin: Plugin) -> None:
    async def scenario() -> None:
        unknown_env = job("refused-env", "true")
        unknown_env.environment_id = "nope"
        for spec in (job("refused-empty", "   "), unknown_env, job("../escape", "true")):
            with pytest.raises(EngineRefused) as refused:
                await plugin.client.start_job(spec)
            assert refused.value.call == "StartJob" and refused.value.details
        listed = {j.job_id for j in await plugin.client.list_jobs()}
        assert not listed & {"refused-empty", "refused-env"}  # nothing half-started

    runner.run(scenario())


def test_start_stop_and_destroy_are_idempotent(runner: asyncio.Runner, plugin: Plugin) -> None:
    async def scenario() -> None:
        spec = job("idem", "sleep 30")
        first = await plugin.client.start_job(spec)
        assert await plugin.client.start_job(spec) == first  # the same handle, nothing started twice
        async with contextlib.aclosing(plugin.client.watch_job("idem")) as events:
            assert (await anext(events)).status == Status.JOB_STATUS_RUNNING
        for _ in range(2):
            await plugin.client.stop_job("idem", grace_seconds=1, reason="test")
        ended = await events_of(plugin.client, "idem")
        assert [e.terminal for e in ended].count(True) == 1 and ended[-1].status == Status.JOB_STATUS_STOPPED
        await plugin.client.stop_job("idem", grace_seconds=1, reason="again")  # ended: no error
        recovered = await plugin.client.recover_job(first)
        assert recovered.last_event is not None and recovered.last_event.terminal
        for _ in range(2):
            await plugin.client.destroy_job("idem")
        assert "idem" not in {j.job_id for j in await plugin.client.list_jobs()}
        with pytest.raises(JobNotFound):
            await plugin.client.recover_job(first)
        await plugin.client.stop_job("never-started", grace_seconds=1, reason="test")
        await plugin.client.destroy_job("never-started")

    runner.run(scenario())


def test_watch_resumes_after_a_sequence_and_logs_resume_at_an_offset(
    runner: asyncio.Runner, plugin: Plugin
) -> None:
    async def scenario() -> None:
        await plugin.client.start_job(job("resume", "echo one; echo two"))
        events = await events_of(plugin.client, "resume")
        assert [e.sequence for e in events] == list(range(1, len(events) + 1)) and events[-1].terminal
        assert await events_of(plugin.client, "resume", after=events[0].sequence) == events[1:]
        async with contextlib.aclosing(plugin.client.stream_logs("resume")) as logs:
            whole = [chunk async for chunk in logs]
        assert b"".join(c.data for c in whole) == b"one\ntwo\n" and whole[0].offset == 0
        async with contextlib.aclosing(plugin.client.stream_logs("resume", offset=4)) as logs:
            assert [chunk async for chunk in logs] == [LogChunk(4, b"two\n")]
        await plugin.client.destroy_job("resume")

    runner.run(scenario())


def test_a_draining_engine_is_unavailable_for_new_jobs_and_a_dead_one_for_everything(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with running_plugin(tmp_path) as own:
            await own.client.start_job(job("before-drain", "true"))
            for _ in range(2):
                await own.client.drain()
            with pytest.raises(EngineUnavailable):
                await own.client.start_job(job("after-drain", "true"))
            await own.client.start_job(job("before-drain", "true"))  # a repeat is no new job
            await own.process.terminate(grace=2)
            with pytest.raises(EngineUnavailable):
                await own.client.list_jobs()
            with pytest.raises(EngineUnavailable):
                await events_of(own.client, "before-drain")

    asyncio.run(scenario())
