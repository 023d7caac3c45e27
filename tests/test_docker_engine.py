"""The docker engine: the plugin as a real process (started as the node starts it) against a real Docker engine.

Jobs run without pods on a busybox image: what a job sees, how it ends
(finished, exit code, time limit, stop, pull and creation failures), the
limits Docker actually applied (read back from the container's cgroup),
recovery after the plugin is SIGKILLed mid-run (and mid-provisioning, with
the pods), ListJobs and orphans, log streaming, daemon outages (through a
socket proxy the test cuts), and the engine conformance suite. The unit
tests at the end need no Docker: the container arguments (GPU
DeviceRequests included), the GPU parsers, the config, the outcome rules.

Most Docker tests share one plugin process (module scope); the ones about
recovery and outages start their own.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from c2d.common.v1 import common_pb2
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, Target, describe
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from c2d_docker_engine import config as engine_config
from c2d_docker_engine import containers, gpus, images, jobspec, outcome
from c2d_docker_engine.errors import EngineError
from c2d_docker_engine.grant import Grant, choose_cores, grant_from
from podservice import FakePodService, Kind, Stage

REPO_ROOT = Path(__file__).resolve().parent.parent
Status = common_pb2.JobStatus
GIB = 1 << 30
ENVIRONMENT = "small"
PIDS_LIMIT = 64
# Small grants and short limits keep the Docker tests fast on two cores.
CONFIG: dict[str, Any] = {
    "environments": [
        {
            "id": ENVIRONMENT,
            "cpu": 2,
            "ram_gib": 2,
            "disk_gib": 2,
            "min_cpu": 0.5,
            "min_ram_gib": 0.25,
            "min_disk_gib": 0.1,
            "max_job_duration_seconds": 120,
            "allow_network": True,
        }
    ],
    "pids_limit": PIDS_LIMIT,
    "timeout_grace_seconds": 1,
    "pull_timeout_seconds": 30,
    "daemon_wait_seconds": 10,
}

pytestmark = pytest.mark.timeout(120)


# Helpers shared with test_docker_hostile.py ------------------------------------------------


def docker_target(config: dict[str, Any] | None = None) -> Target:
    """The installed docker engine with the test config; its conformance image is the busybox test image."""
    return Target(spec=find_engine("docker").spec, config=config or CONFIG, config_source="tests")


@pytest.fixture(scope="module")
def busybox(docker_client: Any) -> str:
    from docker_images import busybox_image

    return busybox_image(docker_client)


def job_spec(
    engine: EngineProcess,
    command: str,
    *,
    cpu: float = 0.5,
    ram_gib: float = 0.25,
    disk_gib: float = 0.1,
    max_duration: int = 0,
    network: bool = False,
    image: str = "c2d-test-busybox",
    tag: str = "1",
    job_id: str | None = None,
) -> engine_pb2.JobSpec:
    job_id = job_id or f"t-{uuid.uuid4().hex[:12]}"
    return engine_pb2.JobSpec(
        job_id=job_id,
        workflow_id=f"wf-{job_id}",
        environment_id=ENVIRONMENT,
        container=engine_pb2.Container(image=image, tag=tag, command=command),
        resources=[
            common_pb2.GrantedResource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, amount=cpu),
            common_pb2.GrantedResource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, amount=ram_gib),
            common_pb2.GrantedResource(id="disk", type=common_pb2.RESOURCE_TYPE_DISK, amount=disk_gib),
        ],
        max_duration_seconds=max_duration,
        network=common_pb2.NetworkPolicy(allow_network=network),
    )


def run(engine: EngineProcess, spec: engine_pb2.JobSpec, timeout: float = 60) -> list[engine_pb2.JobEvent]:
    engine.start_job(spec)
    return engine.watch(spec.job_id, timeout=timeout).events


def statuses(events: list[engine_pb2.JobEvent]) -> list[str]:
    return [Status.Name(e.status).removeprefix("JOB_STATUS_") for e in events]


def log_of(engine: EngineProcess, job_id: str) -> bytes:
    return b"".join(data for _, data in engine.stream_logs(job_id))


def job_dir(engine: EngineProcess, job_id: str) -> Path:
    return Path(engine.state_dir) / "jobs" / job_id


def container_of(docker_client: Any, job_id: str, role: str = "algorithm") -> Any:
    import docker

    try:
        return docker_client.containers.get(containers.container_name(job_id, role))
    except docker.errors.NotFound:
        return None


class BridgePodService(FakePodService):
    """The test PodService, listening where containers reach it (the Docker bridge gateway)."""

    def __init__(self, job_id: str, pod_address: str, host: str) -> None:
        super().__init__(job_id, pod_address)
        self.host = host

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> BridgePodService:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pod_pb2_grpc.add_PodServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"{self.host}:0")
        self._server.start()
        return self


def pod_config(image: str) -> dict[str, Any]:
    return {**CONFIG, "pod_image": image, "pod_timeout_seconds": 60}


def pod_job(
    engine: EngineProcess, docker_client: Any, command: str
) -> tuple[engine_pb2.JobSpec, Stage, BridgePodService]:
    """A job with pods, and its started PodService providing one input (0/a.txt: "hello pods")."""
    from docker_images import bridge_gateway

    spec = job_spec(engine, command)
    stage = Stage(job_id=spec.job_id)
    service = BridgePodService(stage.job_id, stage.pod_address, bridge_gateway(docker_client)).start()
    service.provisioning.inputs.add(
        folder="0", files=[pod_pb2.FileSource(type="data", data=b"hello pods", name="a.txt")]
    )
    service.provisioning.algorithm.CopyFrom(pod_pb2.FileSource(type="data", data=b"#!/bin/sh\n"))
    spec.pod.CopyFrom(
        engine_pb2.PodAccess(
            node_peer_id=stage.node_address, node_http_api=service.target, private_key=stage.private_key
        )
    )
    return spec, stage, service


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def engines(loop: EventLoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineFactory]:
    factory = EngineFactory(docker_target(), loop, tmp_path_factory.mktemp("docker-engine"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def engine(engines: EngineFactory, busybox: str) -> EngineProcess:
    return engines.start()


# Jobs ----------------------------------------------------------------------------------------


def test_fingerprint_describes_the_daemon_and_the_environment(engine: EngineProcess) -> None:
    fingerprint = engine.fingerprint()
    assert fingerprint.health == common_pb2.ENGINE_HEALTH_HEALTHY, fingerprint.health_description
    caps = fingerprint.capabilities
    assert caps.container_isolation and caps.network_isolation and caps.log_streaming
    assert caps.disk_quota == ("loop-ext4" if os.geteuid() == 0 else "file-size-limit")
    (env,) = fingerprint.environments
    resources = {r.id: r for r in env.resources}
    assert (resources["cpu"].total, resources["ram"].total, resources["disk"].total) == (2, 2, 2)
    assert (resources["cpu"].min, resources["ram"].min) == (0.5, 0.25)
    assert env.network.allow_network and env.max_job_duration_seconds == 120


def test_every_environment_reports_the_daemons_machine_as_one_pool(
    loop: EventLoopThread, tmp_path: Path, docker_client: Any
) -> None:
    config = {**CONFIG, "environments": [{"id": "whole"}, {"id": "half", "cpu": 1, "ram_gib": 1}]}
    factory = EngineFactory(docker_target(config), loop, tmp_path)
    try:
        whole, half = factory.start().fingerprint().environments
    finally:
        factory.close()
    info = docker_client.info()
    assert whole.pool == half.pool and whole.pool.id == info["ID"]
    totals = {r.id: r.total for r in whole.pool.resources}
    assert totals["cpu"] == info["NCPU"]
    assert totals["ram"] == math.floor(info["MemTotal"] / GIB * 100) / 100
    assert totals["disk"] > 0
    # The environment left unsized is the whole machine; the pool's totals are the machine's too
    # (and its GPUs, if any, every one found, whether an environment offers them or not).
    assert {r.id: r.total for r in whole.resources if r.id != "gpu"} == {
        k: v for k, v in totals.items() if k != "gpu"
    }
    assert {r.id: r.total for r in half.resources}["cpu"] == 1


def test_job_finishes_with_its_outputs_and_an_unframed_log(engine: EngineProcess, docker_client: Any) -> None:
    spec = job_spec(engine, 'echo hello; echo oops >&2; echo result > "$C2D_DATA/outputs/r.txt"; id -u')
    events = run(engine, spec)
    assert statuses(events) == ["CONFIGURING_VOLUMES", "RUNNING", "FINISHED"], describe(events)
    running, last = events[1], events[-1]
    assert running.HasField("algorithm_started") and running.image_digest.startswith("sha256:")
    assert (
        last.exit_code == 0
        and last.HasField("algorithm_finished")
        and last.image_digest == running.image_digest
    )
    log = log_of(engine, spec.job_id)
    assert sorted(log.splitlines()) == [b"1000", b"hello", b"oops"], log  # no stream framing bytes
    assert (job_dir(engine, spec.job_id) / "data" / "outputs" / "r.txt").read_text() == "result\n"
    assert container_of(docker_client, spec.job_id) is None, "the job's containers are removed at its end"
    assert (job_dir(engine, spec.job_id) / "spec.json").stat().st_mode & 0o777 == 0o600


def test_failing_algorithm_reports_its_exit_code(engine: EngineProcess) -> None:
    events = run(engine, job_spec(engine, "echo failing >&2; exit 3"))
    assert statuses(events)[-1] == "ALGORITHM_FAILED" and events[-1].exit_code == 3
    assert "exited with code 3" in events[-1].message


def test_time_limit_stops_the_algorithm(engine: EngineProcess) -> None:
    started = time.monotonic()
    events = run(engine, job_spec(engine, "sleep 600", max_duration=2))
    assert statuses(events)[-1] == "TIMED_OUT" and events[-1].timed_out, describe(events)
    assert "time limit of 2 s" in events[-1].message
    assert time.monotonic() - started < 15


def test_stop_job(engine: EngineProcess) -> None:
    spec = job_spec(engine, "trap '' TERM; sleep 600")
    engine.start_job(spec)
    before = engine.watch_until_running(spec.job_id)
    started = time.monotonic()
    engine.stop_job(spec.job_id, grace_seconds=1)
    after = engine.watch(spec.job_id, after=before.last_sequence, timeout=20).events
    assert statuses(after) == ["STOPPED"] and after[-1].stopped and "conformance" in after[-1].message
    assert time.monotonic() - started < 10


def test_limits_are_applied(engine: EngineProcess) -> None:
    """The container's own cgroup shows the granted memory, CPU and pids; root is read-only, the user not root."""
    script = """
cd /sys/fs/cgroup
if [ -f memory.max ]; then
  echo mem=$(cat memory.max); set -- $(cat cpu.max); echo cpu=$1/$2; echo pids=$(cat pids.max)
else
  echo mem=$(cat memory/memory.limit_in_bytes)
  echo cpu=$(cat cpu/cpu.cfs_quota_us)/$(cat cpu/cpu.cfs_period_us)
  echo pids=$(cat pids/pids.max)
fi
echo disk=$(df -k /data/outputs | tail -1 | awk '{print $2}')
echo tmp=$(df -k /tmp | tail -1 | awk '{print $2}')
echo uid=$(id -u)
touch /probe 2>/dev/null && echo root=rw || echo root=ro
"""
    spec = job_spec(engine, script, cpu=0.5, ram_gib=0.25, disk_gib=0.1)
    events = run(engine, spec)
    assert statuses(events)[-1] == "FINISHED", describe(events)
    found = dict(line.split("=", 1) for line in log_of(engine, spec.job_id).decode().splitlines())
    assert int(found["mem"]) == int(0.25 * GIB)
    quota, period = (int(x) for x in found["cpu"].split("/"))
    assert quota / period == pytest.approx(0.5)
    assert int(found["pids"]) == PIDS_LIMIT
    assert int(found["tmp"]) * 1024 == 64 << 20  # a quarter of the memory
    if os.geteuid() == 0:  # loop-ext4: the filesystem is the grant, plus ext4's own overhead
        assert 0.1 * GIB <= int(found["disk"]) * 1024 <= 0.2 * GIB, found
    assert (found["uid"], found["root"]) == ("1000", "ro")


def test_pull_failure_is_reported(engine: EngineProcess) -> None:
    events = run(engine, job_spec(engine, "true", image="c2d-no-such-image", tag="1"))
    assert statuses(events) == ["PULLING_IMAGE", "PULL_IMAGE_FAILED"], describe(events)
    assert "c2d-no-such-image:1" in events[-1].message and "could not be pulled" in events[-1].message


def test_container_creation_failure_is_reported(engine: EngineProcess, docker_client: Any) -> None:
    """An image without /bin/sh cannot run the command: CONTAINER_CREATION_FAILED, saying so."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"none\n"))
    docker_client.api.import_image_from_data(buffer.getvalue(), repository="c2d-test-noshell", tag="1")
    events = run(engine, job_spec(engine, "true", image="c2d-test-noshell", tag="1"))
    assert statuses(events)[-1] == "CONTAINER_CREATION_FAILED", describe(events)
    assert "/bin/sh" in events[-1].message


def test_invalid_specs_are_refused(engine: EngineProcess) -> None:
    for spec, words in (
        (job_spec(engine, "true", image="c2d-test-busybox", tag=""), "needs a tag or a digest"),
        (job_spec(engine, "true", max_duration=10_000), "above environment"),
        (job_spec(engine, "true", cpu=3), "more than environment"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            engine.stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in raised.value.details()


def test_logs_stream_while_the_algorithm_runs(engine: EngineProcess) -> None:
    spec = job_spec(engine, "for i in 1 2 3; do echo line $i; sleep 0.3; done")
    engine.start_job(spec)
    engine.watch_until_running(spec.job_id)
    chunks = engine.stream_logs(spec.job_id, follow=True)
    assert b"".join(d for _, d in chunks) == b"line 1\nline 2\nline 3\n"
    assert [offset for offset, _ in chunks] == [
        sum(len(d) for _, d in chunks[:i]) for i in range(len(chunks))
    ]
    engine.watch(spec.job_id)


def test_list_jobs_lists_orphans_and_destroy_removes_them(
    engine: EngineProcess, docker_client: Any, busybox: str
) -> None:
    """A container labelled for this node with no job behind it is listed, so the node can destroy it."""
    orphan = f"orphan-{uuid.uuid4().hex[:8]}"
    labels = {
        "c2d.host": engine.host_id,
        "c2d.job": orphan,
        "c2d.workflow": "wf-orphan",
        "c2d.role": "algorithm",
    }
    docker_client.containers.create(
        busybox, ["sleep", "60"], name=containers.container_name(orphan, "algorithm"), labels=labels
    )
    spec = job_spec(engine, "true")
    run(engine, spec)
    listed = {job.job_id: job for job in engine.list_jobs()}
    assert listed[spec.job_id].status == Status.JOB_STATUS_FINISHED and listed[spec.job_id].terminal
    assert listed[orphan].workflow_id == "wf-orphan" and listed[orphan].status == Status.JOB_STATUS_LOST
    engine.destroy_job(orphan)
    engine.destroy_job(spec.job_id)
    assert container_of(docker_client, orphan) is None
    assert not job_dir(engine, spec.job_id).exists()
    assert not {orphan, spec.job_id} & {job.job_id for job in engine.list_jobs()}


def test_destroy_unmounts_and_removes_everything(engine: EngineProcess, docker_client: Any) -> None:
    spec = job_spec(engine, "sleep 600")
    engine.start_job(spec)
    engine.watch_until_running(spec.job_id)
    folder = job_dir(engine, spec.job_id)
    assert os.path.ismount(folder / "data") == (os.geteuid() == 0)
    engine.destroy_job(spec.job_id)
    assert not folder.exists() and container_of(docker_client, spec.job_id) is None
    if os.geteuid() == 0:
        loops = subprocess.run(["losetup", "--list", "--noheadings"], capture_output=True, text=True).stdout
        assert str(folder) not in loops


def test_job_survives_a_plugin_sigkill(engines: EngineFactory, docker_client: Any, busybox: str) -> None:
    """SIGKILL mid-run: the container runs on, a new plugin re-attaches and the job finishes."""
    first = engines.start()
    spec = job_spec(first, "sleep 3; echo done")
    handle = first.start_job(spec)
    before = first.watch_until_running(spec.job_id)
    first.kill()
    container = container_of(docker_client, spec.job_id)
    assert container is not None and container.status == "running", "the algorithm outlives its plugin"
    second = engines.start(state_dir=first.state_dir, host_id=first.host_id)
    second.jobs.add(spec.job_id)
    recovered = second.recover_job(handle)
    assert recovered.last_event.status == Status.JOB_STATUS_RUNNING
    after = second.watch(spec.job_id, after=before.last_sequence, timeout=30).events
    assert statuses(after) == ["FINISHED"], describe(after)
    assert after[-1].algorithm_started == before.events[-1].algorithm_started
    assert log_of(second, spec.job_id) == b"done\n"
    engines.close([first, second])


def test_plugin_sigkill_during_provisioning_carries_the_job_on(
    loop: EventLoopThread, tmp_path: Path, docker_client: Any, busybox: str
) -> None:
    """pod-configuration runs on while the plugin is dead; the new plugin re-attaches and runs the rest."""
    from docker_images import pod_image

    factory = EngineFactory(docker_target(pod_config(pod_image(docker_client))), loop, tmp_path)
    first = factory.start()
    spec, _, service = pod_job(
        first, docker_client, 'cat "$C2D_DATA/inputs/0/a.txt" > "$C2D_DATA/outputs/copy.txt"'
    )
    service.hold_provisioning.set()
    try:
        handle = first.start_job(spec)
        before = first.watch(spec.job_id, until=lambda e: e.status == Status.JOB_STATUS_PROVISIONING)
        first.kill()
        second = factory.start(state_dir=first.state_dir, host_id=first.host_id)
        second.jobs.add(spec.job_id)
        assert second.recover_job(handle).last_event.status == Status.JOB_STATUS_PROVISIONING
        service.hold_provisioning.clear()
        after = second.watch(spec.job_id, after=before.last_sequence, timeout=60).events
    finally:
        service.stop()
        factory.close()
    assert statuses(after) == ["RUNNING", "PUBLISHING", "FINISHED"], describe(after)
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "copy.txt") == b"hello pods"
    assert service.calls["GetProvisioning"] == 1, "pod-configuration ran once"


def test_without_a_daemon_the_engine_is_undetected(loop: EventLoopThread, tmp_path: Path) -> None:
    config = {**CONFIG, "docker_host": "unix:///nonexistent/docker.sock"}
    factory = EngineFactory(docker_target(config), loop, tmp_path)
    try:
        engine = factory.start()
        fingerprint = engine.fingerprint()
        assert fingerprint.health == common_pb2.ENGINE_HEALTH_UNDETECTED
        assert fingerprint.health_description.startswith(
            "no Docker engine answers at unix:///nonexistent/docker.sock"
        )
        with pytest.raises(grpc.RpcError) as raised:
            engine.stub.StartJob(engine_pb2.StartJobRequest(spec=job_spec(engine, "true")), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        factory.close()


def test_a_missing_pod_image_is_named_with_how_to_build_it(loop: EventLoopThread, tmp_path: Path) -> None:
    config = {**CONFIG, "pod_image": "c2d-pod:not-built-here"}
    factory = EngineFactory(docker_target(config), loop, tmp_path)
    try:
        fingerprint = factory.start().fingerprint()
        assert fingerprint.health == common_pb2.ENGINE_HEALTH_HEALTHY  # pod-less jobs still run
        assert "pod image c2d-pod:not-built-here is missing" in fingerprint.health_description
        assert "python -m pods.image build" in fingerprint.health_description
    finally:
        factory.close()


class SocketProxy:
    """A Unix socket in front of the Docker daemon's: stopping it is the daemon going away, for the plugin.

    ``waiting`` is set once a client asked Docker to wait for a container, so a test cuts the
    daemon off while the job's driver is surely blocked in that call.
    """

    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock") -> None:
        self.path = path
        self.upstream = upstream
        self.waiting = threading.Event()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> SocketProxy:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self.path.unlink(missing_ok=True)
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile: this connection dies with it
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if requests and b"/wait" in data:
                    self.waiting.set()
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxied(
    loop: EventLoopThread, tmp_path: Path, busybox: str
) -> Iterator[tuple[EngineProcess, SocketProxy]]:
    """A plugin talking to the daemon through a proxy the test can cut, with a short wait for the daemon."""
    proxy = SocketProxy(Path(tempfile.mkdtemp(prefix="c2d-proxy-")) / "docker.sock").start()
    config = {**CONFIG, "docker_host": f"unix://{proxy.path}", "daemon_wait_seconds": 4}
    factory = EngineFactory(docker_target(config), loop, tmp_path)
    try:
        yield factory.start(), proxy
    finally:
        proxy.start()
        factory.close()
        proxy.stop()


def healths(engine: EngineProcess, seen: list[int], stop: threading.Event) -> None:
    """Collects the health of every fingerprint sent, until ``stop`` is set."""
    call = engine.stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest(), timeout=60)
    threading.Thread(target=lambda: (stop.wait(), call.cancel()), daemon=True).start()
    with contextlib.suppress(grpc.RpcError):
        for reply in call:
            seen.append(reply.fingerprint.health)


def test_a_daemon_outage_is_ridden_out(
    proxied: tuple[EngineProcess, SocketProxy], docker_client: Any
) -> None:
    """The daemon goes away while the algorithm runs and comes back: the job goes on, health said so meanwhile."""
    engine, proxy = proxied
    seen: list[int] = []
    stop = threading.Event()
    threading.Thread(target=healths, args=(engine, seen, stop), daemon=True).start()
    spec = job_spec(engine, "sleep 5; echo done")
    engine.start_job(spec)
    assert proxy.waiting.wait(20), "the driver never waited for its container"
    proxy.stop()
    time.sleep(3)
    proxy.start()
    events = engine.watch(spec.job_id, timeout=30).events
    stop.set()
    assert statuses(events)[-1] == "FINISHED", describe(events)
    assert log_of(engine, spec.job_id) == b"done\n"
    healthy, unhealthy = common_pb2.ENGINE_HEALTH_HEALTHY, common_pb2.ENGINE_HEALTH_UNHEALTHY
    assert seen[0] == healthy and unhealthy in seen and seen[-1] == healthy, seen


def test_a_daemon_restart_that_ends_the_algorithm_is_reported(
    proxied: tuple[EngineProcess, SocketProxy], docker_client: Any
) -> None:
    engine, proxy = proxied
    spec = job_spec(engine, "sleep 600")
    engine.start_job(spec)
    assert proxy.waiting.wait(20), "the driver never waited for its container"
    proxy.stop()
    container_of(docker_client, spec.job_id).kill()  # what a daemon restart does to its containers
    proxy.start()
    events = engine.watch(spec.job_id, timeout=30).events
    assert statuses(events)[-1] == "LOST" and "Docker engine restarted" in events[-1].message, describe(
        events
    )


def test_a_daemon_that_stays_away_ends_the_job(
    proxied: tuple[EngineProcess, SocketProxy], docker_client: Any
) -> None:
    engine, proxy = proxied
    spec = job_spec(engine, "sleep 600")
    engine.start_job(spec)
    assert proxy.waiting.wait(20), "the driver never waited for its container"
    proxy.stop()
    events = engine.watch(spec.job_id, timeout=30).events
    assert statuses(events)[-1] == "LOST" and "stopped answering" in events[-1].message, describe(events)
    proxy.start()
    engine.destroy_job(spec.job_id)
    assert container_of(docker_client, spec.job_id) is None


@pytest.mark.docker
def test_docker_passes_the_conformance_suite(docker_client: Any, busybox: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "C2D_CONFORMANCE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "c2d.conformance", "docker", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0 and " passed" in result.stdout, f"{result.stdout}\n{result.stderr}"


# Unit tests: no Docker needed ----------------------------------------------------------------


def environment(**overrides: Any) -> engine_config.EnvironmentConfig:
    values: dict[str, Any] = {
        "id": "gpu-env",
        "description": "",
        "cpu": 8,
        "ram_gib": 32,
        "disk_gib": 100,
        "min_cpu": 1,
        "min_ram_gib": 1,
        "min_disk_gib": 1,
        "gpus": (
            gpus.Gpu(id="GPU-aaa", index="0"),
            gpus.Gpu(id="GPU-bbb", index="1"),
            gpus.Gpu(id="GPU-ccc", index="2"),
        ),
        "cpus": tuple(range(8)),
    }
    return engine_config.EnvironmentConfig(**{**values, **overrides})


def record(grant: Grant, **overrides: Any) -> dict[str, Any]:
    settings = engine_config.DockerSettings(pids_limit=77)
    base = {
        "job_id": "job-1",
        "workflow_id": "wf-1",
        "host_id": "node-1",
        "command": "python /data/transformations/algorithm",
        "env": {"A": "1"},
        "grant": grant.to_json(),
        "cpuset": None,
        "network": False,
        "labels": {"c2d.stage": "0", "c2d.job": "spoofed"},
        "limits": jobspec.limits_of(settings, grant, "loop-ext4"),
    }
    return {**base, **overrides}


PATHS = containers.HostPaths(data=Path("/state/jobs/job-1/data"), scratch=Path("/state/jobs/job-1/scratch"))


def test_gpu_grant_becomes_a_device_request_for_exactly_those_devices() -> None:
    env = environment()
    granted = [
        common_pb2.GrantedResource(
            id="gpu", type=common_pb2.RESOURCE_TYPE_GPU, amount=2, device_ids=["GPU-ccc", "GPU-aaa"]
        ),
        common_pb2.GrantedResource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, amount=4),
    ]
    grant = grant_from(granted, env)
    kwargs = containers.algorithm_kwargs(record(grant), PATHS, "sha256:img")
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["GPU-ccc", "GPU-aaa"]
    assert request["Capabilities"] == [["gpu"]] and request["Count"] == 0 and not request["Driver"]
    no_gpu = containers.algorithm_kwargs(record(grant_from(granted[1:], env)), PATHS, "sha256:img")
    assert "device_requests" not in no_gpu


@pytest.mark.parametrize(
    ("amount", "ids", "words"),
    [
        (2, ["GPU-aaa"], "one device per GPU"),
        (1, ["GPU-zzz"], "has no GPU"),
        (2, ["GPU-aaa", "GPU-aaa"], "twice"),
    ],
)
def test_bad_gpu_grants_are_refused(amount: float, ids: list[str], words: str) -> None:
    granted = common_pb2.GrantedResource(
        id="gpu", type=common_pb2.RESOURCE_TYPE_GPU, amount=amount, device_ids=ids
    )
    with pytest.raises(EngineError, match=words):
        grant_from([granted], environment())


def test_algorithm_container_is_locked_down() -> None:
    grant = Grant(cpu=1.5, ram_gib=2, disk_gib=1)
    kwargs = containers.algorithm_kwargs(record(grant, cpuset=[2, 3]), PATHS, "sha256:img")
    assert kwargs["image"] == "sha256:img" and kwargs["name"] == "c2d-job-1-algorithm"
    assert kwargs["entrypoint"] == ["/bin/sh", "-c"] and kwargs["command"] == [
        "python /data/transformations/algorithm"
    ]
    assert kwargs["user"] == "1000:1000" and kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"] and kwargs["read_only"] is True
    assert kwargs["network_mode"] == "none" and kwargs["pids_limit"] == 77
    assert kwargs["nano_cpus"] == 1_500_000_000 and kwargs["cpuset_cpus"] == "2,3"
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 2 * GIB
    assert "size=536870912" in kwargs["tmpfs"]["/tmp"]
    assert kwargs["environment"]["C2D_DATA"] == "/data" and kwargs["environment"]["A"] == "1"
    assert kwargs["labels"] == {
        "c2d.stage": "0",
        "c2d.host": "node-1",
        "c2d.workflow": "wf-1",
        "c2d.job": "job-1",
        "c2d.role": "algorithm",
    }
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kwargs["mounts"]}
    assert mounts == {
        "/data/inputs": ("/state/jobs/job-1/data/inputs", True),
        "/data/transformations": ("/state/jobs/job-1/data/transformations", True),
        "/data/outputs": ("/state/jobs/job-1/data/outputs", False),
        "/data/logs": ("/state/jobs/job-1/data/logs", False),
    }
    assert "ulimits" not in kwargs  # the loop filesystem is the quota
    plain = record(grant)
    plain["limits"] = {**plain["limits"], "disk_quota": "none"}
    plain["network"] = True
    loose = containers.algorithm_kwargs(plain, PATHS, "sha256:img")
    assert loose["network_mode"] == "bridge"
    assert [(u["Name"], u["Soft"], u["Hard"]) for u in loose["ulimits"]] == [("fsize", GIB, GIB)]


def test_container_names_are_deterministic_and_docker_safe() -> None:
    assert containers.container_name("abc-1", "publishing") == "c2d-abc-1-publishing"
    odd = containers.container_name("a:b@c", "algorithm")
    assert odd.startswith("c2d-a_b_c-") and odd.endswith("-algorithm")
    assert odd != containers.container_name("a_b_c", "algorithm")


def test_cores_are_pinned_free_ones_first() -> None:
    from collections import Counter

    assert choose_cores([0, 1, 2, 3], 2, Counter({0: 1, 1: 1})) == [2, 3]
    assert choose_cores([0, 1, 2, 3], 0.5, Counter({0: 1})) == [1]
    assert choose_cores([0, 1], 4, Counter()) == [0, 1]


def test_nvidia_smi_output_is_parsed() -> None:
    lines = [
        "0, GPU-1f2e, NVIDIA H100 80GB HBM3, 81559",
        "1, GPU-9a9a, NVIDIA A10, with a comma, 23028",
        "garbage",
        "",
    ]
    found = gpus.parse_nvidia_smi(lines)
    assert [(g.id, g.index, g.model) for g in found] == [
        ("GPU-1f2e", "0", "NVIDIA H100 80GB HBM3"),
        ("GPU-9a9a", "1", "NVIDIA A10, with a comma"),
    ]
    assert found[0].memory_gib == pytest.approx(79.65, abs=0.01) and found[0].vendor == "nvidia"


def test_nvml_devices_are_read() -> None:
    calls: list[str] = []
    fake = SimpleNamespace(
        nvmlInit=lambda: calls.append("init"),
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}".encode() if h == 0 else f"GPU-{h}",
        nvmlDeviceGetName=lambda h: "Tesla T4",
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=16 * GIB),
    )
    assert gpus.from_nvml(fake) == (
        gpus.Gpu(id="GPU-0", index="0", model="Tesla T4", memory_gib=16.0),
        gpus.Gpu(id="GPU-1", index="1", model="Tesla T4", memory_gib=16.0),
    )
    assert calls == ["init", "shutdown"]


def test_config_defaults_and_mistakes() -> None:
    machine = engine_config.MachineSize(
        cpu=4, ram_gib=16, disk_gib=50, gpus=(gpus.Gpu(id="GPU-x", index="0"),)
    )
    (default,) = engine_config.resolve(engine_config.parse_settings({}), machine)
    assert (default.id, default.cpu, default.ram_gib, default.disk_gib) == ("docker-local", 4, 16, 50)
    assert [g.id for g in default.gpus] == ["GPU-x"] and not default.allow_network
    settings = engine_config.parse_settings({"environments": [{"id": "e", "cpu": 2, "gpus": ["0"]}]})
    (env,) = engine_config.resolve(settings, machine)
    assert env.cpu == 2 and env.ram_gib == 16 and [g.id for g in env.gpus] == ["GPU-x"]
    for bad, words in (
        ({"disk_quota": "xfs"}, "disk_quota must be one of"),
        ({"environments": [{"id": "e", "cpu": -1}]}, "cpu must be a positive number"),
        ({"environments": [{"id": "e", "colour": "red"}]}, "unknown keys ['colour']"),
        ({"environments": [{"id": "e"}, {"id": "e"}]}, "appears twice"),
        ({"registry_auth": {"username": "u", "password": 3}}, "needs a username and a password"),
    ):
        with pytest.raises(EngineError) as raised:
            engine_config.parse_settings(bad)
        assert words in raised.value.message
    auth = engine_config.parse_settings(
        {"registry_auth": {"username": "u", "password": "secret"}}
    ).registry_auth
    assert (
        auth is not None
        and "secret" not in repr(auth)
        and auth.as_docker() == {"username": "u", "password": "secret"}
    )


def test_images_are_named_by_tag_or_digest() -> None:
    digest = "sha256:" + "a" * 64
    assert jobspec.image_of(engine_pb2.Container(image="busybox", tag="1")).reference == "busybox:1"
    assert (
        jobspec.image_of(engine_pb2.Container(image="busybox", tag="1", digest=digest)).reference
        == f"busybox@{digest}"
    )
    assert (
        jobspec.image_of(engine_pb2.Container(image="registry:5000/a/b:2")).reference == "registry:5000/a/b:2"
    )
    with pytest.raises(EngineError, match="needs a tag or a digest"):
        jobspec.image_of(engine_pb2.Container(image="registry:5000/a/b"))
    assert images.pinned_digest({"Id": "sha256:id", "RepoDigests": []}, "x") == "sha256:id"
    assert images.pinned_digest({"Id": "i", "RepoDigests": ["y@sha256:1", "x@sha256:2"]}, "x") == "x@sha256:2"
    # Pushed to another registry too: that registry's digest is not this job's image.
    assert (
        images.pinned_digest({"Id": "sha256:id", "RepoDigests": ["127.0.0.1:5000/y@sha256:1"]}, "x")
        == "sha256:id"
    )


def test_pods_must_be_able_to_reach_the_node() -> None:
    spec = engine_pb2.JobSpec(pod=engine_pb2.PodAccess(node_http_api="127.0.0.1:8471", private_key="0x01"))
    with pytest.raises(EngineError, match="loopback address"):
        jobspec.pod_of(spec, engine_config.DockerSettings(), "c2d-pod:1")
    spec.pod.node_http_api = "172.17.0.1:8471"
    pod = jobspec.pod_of(spec, engine_config.DockerSettings(), "c2d-pod:1")
    assert pod is not None and pod["image"]["reference"] == "c2d-pod:1"
    host_network = engine_config.DockerSettings(pod_network="host")
    spec.pod.node_http_api = "localhost:8471"
    assert jobspec.pod_of(spec, host_network, "c2d-pod:1") is not None


def test_pull_progress_sums_layers() -> None:
    progress = images.PullProgress()
    for message in (
        {"status": "Pulling from library/x", "id": "1"},
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 1_000_000, "total": 4_000_000}},
        {"status": "Pull complete", "id": "b"},
    ):
        progress.feed(message)
    assert progress.summary() == "1 of 2 layers, 1.0 of 4.0 MB"
    progress.feed({"error": "boom", "errorDetail": {"message": "manifest unknown"}})
    assert progress.error == "manifest unknown"


@pytest.mark.parametrize(
    ("ending", "status"),
    [
        (outcome.Ending(0), "FINISHED"),
        (outcome.Ending(2), "ALGORITHM_FAILED"),
        (outcome.Ending(137, oom_killed=True), "OUT_OF_MEMORY"),
        (outcome.Ending(0, oom_killed=True), "FINISHED"),
        (outcome.Ending(1, disk_full=True), "DISK_QUOTA_EXCEEDED"),
        (outcome.Ending(153, file_size_limited=True), "DISK_QUOTA_EXCEEDED"),
        (outcome.Ending(137, oom_killed=True, reason=outcome.TIMED_OUT), "TIMED_OUT"),
        (outcome.Ending(143, reason=outcome.STOPPED, disk_full=True), "STOPPED"),
        (outcome.Ending(143, reason=outcome.DAEMON_LOST), "LOST"),
    ],
)
def test_outcomes(ending: outcome.Ending, status: str) -> None:
    result = outcome.classify(ending, {"ram_gib": 1, "disk_gib": 2}, 60, "owner asked")
    assert result["status"] == status and result["exit_code"] == ending.exit_code and result["message"]
