"""Hostile algorithms on the docker engine: each is contained, ends with the right status, and the node is fine.

The hostile jobs run at once on one plugin process (a module fixture starts
them all, then waits for each), so the whole file costs about as long as its
slowest job: a memory hog, a fork bomb, a disk filler, a sleeper past its
time limit, network egress attempts with and without network, writes outside
``/data/outputs``. The last test runs the pods (pod image, real PodService on
the Docker bridge) to check that a symlink planted in the outputs is not
followed when publishing.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_docker_engine import (
    PIDS_LIMIT,
    container_of,
    docker_target,
    job_dir,
    job_spec,
    log_of,
    pod_config,
    pod_job,
    statuses,
)

from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, describe
from c2d.engine.v1 import engine_pb2
from podservice import Kind

pytestmark = pytest.mark.timeout(180)

BLOCKED = "blocked"
REACHED = "reached"
EGRESS = (
    "timeout 3 wget -q -O- http://{host}:{port}/ && echo wget-" + REACHED + " || echo wget-" + BLOCKED + "; "
    "nc -w 2 {host} {port} </dev/null && echo nc-" + REACHED + " || echo nc-" + BLOCKED
)
WRITE_OUTSIDE = """
fail=0
for f in /etc/evil /evil /data/evil /data/inputs/evil /data/transformations/evil /usr/bin/evil; do
  if touch "$f" 2>/dev/null; then echo "wrote $f"; fail=1; fi
done
touch /data/outputs/ok /data/logs/ok /tmp/ok || fail=1
if chown 0 /data/outputs/ok 2>/dev/null; then echo "chown worked"; fail=1; fi
exit $fail
"""


@dataclass
class Hostile:
    """One hostile job: what it runs and how it ended."""

    command: str
    options: dict[str, Any]
    events: list[engine_pb2.JobEvent] | None = None
    inspected: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def engine(
    loop: EventLoopThread, tmp_path_factory: pytest.TempPathFactory, docker_client: Any
) -> Iterator[EngineProcess]:
    from docker_images import busybox_image

    busybox_image(docker_client)
    factory = EngineFactory(docker_target(), loop, tmp_path_factory.mktemp("docker-hostile"))
    yield factory.start()
    factory.close()


@pytest.fixture(scope="module")
def web(docker_client: Any) -> Iterator[tuple[str, int]]:
    """An HTTP server where containers on the bridge reach it: proves the blocked job was blocked by isolation."""
    from docker_images import bridge_gateway

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((bridge_gateway(docker_client), 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def hostile(engine: EngineProcess, web: tuple[str, int], docker_client: Any) -> dict[str, Hostile]:
    """Every hostile job started at once, each watched to its end."""
    host, port = web
    jobs = {
        "memory_hog": Hostile("tail /dev/zero", {"ram_gib": 0.25}),
        # The bomb goes off in a subshell: the job's own shell forks once, before the pids limit
        # is reached, then sleeps until the time limit (a shell whose fork fails exits with 2).
        "fork_bomb": Hostile("(bomb() { bomb | bomb & }; bomb); exec sleep 600", {"max_duration": 4}),
        "disk_filler": Hostile(
            'dd if=/dev/zero of="$C2D_DATA/outputs/fill" bs=1M; exit 1', {"disk_gib": 0.05}
        ),
        "sleeper": Hostile("sleep 2147483647", {"max_duration": 2}),
        "egress_blocked": Hostile(EGRESS.format(host=host, port=port), {}),
        "egress_allowed": Hostile(EGRESS.format(host=host, port=port), {"network": True}),
        "write_outside": Hostile(WRITE_OUTSIDE, {}),
    }
    specs = {name: job_spec(engine, job.command, **job.options) for name, job in jobs.items()}
    for spec in specs.values():
        engine.start_job(spec)
    engine.watch_until_running(specs["fork_bomb"].job_id)
    bomb = container_of(docker_client, specs["fork_bomb"].job_id)
    jobs["fork_bomb"].inspected = bomb.attrs if bomb is not None else None
    with futures.ThreadPoolExecutor(len(specs)) as pool:
        watched = {name: pool.submit(engine.watch, spec.job_id, timeout=60) for name, spec in specs.items()}
        for name, future in watched.items():
            jobs[name].events = future.result().events
    for name, job in jobs.items():
        job.options["job_id"] = specs[name].job_id
    return jobs


def ended(job: Hostile) -> engine_pb2.JobEvent:
    assert job.events, "no events"
    return job.events[-1]


def test_memory_hog_is_out_of_memory(hostile: dict[str, Hostile]) -> None:
    last = ended(hostile["memory_hog"])
    assert statuses(hostile["memory_hog"].events)[-1] == "OUT_OF_MEMORY" and last.oom_killed, describe(
        hostile["memory_hog"].events
    )
    assert "0.25 GiB of memory" in last.message


def test_fork_bomb_is_contained_by_the_pids_limit(hostile: dict[str, Hostile], engine: EngineProcess) -> None:
    job = hostile["fork_bomb"]
    assert statuses(job.events)[-1] == "TIMED_OUT", describe(job.events)
    assert job.inspected is not None and job.inspected["HostConfig"]["PidsLimit"] == PIDS_LIMIT
    assert subprocess.run(["true"], check=False).returncode == 0, "the node can still start processes"
    after = job_spec(engine, "echo still fine")
    engine.start_job(after)
    events = engine.watch(after.job_id).events
    assert statuses(events)[-1] == "FINISHED" and log_of(engine, after.job_id) == b"still fine\n"


def test_disk_filler_hits_its_quota(hostile: dict[str, Hostile], engine: EngineProcess) -> None:
    job = hostile["disk_filler"]
    last = ended(job)
    if os.geteuid() != 0:
        pytest.skip("loop-mounted ext4 needs root; without it each file is capped instead")
    assert statuses(job.events)[-1] == "DISK_QUOTA_EXCEEDED" and last.disk_quota_exceeded, describe(
        job.events
    )
    assert "filled its disk quota of 0.05 GiB" in last.message
    assert b"No space left on device" in log_of(engine, job.options["job_id"])
    image = job_dir(engine, job.options["job_id"]) / "disk.img"
    assert image.stat().st_blocks * 512 <= image.stat().st_size, "the job's disk never outgrows its file"


def test_sleeper_is_timed_out(hostile: dict[str, Hostile]) -> None:
    job = hostile["sleeper"]
    assert statuses(job.events)[-1] == "TIMED_OUT" and ended(job).timed_out, describe(job.events)


def test_network_egress_fails_without_network(hostile: dict[str, Hostile], engine: EngineProcess) -> None:
    blocked = log_of(engine, hostile["egress_blocked"].options["job_id"]).decode()
    allowed = log_of(engine, hostile["egress_allowed"].options["job_id"]).decode()
    assert f"wget-{BLOCKED}" in blocked and f"nc-{BLOCKED}" in blocked and REACHED not in blocked, blocked
    assert f"wget-{REACHED}" in allowed, f"with network the same server is reachable: {allowed}"


def test_writes_outside_outputs_fail(hostile: dict[str, Hostile], engine: EngineProcess) -> None:
    job = hostile["write_outside"]
    assert statuses(job.events)[-1] == "FINISHED", log_of(engine, job.options["job_id"])
    outputs = job_dir(engine, job.options["job_id"]) / "data" / "outputs"
    assert (outputs / "ok").stat().st_uid == 1000


# With pods: a symlink in the outputs --------------------------------------------------------


@pytest.fixture(scope="module")
def pod_engine(
    loop: EventLoopThread, tmp_path_factory: pytest.TempPathFactory, docker_client: Any, engine: EngineProcess
) -> Iterator[EngineProcess]:
    from docker_images import pod_image

    factory = EngineFactory(
        docker_target(pod_config(pod_image(docker_client))), loop, tmp_path_factory.mktemp("docker-pods")
    )
    yield factory.start()
    factory.close()


def test_symlink_in_outputs_is_not_followed_when_publishing(
    pod_engine: EngineProcess, docker_client: Any
) -> None:
    command = (
        'cat "$C2D_DATA/inputs/0/a.txt"; ln -s /etc/passwd "$C2D_DATA/outputs/passwd"; '
        'ln -s / "$C2D_DATA/outputs/root"; echo fine > "$C2D_DATA/outputs/real.txt"'
    )
    spec, stage, service = pod_job(pod_engine, docker_client, command)
    try:
        pod_engine.start_job(spec)
        events = pod_engine.watch(spec.job_id, timeout=90).events
    finally:
        service.stop()
    assert statuses(events) == ["CONFIGURING_VOLUMES", "PROVISIONING", "RUNNING", "PUBLISHING", "FINISHED"], (
        describe(events),
        (job_dir(pod_engine, spec.job_id) / "pods.log").read_text(errors="replace")[-3000:],
    )
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "real.txt") == b"fine\n"
    uploaded = b"".join(bytes(stored.data) for stored in service.uploads.values())
    assert b"root:x:0:0" not in uploaded, "the symlink to /etc/passwd was followed"
    assert b"hello pods" in (service.upload(Kind.UPLOAD_KIND_ALGORITHM_LOG, "algorithm.log") or b"")
    key = stage.private_key.removeprefix("0x")
    assert key not in pod_engine.plugin.stderr_text()
    assert container_of(docker_client, spec.job_id, "publishing") is None
    assert Path(job_dir(pod_engine, spec.job_id) / "spec.json").stat().st_mode & 0o777 == 0o600
