"""After a plugin restart the node calls RecoverJob for every job it knows, and jobs carry on."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine

from host.engines.recovery import JobHandles
from host.engines.supervisor import EngineSupervisor, PluginSettings, SupervisorState

SETTINGS = PluginSettings(restart_initial_seconds=0.05, restart_max_seconds=0.2, health_interval_seconds=0.5)


async def wait_ready_after(sup: EngineSupervisor, old_pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sup.pid in (0, old_pid) or sup.state is not SupervisorState.READY:
        assert time.monotonic() < deadline, f"engine not back: {sup.state_message}"
        await asyncio.sleep(0.05)


def spec(job_id: str, command: str) -> engine_pb2.JobSpec:
    return engine_pb2.JobSpec(
        job_id=job_id,
        workflow_id="wf-" + job_id,
        environment_id="stub-local",
        container=engine_pb2.Container(command=command),
        max_duration_seconds=60,
    )


def test_jobs_are_recovered_after_a_plugin_sigkill_and_lost_ones_reported(tmp_path: Path) -> None:
    async def scenario() -> tuple[JobHandles, list[engine_pb2.JobEvent]]:
        handles = JobHandles()
        sup = EngineSupervisor(
            find_engine("external_stub"),
            config={"enabled": True},
            settings=SETTINGS,
            host_id="h-" + uuid.uuid4().hex[:8],
            state_dir=tmp_path / "engine",
            on_ready=handles.recover,
        )
        sup.start()
        try:
            await sup.wait_settled(30)
            assert sup.stub is not None
            running = await sup.stub.StartJob(
                engine_pb2.StartJobRequest(spec=spec("keep", "sleep 2; echo done"))
            )
            handles.remember(sup.name, running.handle)
            # A job removed behind the node's back, and a handle the engine cannot read:
            # recovery reports both lost and still re-attaches the others.
            gone = await sup.stub.StartJob(engine_pb2.StartJobRequest(spec=spec("gone", "true")))
            await sup.stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id="gone"))
            handles.remember(sup.name, gone.handle)
            handles.remember(sup.name, engine_pb2.JobHandle(job_id="garbled", version=1, state=b"{}"))

            old = sup.pid
            os.kill(old, signal.SIGKILL)
            await wait_ready_after(sup, old, 20)
            deadline = time.monotonic() + 10
            while not handles.recovered and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

            events = [r.event async for r in sup.stub.WatchJob(engine_pb2.WatchJobRequest(job_id="keep"))]
            return handles, events
        finally:
            await sup.stop()

    handles, events = asyncio.run(scenario())
    assert ("external_stub", "keep") in handles.recovered
    assert sorted(handles.lost) == [("external_stub", "garbled"), ("external_stub", "gone")]
    assert [h.job_id for h in handles.handles("external_stub")] == ["keep"]
    assert events[-1].terminal and events[-1].status == common_pb2.JOB_STATUS_FINISHED
