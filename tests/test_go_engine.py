"""The Go engine (examples/engines/go) on stock HashiCorp go-plugin, built from Debian's packages.

It proves that the node loads an unmodified go-plugin plugin: the 6-field handshake line, the socket
go-plugin makes in $TMPDIR, hclog's JSON logs, GRPCController.Shutdown, and the parent-death signal.
The engine is registered the way any engine is, through a ``c2d.engines`` entry point: a
``.dist-info`` written into a temporary folder on PYTHONPATH stands in for ``pip install
examples/engines/go`` (nothing is installed into the test environment).

Needs ``go`` (scripts/setup-dev installs it as root): skips without it, fails under CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.engine.v1 import engine_pb2, engine_pb2_grpc
from c2d.plugin import handshake, launcher
from nodeproc import NodeProcess, process_alive, running_node, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
GO_DIR = REPO_ROOT / "examples" / "engines" / "go"
BUILD_SCRIPT = GO_DIR / "build.sh"
ENGINE = "go_engine"
ENV = "go-local"
S = common_pb2.JobStatus


def _missing(problem: str) -> None:
    message = f"{problem}; run bash scripts/setup-dev as root (Debian's golang-go, go-plugin, grpc, protoc)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must build and test the Go engine: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine's binary, built by examples/engines/go/build.sh (fast when up to date)."""
    for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is not installed")
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"build.sh failed:\n{result.stdout}{result.stderr}"
    binary = GO_DIR / "build" / "c2d-go-engine"
    assert binary.is_file(), f"build.sh built no {binary}"
    print(f"build.sh took {time.monotonic() - started:.1f}s")
    return binary


@pytest.fixture(scope="module")
def registered(go_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables under which ``go_engine`` is an installed engine."""
    site = tmp_path_factory.mktemp("go-engine-site")
    info = site / "c2d_go_engine-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: c2d-go-engine\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[c2d.engines]\ngo_engine = c2d_go_engine.hooks\n")
    path = os.pathsep.join(p for p in (str(GO_DIR), str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "C2D_GO_ENGINE_BINARY": str(go_binary)}


def run_python(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "C2D_CONFORMANCE_"))}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_go_engine_passes_the_conformance_suite(registered: dict[str, str]) -> None:
    result = run_python(
        registered, "-m", "c2d.conformance", ENGINE, "-q", "-p", "no:cacheprovider", timeout=300
    )
    shown = (
        f"exit status {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    assert result.returncode == 0, f"the conformance suite failed against {ENGINE}:\n{shown}"
    assert " passed" in result.stdout and " failed" not in result.stdout, shown


def test_stock_go_plugin_handshake_and_shutdown(registered: dict[str, str], tmp_path: Path) -> None:
    """The 6-field line, a socket in $TMPDIR (go-plugin 1.0 ignores PLUGIN_UNIX_SOCKET_DIR), and
    GRPCController.Shutdown ending the plugin by itself (exit status 0, not SIGTERM)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    async def scenario() -> tuple[handshake.HandshakeLine, int | None, bool]:
        plugin = await launcher.start(
            ENGINE, [registered["C2D_GO_ENGINE_BINARY"]], env={"TMPDIR": str(tmp)}, timeout=30
        )
        assert plugin.line is not None
        channel = grpc.aio.insecure_channel(plugin.target)
        await launcher.wait_serving(channel, 30)
        await channel.close()
        await plugin.terminate(grace=5.0)
        return plugin.line, plugin.process.returncode, Path(plugin.line.address).exists()

    line, code, socket_left = asyncio.run(scenario())
    assert line.network == "unix" and Path(line.address).parent == tmp, line
    assert line.server_cert == "" and line.multiplex is None, line
    assert code == 0, f"after GRPCController.Shutdown the plugin must exit by itself (0), got {code}"
    assert not socket_left, "the plugin's socket outlived it"


@pytest.fixture
def go_node(registered: dict[str, str], tmp_path: Path) -> Iterator[NodeProcess]:
    tmp = tmp_path / "tmp"  # go-plugin 1.0 puts its socket here: the test can see it
    tmp.mkdir()
    env = {
        **registered,
        "TMPDIR": str(tmp),
        "C2D_LOAD_PLUGINS": ENGINE,
        "C2D_ENGINES__GO_ENGINE__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]',
        "PLUGIN_CLIENT_CERT": "must-never-reach-the-plugin",
    }
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_environment(ENV)
        yield node


def plugin_of(node: NodeProcess) -> int:
    pids = wait_for(node.plugin_pids, 15, "the Go plugin process")
    assert len(pids) == 1, f"expected one plugin process, found {pids}"
    return pids[0]


def test_node_runs_the_hello_workflow_on_the_go_engine(go_node: NodeProcess, tmp_path: Path) -> None:
    (env,) = [e for e in go_node.environments() if e.id == ENV]
    assert env.engine == ENGINE and env.engine_health == common_pb2.ENGINE_HEALTH_HEALTHY, env
    workflow = json.loads((REPO_ROOT / "examples" / "hello.json").read_text())
    workflow["environment"] = ENV
    # The engine runs jobs unconfined: only the operator's own (the node key's) run there.
    with Client(go_node.address, go_node.node_key()) as operator:
        started = operator.start(workflow, free=True)
        jobs = {j.stage_index: j for j in operator.wait(started.workflow_id, timeout=90)}
        assert {i: j.status for i, j in jobs.items()} == {
            0: S.JOB_STATUS_FINISHED,
            1: S.JOB_STATUS_FINISHED,
        }, {i: (j.status_text, j.status_message) for i, j in jobs.items()}
        paths = operator.results(jobs[1].job_id, tmp_path / "results")
    shout = [p for p in paths if p.name == "shout.txt"]
    assert [p.read_text() for p in shout] == ["HELLO, COMPUTE-TO-DATA!\n"], paths
    # hclog's JSON lines came through the node's logging, with their level and fields.
    configured = [r for r in go_node.logs if r.get("plugin") == ENGINE and r.get("event") == "configured"]
    assert configured and configured[0].get("level") == "info", go_node.raw_lines[-40:]
    assert configured[0].get("module") == ENGINE and "environments" in configured[0], configured[0]


def test_no_client_cert_and_a_dead_plugins_socket_is_removed(go_node: NodeProcess) -> None:
    pid = plugin_of(go_node)
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"PLUGIN_CLIENT_CERT=")], (
        "PLUGIN_CLIENT_CERT reached the plugin"
    )
    tmp = Path(dict(v.decode().split("=", 1) for v in environ if b"=" in v)["TMPDIR"])
    (socket_path,) = list(tmp.glob("plugin*"))
    os.kill(pid, signal.SIGKILL)  # no clean exit: go-plugin cannot remove its socket itself
    wait_for(lambda: go_node.plugin_pids() and go_node.plugin_pids() != [pid], 30, "a restarted plugin")
    wait_for(lambda: not socket_path.exists(), 10, f"the dead plugin's socket {socket_path} removed")
    # The restarted plugin's own socket, once it has bound it: the only one there.
    wait_for(lambda: len(list(tmp.glob("plugin*"))) == 1, 30, "the restarted plugin's socket, alone")


def test_sigkilled_node_leaves_no_go_plugin(go_node: NodeProcess) -> None:
    pid = plugin_of(go_node)
    go_node.process.kill()  # SIGKILL: the node runs no cleanup at all
    go_node.process.wait()
    wait_for(lambda: not process_alive(pid), 5, f"the Go plugin {pid} to die with its node")


def test_node_stops_the_go_plugin_with_shutdown(go_node: NodeProcess) -> None:
    """SIGTERM to the node: GRPCController.Shutdown ends the plugin by itself, which removes its socket."""
    pid = plugin_of(go_node)
    environ = dict(
        v.decode().split("=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v
    )
    tmp = Path(environ["TMPDIR"])
    assert go_node.stop() == 0, go_node.raw_lines[-30:]
    assert not process_alive(pid)
    assert not list(tmp.glob("plugin*")), list(tmp.glob("plugin*"))
    mine = [r for r in go_node.logs if r.get("plugin") == ENGINE]
    assert not [r for r in mine if r.get("level") in ("error", "critical")], mine
    assert not [r for r in mine if r.get("event") == "plugin stderr"], (
        "hclog lines must be parsed, not logged as text"
    )


def test_jobs_get_their_memory_grant_and_a_lower_priority(registered: dict[str, str], tmp_path: Path) -> None:
    """The granted RAM is the algorithm's RLIMIT_AS; jobs run at nice 10."""

    async def scenario() -> tuple[list[engine_pb2.JobEvent], bytes]:
        plugin = await launcher.start(ENGINE, [registered["C2D_GO_ENGINE_BINARY"]], timeout=30)
        try:
            async with grpc.aio.insecure_channel(plugin.target) as channel:
                await launcher.wait_serving(channel, 30)
                stub = engine_pb2_grpc.ComputeEngineServiceStub(channel)
                config = struct_pb2.Struct()
                config.update({"enabled": True})
                await stub.Configure(
                    engine_pb2.ConfigureRequest(
                        api_version=1, config=config, host_id="h", state_dir=str(tmp_path)
                    ),
                    timeout=10,
                )
                spec = engine_pb2.JobSpec(
                    job_id="limits-1",
                    environment_id=ENV,
                    container=engine_pb2.Container(command="ulimit -v; nice"),
                    resources=[
                        common_pb2.GrantedResource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, amount=1.5)
                    ],
                )
                await stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=10)
                events = [
                    r.event
                    async for r in stub.WatchJob(engine_pb2.WatchJobRequest(job_id="limits-1"), timeout=30)
                ]
                logs = [
                    r.data
                    async for r in stub.StreamJobLogs(
                        engine_pb2.StreamJobLogsRequest(job_id="limits-1"), timeout=10
                    )
                ]
                await stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id="limits-1"), timeout=20)
                return events, b"".join(logs)
        finally:
            await plugin.terminate(5.0)

    events, logs = asyncio.run(scenario())
    assert events[-1].status == S.JOB_STATUS_FINISHED, events
    assert logs.split() == [str(int(1.5 * 1024 * 1024)).encode(), b"10"], logs


def test_the_unconfined_go_engine_runs_only_the_operators_jobs(
    registered: dict[str, str], tmp_path: Path
) -> None:
    """Nothing confines its jobs: a consumer's job is refused unless the operator sets unsafe_unconfined."""
    operator, consumer = "0x" + "a" * 40, "0x" + "b" * 40
    pod = engine_pb2.PodAccess(node_peer_id=operator, node_http_api="127.0.0.1:1", private_key="11" * 32)

    def spec(job_id: str, owner: str) -> engine_pb2.JobSpec:
        return engine_pb2.JobSpec(
            job_id=job_id,
            environment_id=ENV,
            owner=owner,
            pod=pod,
            container=engine_pb2.Container(command="echo hi"),
        )

    async def scenario(unsafe: bool) -> tuple[dict[str, str], grpc.StatusCode, str]:
        plugin = await launcher.start(ENGINE, [registered["C2D_GO_ENGINE_BINARY"]], timeout=30)
        try:
            async with grpc.aio.insecure_channel(plugin.target) as channel:
                await launcher.wait_serving(channel, 30)
                stub = engine_pb2_grpc.ComputeEngineServiceStub(channel)
                config = struct_pb2.Struct()
                config.update({"enabled": True, "unsafe_unconfined": unsafe})
                state = tmp_path / f"state-{unsafe}"
                request = engine_pb2.ConfigureRequest(
                    api_version=1, config=config, host_id="h", state_dir=str(state)
                )
                await stub.Configure(request, timeout=10)
                watch = stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest(), timeout=10)
                first = await watch.read()
                watch.cancel()
                code = grpc.StatusCode.OK
                try:
                    await stub.StartJob(
                        engine_pb2.StartJobRequest(spec=spec("consumer-1", consumer)), timeout=10
                    )
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                await stub.DestroyJob(engine_pb2.DestroyJobRequest(job_id="consumer-1"), timeout=20)
                env = first.fingerprint.environments[0]
                return dict(env.labels), code, first.fingerprint.health_description
        finally:
            await plugin.terminate(5.0)

    labels, code, health = asyncio.run(scenario(unsafe=False))
    assert labels.get("c2d.operator_only") == "true" and code == grpc.StatusCode.FAILED_PRECONDITION, (
        labels,
        code,
    )
    assert "UNCONFINED" in health
    labels, code, health = asyncio.run(scenario(unsafe=True))
    assert "c2d.operator_only" not in labels and code == grpc.StatusCode.OK, (labels, code)
    assert "unsafe_unconfined = true" in health
