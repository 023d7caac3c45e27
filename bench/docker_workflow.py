"""One trivial stage on the Docker engine, through the node, next to the same three containers run bare.

Starts its own ``python -m host`` (in a temporary data dir, JSON log in ``node.log``
there) with the Docker engine (environment ``docker-local``, the PodService on the
Docker bridge), then, one after another and interleaved:

* node: a free one-stage workflow whose algorithm is ``echo x > /data/outputs/o`` on
  a busybox image, timed from just before ``FreeStartCompute`` to the stage's
  recorded ``finished`` time (node clock, same machine); the time at which a
  status poll every ``--poll`` seconds first saw it terminal is shown too;
* bare: the same three containers (configuration, algorithm, publishing) with the
  ``docker`` package, each created, started, waited for and removed in turn, with
  the engine's container settings (user, no capabilities, read-only root, tmpfs,
  init, limits, networks, bind mounts of a temporary folder at ``/data``). The pod
  containers run ``python3 -c "import pods.configuration, pods.publishing"`` (the
  least a pod pays: its imports; without a node there is nothing to fetch or
  upload); the algorithm runs the same command as the node's stage.

Figures: the median of ``--runs`` (default 5) of each, after ``--warmup`` (default 1)
of each that is not counted, their ratio node / bare, and whether it meets the
goal of at most 1.10x (issue 11). To find where the node's time goes: the median time in each
status of the stage's history (queued, configuring volumes, provisioning, running,
publishing) and, from Docker's own events, when each container was created,
started and exited, beside the same for the bare containers. The exit status is 0
whether or not the goal is met.

    python bench/docker_workflow.py [--runs N] [--warmup W] [--poll S]
                                    [--disk-quota auto|none|loop-ext4] [--json] [--keep]

About 30 s on two cores with the defaults once the images exist (the pod image is
built on first use, about a minute cold). Needs a Docker engine, and a static
busybox on the host (``apt-get install busybox-static``) for the algorithm's image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import grpc
from docker.types import LogConfig, Mount, Ulimit

import pods.image
from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc

ENV_ID = "docker-local"
ALGORITHM = "echo x > /data/outputs/o"
GOAL_RATIO = 1.10
BUSYBOX_IMAGE = "c2d-test-busybox:1"  # the image tests/docker_images.py builds: shared, reused when present
POD_IMPORTS = "import pods.configuration, pods.publishing"
ROLES = ("configuration", "algorithm", "publishing")
BENCH_LABEL = (
    "c2d.bench.role"  # the bare containers (not the engine's labels: no node may take them for its own)
)
S = common_pb2.JobStatus

# The engine's container settings (plugins/docker_engine: config.py defaults, jobspec.py, containers.py).
UID = GID = 1000
PIDS_LIMIT = 256
POD_RAM_BYTES = 2 << 30
POD_TMP_BYTES = 256 << 20
LOG_MAX_MIB = 64
GIB = 1 << 30


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 1)


def status_name(status: int) -> str:
    return S.Name(status).removeprefix("JOB_STATUS_").lower()


# ---------------------------------------------------------------- images


def busybox_image(client: docker.DockerClient) -> str:
    """``c2d-test-busybox:1`` (as tests/docker_images.py makes it): the host's static busybox, by docker import."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(BUSYBOX_IMAGE)
        return BUSYBOX_IMAGE
    busybox = next(
        (Path(p).resolve() for p in ("/bin/busybox", shutil.which("busybox")) if p and Path(p).is_file()),
        None,
    )
    if busybox is None or not _is_static(busybox):
        raise RuntimeError(
            "a static busybox is needed for the algorithm's image: apt-get install busybox-static"
        )
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    passwd = f"root:x:0:0:root:/root:/bin/sh\nc2d:x:{UID}:{GID}::/home/c2d:/bin/sh\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(
            name: str, kind: bytes = tarfile.DIRTYPE, mode: int = 0o755, data: bytes = b"", target: str = ""
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, int(time.time()), target
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for folder in ("bin", "etc", "root", "home", "proc", "sys", "dev", "usr", "var"):
            add(folder)
        add("tmp", mode=0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, passwd.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, f"root:x:0:\nc2d:x:{GID}:\n".encode())
    repository, _, tag = BUSYBOX_IMAGE.rpartition(":")
    client.api.import_image_from_data(
        buffer.getvalue(), repository=repository, tag=tag, changes=["ENV PATH=/bin", 'CMD ["sh"]']
    )
    client.images.get(BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


def _is_static(path: Path) -> bool:
    """A 64-bit ELF file with no PT_INTERP program header (no dynamic loader needed)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        endian = "<" if head[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))


# ---------------------------------------------------------------- Docker's events


class ContainerEvents(threading.Thread):
    """Docker's container events (create, start, die, destroy), by the node's job id or the bench's run.

    ``times[(key, role)][action]`` is the daemon's time of the event (epoch seconds);
    the key is the ``c2d.job`` label for the node's containers, the bare run's label for ours.
    """

    ACTIONS = ("create", "start", "die", "destroy")

    def __init__(self, client: docker.DockerClient) -> None:
        super().__init__(name="docker-events", daemon=True)
        self.stream = client.events(decode=True, filters={"type": "container"})
        self.times: dict[tuple[str, str], dict[str, float]] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        with contextlib.suppress(Exception):  # closing the stream ends the loop with an error
            for event in self.stream:
                action = event.get("Action") or event.get("status")
                if action not in self.ACTIONS:
                    continue
                attrs = (event.get("Actor") or {}).get("Attributes") or {}
                if "c2d.role" in attrs and "c2d.job" in attrs:
                    key = (attrs["c2d.job"], attrs["c2d.role"])
                elif BENCH_LABEL in attrs:
                    key = (attrs.get("c2d.bench.run", ""), attrs[BENCH_LABEL])
                else:
                    continue
                with self.lock:
                    self.times.setdefault(key, {}).setdefault(action, event["timeNano"] / 1e9)

    def of(self, key: str, role: str, wait_for: str = "destroy", timeout: float = 2.0) -> dict[str, float]:
        """The events of one container, once ``wait_for`` has arrived (events come a little late)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = dict(self.times.get((key, role), {}))
            if wait_for in found or time.monotonic() >= deadline:
                return found
            time.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stream.close()


def container_spans(
    events: dict[str, dict[str, float]], t0: float, end: float | None
) -> dict[str, float | None]:
    """From t0: until the first container is created, each container's create->start and start->exit,
    the gaps between one container's exit and the next one's creation, and from the last exit to ``end``."""
    spans: dict[str, float | None] = {}
    previous, previous_name = t0, "start"
    for role in ROLES:
        times = events.get(role, {})
        created, started, died = times.get("create"), times.get("start"), times.get("die")
        spans[f"{previous_name} -> {role} created"] = None if created is None else created - previous
        spans[f"{role}: created -> started"] = None if None in (created, started) else started - created  # type: ignore[operator]
        spans[f"{role}: started -> exited"] = None if None in (started, died) else died - started  # type: ignore[operator]
        if died is None:
            return spans
        previous, previous_name = died, f"{role} exited"
    spans[f"{previous_name} -> end"] = None if end is None else end - previous
    return spans


# ---------------------------------------------------------------- the node


class Node:
    """``python -m host`` with the Docker engine, in a data dir of its own, its JSON log in ``node.log`` there."""

    def __init__(self, data_dir: Path, pod_image: str, disk_quota: str) -> None:
        self.data_dir = data_dir
        self.address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "C2D_LOAD_PLUGINS": "docker",
            "C2D_PODS__LISTEN": f"auto:{free_port()}",  # the Docker bridge: where pod containers reach it
            "C2D_ENGINES__DOCKER__POD_IMAGE": pod_image,
            "C2D_ENGINES__DOCKER__DISK_QUOTA": disk_quota,
            "C2D_CHAIN__DEV": "off",  # no dev chain (py-evm would run inside the node): no payments here
        }
        argv = [sys.executable, "-m", "host", "--data-dir", str(data_dir), "--listen", self.address]
        self.log_path = data_dir / "node.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*argv, "--log-format", "json"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        self.job_ids: list[str] = []

    def wait_environment(self, timeout: float = 180) -> common_pb2.Environment:
        deadline = time.monotonic() + timeout
        host, _, port = self.address.rpartition(":")
        # Wait for the port first: a gRPC channel that failed to connect backs off for seconds.
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                break
            time.sleep(0.05)
        with grpc.insecure_channel(self.address) as channel:
            stub = compute_pb2_grpc.ComputeServiceStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the node exited with {self.process.returncode}; see {self.log_path}")
                with contextlib.suppress(grpc.RpcError):
                    reply = stub.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=2)
                    for env in reply.environments:
                        if env.id == ENV_ID:
                            return env
                time.sleep(0.1)
        raise RuntimeError(f"environment {ENV_ID!r} did not appear in {timeout:g}s; see {self.log_path}")

    def disk_quota(self) -> str:
        """The engine's disk quota mode, as its plugin logged it once configured ("loop-ext4" or "none")."""
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if (
                        isinstance(record, dict)
                        and record.get("event") == "configured"
                        and "disk_quota" in record
                    ):
                        return str(record["disk_quota"])
        return "unknown"

    def settle(self, timeout: float = 10) -> float:
        """Waits until the engine has destroyed every job (unmounted its disk...); the seconds it took."""
        jobs = self.data_dir / "engines" / "docker" / "jobs"
        started = time.monotonic()
        while time.monotonic() - started < timeout and jobs.is_dir() and any(jobs.iterdir()):
            time.sleep(0.01)
        return time.monotonic() - started

    def loop_mounts(self) -> list[str]:
        """Mount points under the data dir (the jobs' loop-mounted ext4 disks), deepest first."""
        mark = str(self.data_dir.resolve())
        found = []
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(mark + "/"):
                    found.append(point)
        return sorted(found, key=len, reverse=True)

    def stop(self, client: docker.DockerClient) -> None:
        """The node (SIGTERM, SIGKILL after a few seconds), then what its jobs left: containers, mounts, loop devices."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for job_id in self.job_ids:
            with contextlib.suppress(docker.errors.APIError):
                for container in client.containers.list(all=True, filters={"label": f"c2d.job={job_id}"}):
                    container.remove(force=True)
        for point in self.loop_mounts():
            subprocess.run(["umount", point], capture_output=True, check=False)
        listing = subprocess.run(
            ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        mark = str(self.data_dir.resolve())
        for line in listing.splitlines():
            device, _, backing = line.strip().partition(" ")
            if backing.strip().startswith(mark + "/"):
                subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)


def node_run(client: Client, image: str, poll: float) -> dict[str, Any]:
    """One free one-stage workflow, from just before FreeStartCompute to its recorded end."""
    name, _, tag = image.partition(":")
    workflow = {
        "environment": ENV_ID,
        "stages": [
            {
                "index": 0,
                "algorithm": {
                    "rawcode": ALGORITHM,
                    "container": {"entrypoint": "sh $ALGO", "image": name, "tag": tag},
                },
            }
        ],
    }
    t0 = time.time()
    started = time.perf_counter()
    reply = client.start(workflow, free=True)
    start_call = time.perf_counter() - started
    while True:
        jobs = client.status(workflow_id=reply.workflow_id)
        if jobs and all(job.terminal for job in jobs):
            observed = time.perf_counter() - started
            break
        time.sleep(poll)
    (job,) = jobs
    history = [(e.status, e.time.ToNanoseconds() / 1e9) for e in job.history]
    finished = job.finished.ToNanoseconds() / 1e9 if job.HasField("finished") else history[-1][1]
    phases: dict[str, float] = {"start call -> " + status_name(history[0][0]): history[0][1] - t0}
    for (status, at), (_, following) in itertools.pairwise(history):
        phases[status_name(status)] = phases.get(status_name(status), 0.0) + following - at
    if abs(finished - history[-1][1]) >= 0.0005:
        phases[f"{status_name(history[-1][0])} event -> finished time"] = finished - history[-1][1]
    return {
        "job_id": job.job_id,
        "status": job.status_text,
        "ok": job.status == S.JOB_STATUS_FINISHED,
        "t0": t0,
        "finished_at": finished,
        "seconds": finished - t0,
        "observed_seconds": observed,
        "start_call_seconds": start_call,
        "phases": phases,
        "resources": {r.id: r.amount for r in job.resources},
    }


# ---------------------------------------------------------------- bare


@dataclass
class Bare:
    """The three containers as the engine makes them (containers.py), for a run of ``docker`` calls."""

    client: docker.DockerClient
    pod_image: str
    algorithm_image: str
    root: Path
    cpu: float = 1.0
    ram_bytes: int = GIB
    disk_bytes: int = GIB
    file_size_limit: bool = False  # the engine's ulimit fsize, where it has no loop-ext4 disk

    def folders(self, run: str) -> tuple[Path, Path]:
        base = self.root / run
        data, scratch = base / "data", base / "scratch"
        for path in (data, *(data / d for d in ("inputs", "transformations", "outputs", "logs")), scratch):
            path.mkdir(parents=True, mode=0o755)
            if os.geteuid() == 0:
                os.chown(path, UID, GID)
            else:
                path.chmod(0o777)
        return data, scratch

    def common(self, run: str, role: str) -> dict[str, Any]:
        return {
            "name": f"c2d-bench-{run}-{role}",
            "labels": {BENCH_LABEL: role, "c2d.bench.run": run},
            "user": f"{UID}:{GID}",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "pids_limit": PIDS_LIMIT,
            "init": True,
            "detach": True,
        }

    def pod(self, run: str, role: str, data: Path, scratch: Path) -> dict[str, Any]:
        mounts = [Mount(target="/data", source=str(data), type="bind")]
        if role == "publishing":
            mounts.append(Mount(target="/data/.publishing", source=str(scratch), type="bind"))
        return {
            **self.common(run, role),
            "image": self.pod_image,
            "entrypoint": ["python3"],
            "command": ["-c", POD_IMPORTS],
            "environment": {
                "C2D_DATA": "/data",
                "HOME": "/tmp",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            "mounts": mounts,
            "network_mode": "bridge",
            "log_config": LogConfig(type=LogConfig.types.JSON, config={"max-size": "16m", "max-file": "1"}),
            "mem_limit": POD_RAM_BYTES,
            "memswap_limit": POD_RAM_BYTES,
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={POD_TMP_BYTES},mode=1777"},
        }

    def algorithm(self, run: str, data: Path) -> dict[str, Any]:
        kwargs = {
            **self.common(run, "algorithm"),
            "image": self.algorithm_image,
            "entrypoint": ["/bin/sh", "-c"],
            "command": [ALGORITHM],
            "environment": {"HOME": "/tmp", "C2D_DATA": "/data"},
            "mounts": [
                Mount(target="/data/inputs", source=str(data / "inputs"), type="bind", read_only=True),
                Mount(
                    target="/data/transformations",
                    source=str(data / "transformations"),
                    type="bind",
                    read_only=True,
                ),
                Mount(target="/data/outputs", source=str(data / "outputs"), type="bind"),
                Mount(target="/data/logs", source=str(data / "logs"), type="bind"),
            ],
            "network_mode": "none",
            "log_config": LogConfig(
                type=LogConfig.types.JSON, config={"max-size": f"{LOG_MAX_MIB}m", "max-file": "1"}
            ),
            "nano_cpus": max(1, round(self.cpu * 1e9)),
            "mem_limit": self.ram_bytes,
            "memswap_limit": self.ram_bytes,
            "tmpfs": {
                "/tmp": f"rw,nosuid,nodev,size={max(16 << 20, min(GIB, self.ram_bytes // 4))},mode=1777"
            },
        }
        if self.file_size_limit:
            kwargs["ulimits"] = [Ulimit(name="fsize", soft=self.disk_bytes, hard=self.disk_bytes)]
        return kwargs

    def run(self, run: str) -> dict[str, Any]:
        """The three containers one after another, each created, started, waited for and removed."""
        data, scratch = self.folders(run)
        calls: dict[str, dict[str, float]] = {}
        t0 = time.time()
        started = time.perf_counter()
        for role in ROLES:
            kwargs = self.algorithm(run, data) if role == "algorithm" else self.pod(run, role, data, scratch)
            at = time.perf_counter()
            container = self.client.containers.create(**kwargs)
            created = time.perf_counter()
            container.start()
            running = time.perf_counter()
            result = container.wait(timeout=120)
            exited = time.perf_counter()
            container.remove(force=True)
            removed = time.perf_counter()
            if result.get("StatusCode") != 0:
                raise RuntimeError(f"the bare {role} container exited with {result.get('StatusCode')}")
            calls[role] = {
                "create": created - at,
                "start": running - created,
                "wait": exited - running,
                "remove": removed - exited,
            }
        seconds = time.perf_counter() - started
        if (data / "outputs" / "o").read_text().strip() != "x":
            raise RuntimeError("the bare algorithm container wrote no output")
        return {"run": run, "t0": t0, "end": t0 + seconds, "seconds": seconds, "calls": calls}


# ---------------------------------------------------------------- one run


@dataclass
class Options:
    runs: int
    warmup: int
    poll: float
    disk_quota: str
    as_json: bool
    keep: bool


def _say(opts: Options, text: str) -> None:
    print(text, file=sys.stderr if opts.as_json else sys.stdout, flush=True)


def run(opts: Options) -> dict[str, Any]:
    docker_client = docker.from_env(timeout=120)
    loadavg_before = os.getloadavg()[0]
    started = time.monotonic()
    algorithm_image = busybox_image(docker_client)
    pod_image = pods.image.ensure(docker_client, build=True)
    _say(opts, f"images: {algorithm_image}, {pod_image} ({time.monotonic() - started:.1f}s)")
    data_dir = Path(tempfile.mkdtemp(prefix="c2d-bench-docker-"))
    bare_root = data_dir / "bare"
    (data_dir / "node").mkdir()
    node = Node(data_dir / "node", pod_image, opts.disk_quota)
    events = ContainerEvents(docker_client)
    events.start()
    try:
        started = time.monotonic()
        node.wait_environment()
        disk_quota = node.disk_quota()
        _say(
            opts,
            f"node up in {time.monotonic() - started:.1f}s at {node.address} (data dir {node.data_dir}; "
            f"job disks: {disk_quota})",
        )
        bare = Bare(docker_client, pod_image, algorithm_image, bare_root)
        node_runs: list[dict[str, Any]] = []
        bare_runs: list[dict[str, Any]] = []
        with Client(node.address, auth.new_private_key(), timeout=60) as client:
            for i in range(opts.warmup + opts.runs):
                counted = i >= opts.warmup
                one = node_run(client, algorithm_image, opts.poll)
                node.job_ids.append(one["job_id"])
                if i == 0:  # the grant the engine gave the stage: the bare algorithm gets the same limits
                    bare.cpu = one["resources"].get("cpu", 1.0)
                    bare.ram_bytes = int(one["resources"].get("ram", 1.0) * GIB)
                    bare.disk_bytes = int(one["resources"].get("disk", 1.0) * GIB)
                    bare.file_size_limit = disk_quota != "loop-ext4"
                one["containers"] = container_spans(
                    {role: events.of(one["job_id"], role) for role in ROLES}, one["t0"], one["finished_at"]
                )
                one["settle_seconds"] = node.settle()  # the job's teardown, before the bare run starts
                two = bare.run(f"{os.getpid()}-{i}")
                two["containers"] = container_spans(
                    {role: events.of(two["run"], role) for role in ROLES}, two["t0"], two["end"]
                )
                (node_runs if counted else []).append(one)
                (bare_runs if counted else []).append(two)
                _say(
                    opts,
                    f"{'run' if counted else 'warm-up'} {i + 1 - opts.warmup if counted else i + 1}: "
                    f"node {one['seconds'] * 1e3:.0f} ms ({one['status']}), bare {two['seconds'] * 1e3:.0f} ms",
                )
        return report(opts, node_runs, bare_runs, loadavg_before, disk_quota, pod_image, algorithm_image)
    finally:
        events.close()
        node.stop(docker_client)
        for container in docker_client.containers.list(all=True, filters={"label": "c2d.bench.run"}):
            if container.name.startswith(f"c2d-bench-{os.getpid()}-"):
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
        docker_client.close()
        if opts.keep:
            _say(opts, f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _medians(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    names: list[str] = []
    for row in rows:
        names += [n for n in row if n not in names]
    return {n: ms(median([v for row in rows if (v := row.get(n)) is not None])) for n in names}


def report(
    opts: Options,
    node_runs: list[dict[str, Any]],
    bare_runs: list[dict[str, Any]],
    loadavg_before: float,
    disk_quota: str,
    pod_image: str,
    algorithm_image: str,
) -> dict[str, Any]:
    node_median = median([r["seconds"] for r in node_runs])
    bare_median = median([r["seconds"] for r in bare_runs])
    ratio = node_median / bare_median if node_median and bare_median else None
    bare_calls = {role: _medians([r["calls"][role] for r in bare_runs]) for role in ROLES}
    return {
        "config": {
            "runs": opts.runs,
            "warmup": opts.warmup,
            "poll_s": opts.poll,
            "algorithm": ALGORITHM,
            "pod_containers_bare": f'python3 -c "{POD_IMPORTS}"',
            "algorithm_image": algorithm_image,
            "pod_image": pod_image,
            "disk_quota": disk_quota,
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(loadavg_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0],
        },
        "node": {
            "median_ms": ms(node_median),
            "runs_ms": [ms(r["seconds"]) for r in node_runs],
            "statuses": [r["status"] for r in node_runs],
            "all_finished": all(r["ok"] for r in node_runs),
            "observed_by_polling_median_ms": ms(median([r["observed_seconds"] for r in node_runs])),
            "start_call_median_ms": ms(median([r["start_call_seconds"] for r in node_runs])),
            "job_teardown_after_median_ms": ms(median([r["settle_seconds"] for r in node_runs])),
            "grant": node_runs[0]["resources"] if node_runs else None,
            "status_phases_median_ms": _medians([r["phases"] for r in node_runs]),
            "containers_median_ms": _medians([r["containers"] for r in node_runs]),
        },
        "bare": {
            "median_ms": ms(bare_median),
            "runs_ms": [ms(r["seconds"]) for r in bare_runs],
            "containers_median_ms": _medians([r["containers"] for r in bare_runs]),
            "docker_calls_median_ms": bare_calls,
        },
        "ratio": None if ratio is None else round(ratio, 3),
        "goal": {"max_ratio": GOAL_RATIO, "met": ratio is not None and ratio <= GOAL_RATIO},
    }


def _fmt(value: float | None, unit: str = " ms") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def print_report(rep: dict[str, Any]) -> None:
    cfg, node, bare = rep["config"], rep["node"], rep["bare"]
    print()
    print(
        f"one stage on the Docker engine, {cfg['runs']} runs (+{cfg['warmup']} warm-up) of each, interleaved; "
        f"{cfg['cpus']} CPUs, Python {cfg['python']}, job disk: {cfg['disk_quota']}"
    )
    print(
        f"load average {cfg['loadavg_1m_before']:.2f} before, {cfg['loadavg_1m_after']:.2f} after "
        "(other work on the machine skews every figure)"
    )
    print("-" * 96)
    print(
        f"node: FreeStartCompute -> finished, median  {_fmt(node['median_ms']):>12}   runs "
        + ", ".join(_fmt(v, "") for v in node["runs_ms"])
        + ("" if node["all_finished"] else f"  NOT ALL FINISHED: {node['statuses']}")
    )
    print(
        f"bare: 3 containers one after another, med.  {_fmt(bare['median_ms']):>12}   runs "
        + ", ".join(_fmt(v, "") for v in bare["runs_ms"])
    )
    ratio = "-" if rep["ratio"] is None else f"{rep['ratio']:.2f}x"
    print(f"ratio node / bare                           {ratio:>12}")
    print(
        f"goal: at most {rep['goal']['max_ratio']}x the bare time: {'MET' if rep['goal']['met'] else 'NOT MET'}"
    )
    print("-" * 96)
    print(
        f"node: FreeStartCompute call {_fmt(node['start_call_median_ms'])}; terminal seen by polling every "
        f"{cfg['poll_s'] * 1e3:g} ms after {_fmt(node['observed_by_polling_median_ms'])}; the job torn down "
        f"{_fmt(node['job_teardown_after_median_ms'])} after that (medians); grant {node['grant']}"
    )
    print("node, median time in each status of the stage's history:")
    for name, value in node["status_phases_median_ms"].items():
        print(f"  {name:<40} {_fmt(value):>12}")
    print("containers, from Docker's events (median):       node           bare")
    names = list(node["containers_median_ms"])
    names += [n for n in bare["containers_median_ms"] if n not in names]
    for name in names:
        print(
            f"  {name:<44} {_fmt(node['containers_median_ms'].get(name)):>12} "
            f"{_fmt(bare['containers_median_ms'].get(name)):>12}"
        )
    print(
        "bare, docker calls (median): "
        + "; ".join(
            f"{role}: " + ", ".join(f"{call} {_fmt(v)}" for call, v in calls.items())
            for role, calls in bare["docker_calls_median_ms"].items()
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs of each (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs of each first (default 1)")
    parser.add_argument(
        "--poll", type=float, default=0.02, help="seconds between status polls (default 0.02)"
    )
    parser.add_argument(
        "--disk-quota",
        choices=("auto", "none", "loop-ext4"),
        default="auto",
        help="the engine's disk_quota (default auto: loop-ext4 where it works)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and the node's log)")
    args = parser.parse_args(argv)
    opts = Options(
        runs=max(1, args.runs),
        warmup=max(0, args.warmup),
        poll=max(0.001, args.poll),
        disk_quota=args.disk_quota,
        as_json=args.json,
        keep=args.keep,
    )
    rep = run(opts)
    if opts.as_json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
