"""external_stub end to end: the plugin as a real process, started and driven over gRPC as the node does.

Most tests share one configured plugin (module scope); the ones about
Configure and about surviving a plugin crash start their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin import launcher
from c2d_external_stub import procinfo
from c2d_external_stub.jobdir import JobDir
from nodeproc import wait_for

PLUGIN_ARGV = [sys.executable, "-m", "c2d_external_stub"]
HOST_ID = "test-node"
ENVIRONMENT = "stub-local"
GIB = 1 << 30
Status = common_pb2.JobStatus

pytestmark = pytest.mark.timeout(120)


class Engine:
    """A started plugin process, its channel and its stub."""

    def __init__(self, plugin: launcher.PluginProcess, channel: grpc.aio.Channel) -> None:
        self.plugin = plugin
        self.channel = channel
        self.stub = engine_pb2_grpc.ComputeEngineServiceStub(channel)

    async def configure(self, state_dir: Path, **settings: Any) -> None:
        config = struct_pb2.Struct()
        config.update({"enabled": True, **settings})
        await self.stub.Configure(
            engine_pb2.ConfigureRequest(
                api_version=1, config=config, host_id=HOST_ID, state_dir=str(state_dir)
            )
        )

    async def start(self, spec: engine_pb2.JobSpec) -> engine_pb2.JobHandle:
        return (await self.stub.StartJob(engine_pb2.StartJobRequest(spec=spec))).handle

    async def watch(self, job_id: str, after: int = 0, timeout: float = 15) -> list[engine_pb2.JobEvent]:
        """Every event after ``after`` up to the terminal one."""
        stream = self.stub.WatchJob(
            engine_pb2.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=timeout
        )
        return [reply.event async for reply in stream]

    async def run(self, spec: engine_pb2.JobSpec) -> list[engine_pb2.JobEvent]:
        await self.start(spec)
        return await self.watch(spec.job_id)

    async def first_event(self, job_id: str) -> engine_pb2.JobEvent:
        stream = self.stub.WatchJob(engine_pb2.WatchJobRequest(job_id=job_id), timeout=10)
        async for reply in stream:
            stream.cancel()
            return reply.event
        raise AssertionError("no event")


@asynccontextmanager
async def running_engine() -> AsyncIterator[Engine]:
    plugin = await launcher.start("external_stub", PLUGIN_ARGV, timeout=30)
    try:
        async with grpc.aio.insecure_channel(plugin.target) as channel:
            await launcher.wait_serving(channel, 10)
            yield Engine(plugin, channel)
    finally:
        await plugin.terminate(grace=2)


def job(job_id: str, command: str, *, cpu: float = 0, ram: float = 0, disk: float = 0, max_duration: int = 0):
    spec = engine_pb2.JobSpec(
        job_id=job_id,
        workflow_id=f"wf-{job_id}",
        environment_id=ENVIRONMENT,
        container=engine_pb2.Container(image="none", tag="latest", command=command),
        max_duration_seconds=max_duration,
    )
    for resource_id, amount in (("cpu", cpu), ("ram", ram), ("disk", disk)):
        if amount:
            spec.resources.add(id=resource_id, amount=amount)
    return spec


def assert_one_terminal(events: list[engine_pb2.JobEvent], status: int) -> engine_pb2.JobEvent:
    """Sequences 1, 2, … ; RUNNING first; exactly one terminal event, the last, with ``status``."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].status == Status.JOB_STATUS_RUNNING and events[0].HasField("algorithm_started")
    assert [e.terminal for e in events] == [False] * (len(events) - 1) + [True]
    last = events[-1]
    assert last.status == status, (Status.Name(last.status), last.message)
    assert last.HasField("algorithm_finished")
    return last


async def rpc_code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code()


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stub-state")


@pytest.fixture(scope="module")
def engine(runner: asyncio.Runner, state_dir: Path) -> Iterator[Engine]:
    context = running_engine()
    started = runner.run(context.__aenter__())
    runner.run(started.configure(state_dir))
    yield started
    runner.run(context.__aexit__(None, None, None))


# Configure and the fingerprint --------------------------------------------------------


def test_configure_refused_until_enabled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_engine() as engine:
            info = await engine.stub.GetPluginInfo(engine_pb2.GetPluginInfoRequest())
            assert (info.name, list(info.api_versions)) == ("external_stub", [1])
            assert await rpc_code(engine.stub.ListJobs(engine_pb2.ListJobsRequest())) == (
                grpc.StatusCode.FAILED_PRECONDITION
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await engine.configure(tmp_path, enabled=False)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "enabled = true" in refused.value.details()
            assert await rpc_code(engine.configure(tmp_path, environments=[{"id": "x", "cpu": -1}])) == (
                grpc.StatusCode.INVALID_ARGUMENT
            )
            await engine.configure(tmp_path)
            assert (await engine.stub.ListJobs(engine_pb2.ListJobsRequest())).jobs == []

    asyncio.run(scenario())


def test_fingerprint_follows_capacity(runner: asyncio.Runner, engine: Engine) -> None:
    async def scenario() -> None:
        stream = engine.stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest(), timeout=20)
        first = (await stream.read()).fingerprint
        assert first.health == common_pb2.ENGINE_HEALTH_HEALTHY
        caps = first.capabilities
        # Not a container, but confined (bwrap or unshare on this machine): the network can be taken away.
        assert not caps.container_isolation and caps.network_isolation and caps.runs_pods
        assert caps.disk_quota == "file-size-limit" and caps.log_streaming
        (env,) = first.environments
        cpu = {r.id: r for r in env.resources}["cpu"]
        assert env.id == ENVIRONMENT and cpu.type == common_pb2.RESOURCE_TYPE_CPU
        assert cpu.available == cpu.total

        await engine.start(job("fp", "sleep 0.5", cpu=1))
        seen = [(await stream.read()).fingerprint for _ in range(2)]  # the job starts, then ends
        stream.cancel()
        available = [{r.id: r for r in fp.environments[0].resources}["cpu"].available for fp in seen]
        assert available == [cpu.total - 1, cpu.total]

    runner.run(scenario())


# How jobs end ----------------------------------------------------------------------


def test_jobs_end_as_their_algorithms_do(runner: asyncio.Runner, engine: Engine, state_dir: Path) -> None:
    async def scenario() -> None:
        finished, failed, quota = await asyncio.gather(
            engine.run(job("ok", "echo result > $C2D_DATA/outputs/x")),
            engine.run(job("exit3", "echo failing; exit 3")),
            engine.run(job("quota", "head -c 10000000 /dev/zero > $C2D_DATA/outputs/big", disk=0.000001)),
        )
        last = assert_one_terminal(finished, Status.JOB_STATUS_FINISHED)
        assert last.HasField("exit_code") and last.exit_code == 0
        assert (state_dir / "jobs" / "ok" / "outputs" / "x").read_text() == "result\n"

        last = assert_one_terminal(failed, Status.JOB_STATUS_ALGORITHM_FAILED)
        assert last.exit_code == 3

        last = assert_one_terminal(quota, Status.JOB_STATUS_DISK_QUOTA_EXCEEDED)
        assert last.disk_quota_exceeded
        assert (state_dir / "jobs" / "quota" / "outputs" / "big").stat().st_size <= int(0.000001 * GIB)

    runner.run(scenario())


def test_resource_limits_reach_the_algorithm(runner: asyncio.Runner, engine: Engine, state_dir: Path) -> None:
    probe = (
        "import resource as r; "
        "print(*(r.getrlimit(getattr(r, n))[0] for n in ('RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE')))"
    )
    command = f'ulimit -v; ulimit -t; {sys.executable} -c "{probe}"; echo $C2D_DATA; pwd'
    events = runner.run(engine.run(job("limits", command, cpu=1, ram=1, disk=0.5, max_duration=10)))
    assert_one_terminal(events, Status.JOB_STATUS_FINISHED)
    job_dir = state_dir / "jobs" / "limits"
    lines = (job_dir / "logs" / "algorithm.log").read_text().splitlines()
    assert lines == [str(GIB // 1024), "10", f"10 {GIB} {GIB // 2}", str(job_dir), str(job_dir)]


def test_jobs_run_at_a_lower_cpu_priority_than_the_node(
    runner: asyncio.Runner, engine: Engine, state_dir: Path
) -> None:
    """Every process of a job (here the algorithm) runs at niceness 19 under SCHED_IDLE, and its
    session, a scheduling group of its own where the kernel groups by session, at niceness 19 too."""
    policy = "import os; print(os.sched_getscheduler(0) == os.SCHED_IDLE)"
    command = f'nice; {sys.executable} -c "{policy}"; cat /proc/self/autogroup || echo no autogroups'
    events = runner.run(engine.run(job("niceness", command)))
    assert_one_terminal(events, Status.JOB_STATUS_FINISHED)
    logged = (state_dir / "jobs" / "niceness" / "logs" / "algorithm.log").read_text().splitlines()
    assert logged[:2] == ["19", "True"]  # coreutils' nice prints its niceness
    if Path("/proc/self/autogroup").exists():
        assert logged[2].endswith(" nice 19")
        assert logged[2] != Path("/proc/self/autogroup").read_text().strip()  # not the test's session


def test_a_stop_signals_a_shell_before_the_child_it_waits_for() -> None:
    """The shim's SIGTERM order under a sandbox: the shell first, or it would log its child's death."""
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 30; true"], start_new_session=True)
    try:
        (child,) = wait_for(lambda: procinfo.children_of(shell.pid), 10, "the shell's sleep")
        assert procinfo.parents_first([child, shell.pid]) == [shell.pid, child]
        assert procinfo.parents_first([shell.pid, child]) == [shell.pid, child]
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()


def test_time_limit_and_stop(runner: asyncio.Runner, engine: Engine) -> None:
    async def scenario() -> None:
        await engine.start(job("stopme", "sleep 30"))
        assert (await engine.first_event("stopme")).status == Status.JOB_STATUS_RUNNING
        await engine.stub.StopJob(engine_pb2.StopJobRequest(job_id="stopme", grace_seconds=1, reason="test"))
        stopped = await engine.watch("stopme")
        last = assert_one_terminal(stopped, Status.JOB_STATUS_STOPPED)
        assert last.stopped
        await engine.stub.StopJob(engine_pb2.StopJobRequest(job_id="stopme"))  # ended: no error
        await engine.stub.StopJob(engine_pb2.StopJobRequest(job_id="no-such-job"))

    async def timed_out() -> list[engine_pb2.JobEvent]:
        return await engine.run(job("slow", "sleep 30", max_duration=1))

    async def both() -> None:
        events, _ = await asyncio.gather(timed_out(), scenario())
        assert assert_one_terminal(events, Status.JOB_STATUS_TIMED_OUT).timed_out

    runner.run(both())


# Job calls and their errors --------------------------------------------------------


def test_start_is_idempotent_and_destroy_removes_the_job(
    runner: asyncio.Runner, engine: Engine, state_dir: Path
) -> None:
    async def scenario() -> None:
        spec = job("once", "echo run >> $C2D_DATA/outputs/runs")
        first = await engine.start(spec)
        second = await engine.start(spec)
        assert first == second
        await engine.watch("once")
        assert (state_dir / "jobs" / "once" / "outputs" / "runs").read_text() == "run\n"

        recovered = await engine.stub.RecoverJob(engine_pb2.RecoverJobRequest(handle=first))
        assert recovered.last_event.terminal and recovered.last_event.status == Status.JOB_STATUS_FINISHED
        listed = {j.job_id: j for j in (await engine.stub.ListJobs(engine_pb2.ListJobsRequest())).jobs}
        assert listed["once"].terminal and listed["once"].workflow_id == "wf-once"

        for _ in range(2):
            await engine.stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id="once"))
        assert not (state_dir / "jobs" / "once").exists()
        listed = {j.job_id for j in (await engine.stub.ListJobs(engine_pb2.ListJobsRequest())).jobs}
        assert "once" not in listed
        code = await rpc_code(engine.stub.RecoverJob(engine_pb2.RecoverJobRequest(handle=first)))
        assert code == grpc.StatusCode.NOT_FOUND

    runner.run(scenario())


def test_bad_requests_are_refused(runner: asyncio.Runner, engine: Engine) -> None:
    async def scenario() -> None:
        bad = [
            job("", "true"),
            job("empty-command", "  "),
            job("../escape", "true"),
            engine_pb2.JobSpec(
                job_id="no-env", environment_id="nope", container=engine_pb2.Container(command="true")
            ),
            job("too-long", "true", max_duration=10**6),
            job("gpu", "true"),
        ]
        bad[-1].resources.add(id="nvidia-gpu", type=common_pb2.RESOURCE_TYPE_GPU, amount=1)
        built = job("dockerfile", "true")
        built.container.dockerfile = "FROM busybox:1\n"
        bad.append(built)
        for spec in bad:
            assert await rpc_code(engine.start(spec)) == grpc.StatusCode.INVALID_ARGUMENT, spec.job_id
        assert await rpc_code(engine.watch("no-such-job")) == grpc.StatusCode.NOT_FOUND
        await engine.stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id="no-such-job"))

    runner.run(scenario())


def test_logs_stream_while_the_job_runs(runner: asyncio.Runner, engine: Engine) -> None:
    async def scenario() -> bytes:
        await engine.start(job("logs", "echo one; sleep 0.3; echo two"))
        request = engine_pb2.StreamJobLogsRequest(job_id="logs", follow=True, offset=0)
        chunks = [reply async for reply in engine.stub.StreamJobLogs(request, timeout=10)]
        offsets = [sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))]
        assert [c.offset for c in chunks] == offsets
        tail = engine_pb2.StreamJobLogsRequest(job_id="logs", offset=4)
        assert b"".join([r.data async for r in engine.stub.StreamJobLogs(tail, timeout=10)]) == b"two\n"
        return b"".join(c.data for c in chunks)

    assert runner.run(scenario()) == b"one\ntwo\n"


# Surviving crashes -----------------------------------------------------------------


def test_job_lost_when_its_shim_dies(runner: asyncio.Runner, engine: Engine, state_dir: Path) -> None:
    async def scenario() -> None:
        await engine.start(job("orphan", "sleep 30"))
        await engine.first_event("orphan")
        job_dir = state_dir / "jobs" / "orphan"
        shim = json.loads((job_dir / "shim.json").read_text())["pid"]
        algorithm = json.loads((job_dir / "algorithm.json").read_text())["pid"]
        os.kill(shim, signal.SIGKILL)
        events = await engine.watch("orphan", after=1)
        assert [(e.sequence, e.status, e.terminal) for e in events] == [(2, Status.JOB_STATUS_LOST, True)]
        await asyncio.sleep(0.2)
        assert not process_running(algorithm), "the unsupervised algorithm must be killed"

    runner.run(scenario())


def test_a_job_asked_to_stop_whose_shim_died_unrecorded_ends_stopped(
    runner: asyncio.Runner, engine: Engine, state_dir: Path
) -> None:
    """A SIGTERM that reaches a shim still starting (before its handler is installed) kills it
    without a terminal event: the stop the owner asked for is what the job reports, not LOST."""

    async def scenario() -> None:
        await engine.start(job("early-stop", "sleep 30"))
        await engine.first_event("early-stop")
        job_dir = state_dir / "jobs" / "early-stop"
        shim = json.loads((job_dir / "shim.json").read_text())["pid"]
        JobDir(job_dir).request_stop(0, "stopped by its owner")
        os.kill(shim, signal.SIGKILL)  # as the default action of an uncaught SIGTERM does
        events = await engine.watch("early-stop", after=1)
        assert [(e.sequence, e.status, e.terminal, e.stopped) for e in events] == [
            (2, Status.JOB_STATUS_STOPPED, True, True)
        ]
        assert events[0].message == "stopped: stopped by its owner"

    runner.run(scenario())


def test_job_survives_a_plugin_crash(tmp_path: Path) -> None:
    async def scenario() -> None:
        # The algorithm ends only once the test says so (a file it waits for), after the recovery:
        # a fixed sleep ended it first whenever the plugin's restart took longer on a busy machine.
        go = tmp_path / "jobs" / "survivor" / "outputs" / "go"
        spec = job(
            "survivor",
            'while [ ! -e "$C2D_DATA/outputs/go" ]; do sleep 0.05; done; echo done > $C2D_DATA/outputs/x',
        )
        async with running_engine() as engine:
            await engine.configure(tmp_path)
            handle = await engine.start(spec)
            running = await engine.first_event("survivor")
            assert running.status == Status.JOB_STATUS_RUNNING
            os.kill(engine.plugin.pid, signal.SIGKILL)
            await engine.plugin.process.wait()
        async with running_engine() as engine:
            await engine.configure(tmp_path)
            recovered = await engine.stub.RecoverJob(engine_pb2.RecoverJobRequest(handle=handle))
            assert recovered.last_event.sequence == 1 and not recovered.last_event.terminal
            assert await engine.start(spec) == handle  # known: nothing starts twice
            go.touch()
            events = await engine.watch("survivor", after=recovered.last_event.sequence)
            assert [e.sequence for e in events] == [2]
            assert events[0].status == Status.JOB_STATUS_FINISHED and events[0].exit_code == 0
            assert (tmp_path / "jobs" / "survivor" / "outputs" / "x").read_text() == "done\n"

    asyncio.run(scenario())


def test_shims_are_forked_by_the_fork_server(runner: asyncio.Runner, engine: Engine, state_dir: Path) -> None:
    """No new interpreter per job: the shim is a child of the plugin's fork server, in a session of
    its own (so it outlives the plugin and its group), and runs the job as an exec'd one does."""

    async def scenario() -> None:
        events = await engine.run(job("forked", "echo hi > $C2D_DATA/outputs/o"))
        assert_one_terminal(events, Status.JOB_STATUS_FINISHED)
        await engine.start(job("forked-2", 'while [ ! -e "$C2D_DATA/outputs/go" ]; do sleep 0.05; done'))
        await engine.first_event("forked-2")
        job_dir = state_dir / "jobs" / "forked-2"
        shim = json.loads((job_dir / "shim.json").read_text())["pid"]
        assert os.getsid(shim) == shim
        server = parent_of(shim)
        assert "c2d_external_stub.forkserver" in cmdline(server)
        # A forked shim shows as what it is, as an exec'd one does (not as a second fork server).
        assert cmdline(shim).rstrip().endswith(f"-m c2d_external_stub.shim {job_dir}"), cmdline(shim)
        assert parent_of(server) == engine.plugin.pid
        (job_dir / "outputs" / "go").touch()
        assert_one_terminal(await engine.watch("forked-2"), Status.JOB_STATUS_FINISHED)

    runner.run(scenario())


def test_a_fork_server_crash_loses_no_job(runner: asyncio.Runner, engine: Engine, state_dir: Path) -> None:
    """A running job outlives the fork server that forked its shim, and the next job still starts."""

    async def scenario() -> None:
        await engine.start(job("before-crash", 'while [ ! -e "$C2D_DATA/outputs/go" ]; do sleep 0.05; done'))
        await engine.first_event("before-crash")
        job_dir = state_dir / "jobs" / "before-crash"
        server = parent_of(json.loads((job_dir / "shim.json").read_text())["pid"])
        assert "c2d_external_stub.forkserver" in cmdline(server)
        os.kill(server, signal.SIGKILL)
        events = await engine.run(job("after-crash", "echo hi > $C2D_DATA/outputs/o"))
        assert_one_terminal(events, Status.JOB_STATUS_FINISHED)
        (job_dir / "outputs" / "go").touch()
        assert_one_terminal(await engine.watch("before-crash"), Status.JOB_STATUS_FINISHED)

    runner.run(scenario())


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def process_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
