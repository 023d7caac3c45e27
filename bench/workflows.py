"""Workflow throughput and status latency of a node on the external_stub engine.

Starts its own ``python -m host`` in a temporary data dir, with one external_stub
environment ("bench": 64 cores, 64 GiB RAM, 64 GiB disk, no job cap), then:

* C client threads (each with its own key and :class:`c2d.client.Client`) submit
  many small free workflows of K independent stages (a trivial shell algorithm)
  as fast as they can, and poll ``GetComputeStatus(all)`` until every stage has
  ended or the deadline passes;
* a probe, in a process of its own so that the load threads' GIL does not
  inflate its timings, calls the signed ``GetComputeStatus`` (one job id, the
  signing outside the timing) in a loop, alternating with ``grpc.health.v1``
  ``Health/Check`` against the node, before the load (idle) and during it.

Figures: stages accepted per second (FreeStartCompute, counting stages), stages
completed per second (node-side finish times), GetComputeStatus p50/p99, and the
baseline of the same run: the p50/p99 of a bare gRPC round trip, ``Health/Check``
against the idle node (same server stack, no application work). A trivial unary
RPC on a tiny grpc server inside the probe process is printed too. The ratio is
status p99 (under load) / baseline p99. Goals (exit status 0 either way): at
least 200 stages/s accepted and completed, status p99 under 20 ms.

Also printed, for diagnosis: CPU seconds spent during the load by the node (and
how long its event loop thread sat runnable, waiting for a CPU), the engine
plugin, the jobs (shims, pods and algorithms, sampled from /proc by kind, and as
the plugin's reaped children), this load generator and the probe; the node's CPU
per ended stage; and median per-phase times of the ended stages, from their
status history. Every stage requests the environment's minimum of each resource.

    python bench/workflows.py [--workflows N] [--clients C] [--stages-per-workflow K]
                              [--timeout S] [--max-jobs J] [--quick] [--json]
                              [--py-spy DIR] [--keep]

Defaults: 20 workflows x 2 stages from 4 clients, 60 s at most for the load
(about 50 s in all on two cores); ``--quick``: 4 workflows, 12 s (about 15 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc

ENV_ID = "bench"
ALGORITHM = 'echo x > "$C2D_DATA/outputs/o"'
CONTAINER = {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"}
STATUS_METHOD = (
    "/" + compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name + "/GetComputeStatus"
)
GOAL_STAGES_PER_SECOND = 200.0
GOAL_STATUS_P99_MS = 20.0
POLL_SECONDS = 2.0  # each client asks for all of its jobs this often
BASELINE_CALLS = 400
IDLE_STATUS_CALLS = 200
PROBE_INTERVAL_SECONDS = 0.05  # 20 status calls and 20 health checks a second, at most
MAX_STATUS_JOBS = 1000  # GetComputeStatus(all) answers at most this many jobs
S = common_pb2.JobStatus


def environments(max_jobs: int) -> str:
    """The stub's environments (C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS): one big one, "bench"."""
    return f'[{{id = "{ENV_ID}", cpu = 64, ram_gib = 64, disk_gib = 64, max_jobs = {max_jobs}}}]'


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``samples``; None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # ceil(p/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples: list[float]) -> dict[str, Any]:
    """Count, p50 and p99 in milliseconds of latencies given in seconds."""
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return {
        "n": len(samples),
        "p50_ms": None if p50 is None else round(p50 * 1e3, 3),
        "p99_ms": None if p99 is None else round(p99 * 1e3, 3),
    }


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime+stime, cutime+cstime) of a process in seconds; zeros when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    children = (int(fields[13]) + int(fields[14])) / tick
    return own, children


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line or working directory lies in ``directory`` (the node's jobs)."""
    mark = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            if mark in cmdline or cwd.startswith(mark):
                found.append(int(entry.name))
    return found


def run_delay_seconds(pid: int) -> float:
    """Time the main thread of ``pid`` (the node's event loop) spent runnable, waiting for a CPU (schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


JOB_KINDS = (
    ("pods.configuration", "pod-configuration"),
    ("pods.publishing", "pod-publishing"),
    ("c2d_external_stub.shim", "shim"),
)


class JobSampler(threading.Thread):
    """Samples, twice a second, the CPU time of every process of this run's jobs, by kind.

    Shims, pods and algorithms run in the job directories (their command line or
    working directory is there). A process's last sample stands for its CPU time,
    so what it spends after its last sample is missed: an underestimate.
    Also samples how many processes are runnable machine-wide (procs_running).
    """

    def __init__(self, jobs_dir: Path, interval: float = 0.5) -> None:
        super().__init__(name="job-sampler", daemon=True)
        self.mark = str(jobs_dir)
        self.interval = interval
        self.stopped = threading.Event()
        self.cpu: dict[int, tuple[str, float]] = {}
        self.running: list[int] = []

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("procs_running"):
                    self.running.append(int(line.split()[1]))
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if self.mark not in cmdline and not os.readlink(entry / "cwd").startswith(self.mark):
                    continue
                pid = int(entry.name)
                kind = next((k for marker, k in JOB_KINDS if marker in cmdline), "algorithm")
                if not cmdline.strip():  # exiting (a zombie): it keeps the kind it had
                    kind = self.cpu.get(pid, (kind, 0.0))[0]
                own, _ = cpu_seconds(pid)
                self.cpu[pid] = (kind, own)

    def by_kind(self) -> dict[str, dict[str, float]]:
        kinds: dict[str, dict[str, float]] = {}
        for kind, seconds in self.cpu.values():
            entry = kinds.setdefault(kind, {"processes": 0, "cpu_s": 0.0})
            entry["processes"] += 1
            entry["cpu_s"] = round(entry["cpu_s"] + seconds, 2)
        return kinds


# ---------------------------------------------------------------- the node


class Node:
    """``python -m host`` in a data dir of its own, its JSON log in ``node.log`` there."""

    def __init__(self, data_dir: Path, max_jobs: int = 0) -> None:
        self.data_dir = data_dir
        self.address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "C2D_PODS__LISTEN": f"127.0.0.1:{free_port()}",
            "C2D_LOAD_PLUGINS": "external_stub",
            "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": environments(max_jobs),
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
        self.channel = grpc.insecure_channel(self.address)
        self.compute = compute_pb2_grpc.ComputeServiceStub(self.channel)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_environment(self, env_id: str, timeout: float = 60) -> common_pb2.Environment:
        deadline = time.monotonic() + timeout
        host, _, port = self.address.rpartition(":")
        # Wait for the port first: a gRPC channel that failed to connect backs off for seconds.
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
                break
            time.sleep(0.05)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the node exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(grpc.RpcError):
                reply = self.compute.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=2)
                for env in reply.environments:
                    if env.id == env_id:
                        return env
            time.sleep(0.05)
        raise RuntimeError(f"environment {env_id!r} did not appear in {timeout}s; see {self.log_path}")

    def plugin_pids(self) -> list[int]:
        return children_of(self.pid)

    def stop(self) -> None:
        """Ends this run's jobs, then the node (SIGTERM, SIGKILL after a few seconds), then any job left.

        Shims run in sessions of their own and outlive the plugin on purpose, so they are
        found by their job directories (command line or working directory in the data dir).
        """
        self._kill_jobs()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.channel.close()
        self._kill_jobs()

    def _kill_jobs(self) -> None:
        for pid in processes_under(self.data_dir / "engines"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- the probe (its own process)


def _probe_main(address: str, key: str, job_id: str, conn: Any) -> None:
    """Runs in a spawned process: baselines and idle status first, then samples until told to stop.

    Messages to ``conn``: ("ready", idle_results) after the idle phase, then, once
    it receives "stop", ("done", load_results). It starts the load phase on "load".
    """
    results: dict[str, list[float]] = {}
    # 1. A trivial unary RPC on a tiny grpc server in this process: the machine's bare round trip.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as local:
        results["inprocess"] = _time_calls(health_pb2_grpc.HealthStub(local), BASELINE_CALLS)
    server.stop(None)

    channel = grpc.insecure_channel(address)
    health_stub = health_pb2_grpc.HealthStub(channel)
    compute = compute_pb2_grpc.ComputeServiceStub(channel)
    # 2. Health/Check against the idle node: the baseline of the ratio.
    results["health_idle"] = _time_calls(health_stub, BASELINE_CALLS)
    # 3. The signed status call on the idle node.
    status = _StatusCaller(compute, key, job_id)
    results["status_idle"] = [status.call() for _ in range(IDLE_STATUS_CALLS)]
    conn.send(("ready", results, os.times()))
    if conn.recv() != "load":
        return
    before = os.times()
    load: dict[str, list[float]] = {"status_load": [], "health_load": []}
    request = health_pb2.HealthCheckRequest()
    next_at = time.monotonic()
    while not conn.poll():
        # Paced, so that the probe measures the node rather than loading it: a status call,
        # then a health check, every PROBE_INTERVAL_SECONDS (at once when the last ran late).
        next_at = max(next_at + PROBE_INTERVAL_SECONDS, time.monotonic())
        load["status_load"].append(status.call())
        started = time.perf_counter()
        health_stub.Check(request, timeout=30)
        load["health_load"].append(time.perf_counter() - started)
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.recv()
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    conn.send(("done", load, cpu, status.errors))
    channel.close()


def _time_calls(stub: health_pb2_grpc.HealthStub, count: int) -> list[float]:
    request = health_pb2.HealthCheckRequest()
    for _ in range(20):  # warm the channel up
        stub.Check(request, timeout=30)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        stub.Check(request, timeout=30)
        samples.append(time.perf_counter() - started)
    return samples


class _StatusCaller:
    """GetComputeStatus(job_id), signed like the SDK signs it; only the RPC itself is timed."""

    def __init__(self, stub: compute_pb2_grpc.ComputeServiceStub, key: str, job_id: str) -> None:
        self.stub = stub
        self.key = key
        self.job_id = job_id
        self.nonce = 0
        self.errors = 0

    def call(self) -> float:
        request = compute_pb2.GetComputeStatusRequest(job_id=self.job_id)
        self.nonce = max(auth.new_nonce(), self.nonce + 1)
        auth.sign_request(self.key, STATUS_METHOD, request, nonce=self.nonce)
        started = time.perf_counter()
        try:
            self.stub.GetComputeStatus(request, timeout=30)
        except grpc.RpcError:
            self.errors += 1
        return time.perf_counter() - started


# ---------------------------------------------------------------- the load


@dataclass
class ClientResult:
    accepted_at: list[float] = field(default_factory=list)  # perf_counter when each start returned
    start_latency: list[float] = field(default_factory=list)
    stages_accepted: int = 0
    job_ids: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    jobs: dict[str, compute_pb2.JobInfo] = field(default_factory=dict)  # the last status seen


def workflow(stages: int, resources: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "environment": ENV_ID,
        "resources": resources,
        "stages": [
            {"index": i, "algorithm": {"rawcode": ALGORITHM, "container": CONTAINER}} for i in range(stages)
        ],
    }


def run_client(
    address: str,
    workflows: int,
    stages: int,
    resources: list[dict[str, float]],
    go: threading.Event,
    deadline: float,
    result: ClientResult,
) -> None:
    doc = workflow(stages, resources)
    with Client(address, auth.new_private_key(), timeout=60) as client:
        go.wait()
        for _ in range(workflows):
            if time.monotonic() >= deadline:
                result.errors.append("deadline passed before every workflow was submitted")
                break
            started = time.perf_counter()
            try:
                reply = client.start(doc, free=True)
            except C2DError as exc:
                result.errors.append(f"FreeStartCompute: {exc}")
                continue
            now = time.perf_counter()
            result.start_latency.append(now - started)
            result.accepted_at.append(now)
            result.stages_accepted += len(reply.stages)
            result.job_ids.update(reply.job_ids)
        _poll_until_ended(client, result, deadline)


def _poll_until_ended(client: Client, result: ClientResult, deadline: float) -> None:
    """Follows this client's stages (all of them in one call) until they have ended or time is up."""
    pending = set(result.job_ids)
    while pending:
        try:
            if len(result.job_ids) <= MAX_STATUS_JOBS:
                jobs = client.status(all=True)
            else:
                jobs = [job for job_id in sorted(pending) for job in client.status(job_id=job_id)]
        except C2DError as exc:
            result.errors.append(f"GetComputeStatus: {exc}")
            jobs = []
        for job in jobs:
            if job.job_id in result.job_ids:
                result.jobs[job.job_id] = job
                if job.terminal:
                    pending.discard(job.job_id)
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------- one run


@dataclass
class Options:
    workflows: int
    clients: int
    stages: int
    timeout: float
    as_json: bool
    py_spy: Path | None
    keep: bool
    max_jobs: int = 0
    loadavg_before: float = 0.0


def run(opts: Options) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="c2d-bench-"))
    node = Node(data_dir, opts.max_jobs)
    try:
        return _run(node, opts)
    finally:
        node.stop()
        if opts.keep:
            _say(opts, f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _say(opts: Options, text: str) -> None:
    print(text, file=sys.stderr if opts.as_json else sys.stdout, flush=True)


def _run(node: Node, opts: Options) -> dict[str, Any]:
    started = time.monotonic()
    env = node.wait_environment(ENV_ID)
    _say(opts, f"node up in {time.monotonic() - started:.1f}s at {node.address} (data dir {node.data_dir})")
    resources = [{"id": r.id, "amount": r.min} for r in env.resources if r.min > 0]

    # The probe's job: one finished stage of its own, so that GetComputeStatus has a real job to show.
    probe_key = auth.new_private_key()
    with Client(node.address, probe_key, timeout=60) as probe_client:
        (probe_job,) = probe_client.start(workflow(1, resources), free=True).job_ids
        first = probe_client.wait([probe_job], poll=0.2, timeout=120)[0]
    _say(opts, f"probe job {probe_job}: {first.status_text}; measuring baselines")

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    probe = ctx.Process(target=_probe_main, args=(node.address, probe_key, probe_job, parent), daemon=True)
    probe.start()
    _, idle, _ = _from_probe(child, probe, 120)

    per_client = [
        opts.workflows // opts.clients + (i < opts.workflows % opts.clients) for i in range(opts.clients)
    ]
    results = [ClientResult() for _ in range(opts.clients)]
    go = threading.Event()
    settle = 0.5  # seconds for every client to make its key and channel before the clock starts
    deadline = time.monotonic() + settle + opts.timeout
    threads = [
        threading.Thread(
            target=run_client,
            args=(node.address, n, opts.stages, resources, go, deadline, result),
            name=f"client-{i}",
            daemon=True,
        )
        for i, (n, result) in enumerate(zip(per_client, results, strict=True))
    ]
    for thread in threads:
        thread.start()
    time.sleep(settle)
    _say(opts, f"load: {opts.workflows} workflows x {opts.stages} stages from {opts.clients} clients")

    spies = _start_py_spy(opts.py_spy, node) if opts.py_spy else []
    plugins = node.plugin_pids()
    sampler = JobSampler(node.data_dir / "engines")
    sampler.start()
    cpu_before = _cpu_snapshot(node.pid, plugins)
    child.send("load")
    load_wall = time.time()
    load_start = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 120)
    load_seconds = time.perf_counter() - load_start
    cpu_after = _cpu_snapshot(node.pid, plugins)
    sampler.stopped.set()
    sampler.join()
    child.send("stop")
    _, load, probe_cpu, probe_errors = _from_probe(child, probe, 60)
    probe.join(10)
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
    return _report(
        opts, idle, load, probe_cpu, probe_errors, results, load_start, load_wall, load_seconds,
        cpu_before, cpu_after, sampler,
    )  # fmt: skip


def _from_probe(conn: Any, probe: Any, timeout: float) -> Any:
    """The probe's next message; RuntimeError when it died or stays silent."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        if not probe.is_alive():
            raise RuntimeError(f"the probe process exited with {probe.exitcode}")
        if time.monotonic() >= deadline:
            probe.kill()
            raise RuntimeError(f"the probe sent nothing for {timeout:g}s")
    return conn.recv()


def _cpu_snapshot(node_pid: int, plugins: list[int]) -> dict[str, float]:
    node_own, _ = cpu_seconds(node_pid)
    plugin_own = plugin_children = 0.0
    for pid in plugins:
        own, reaped = cpu_seconds(pid)
        plugin_own += own
        plugin_children += reaped
    usage = os.times()
    busy, total = machine_busy()
    return {
        "node": node_own,
        "node_loop_waiting_for_cpu": run_delay_seconds(node_pid),
        "plugin": plugin_own,
        "jobs_reaped": plugin_children,
        "bench": usage.user + usage.system,
        "machine_busy": busy,
        "machine_total": total,
    }


def _start_py_spy(directory: Path, node: Node) -> list[subprocess.Popen[bytes]]:
    directory.mkdir(parents=True, exist_ok=True)
    spies = []
    targets = [("node", node.pid)] + [(f"plugin-{pid}", pid) for pid in node.plugin_pids()]
    for name, pid in targets:
        argv = ["py-spy", "record", "--pid", str(pid), "--rate", "100", "--gil", "--format", "raw"]
        spies.append(
            subprocess.Popen(
                [*argv, "-o", str(directory / f"{name}.collapsed.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return spies


# ---------------------------------------------------------------- the report


def _report(
    opts: Options,
    idle: dict[str, list[float]],
    load: dict[str, list[float]],
    probe_cpu: float,
    probe_errors: int,
    results: list[ClientResult],
    load_start: float,
    load_wall: float,
    load_seconds: float,
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
    sampler: JobSampler,
) -> dict[str, Any]:
    accepted_at = [t for r in results for t in r.accepted_at]
    stages_accepted = sum(r.stages_accepted for r in results)
    accept_window = (max(accepted_at) - load_start) if accepted_at else 0.0
    jobs = [job for r in results for job in r.jobs.values()]
    ended = [job for job in jobs if job.terminal]
    finished_at = sorted(job.finished.ToNanoseconds() / 1e9 for job in ended if job.HasField("finished"))
    all_ended = len(ended) == stages_accepted and stages_accepted == opts.workflows * opts.stages
    window = (finished_at[-1] - load_wall) if finished_at and all_ended else min(load_seconds, opts.timeout)
    completed_per_s = len(ended) / window if window > 0 else 0.0
    accepted_per_s = stages_accepted / accept_window if accept_window > 0 else 0.0
    status_load = summary_ms(load["status_load"])
    baseline = summary_ms(idle["health_idle"])
    ratio = (
        status_load["p99_ms"] / baseline["p99_ms"]
        if status_load["p99_ms"] is not None and baseline["p99_ms"]
        else None
    )
    cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before}
    cpu["probe"] = round(probe_cpu, 2)
    machine_total = cpu.pop("machine_total")
    cpu["machine_busy_percent"] = (
        round(100 * cpu.pop("machine_busy") / machine_total, 1) if machine_total else None
    )
    cpu["jobs_sampled"] = sampler.by_kind()
    runnable = sampler.running
    cpu["runnable_processes_mean"] = round(sum(runnable) / len(runnable), 1) if runnable else None
    errors = Counter(e for r in results for e in r.errors)
    report = {
        "config": {
            "workflows": opts.workflows,
            "clients": opts.clients,
            "stages_per_workflow": opts.stages,
            "timeout_s": opts.timeout,
            "algorithm": ALGORITHM,
            "environment": environments(opts.max_jobs),
            "cpus": os.cpu_count(),
            "loadavg_1m_before": opts.loadavg_before,
            "python": sys.version.split()[0],
        },
        "accepted": {
            "stages": stages_accepted,
            "seconds": round(accept_window, 3),
            "stages_per_s": round(accepted_per_s, 2),
            "start_call": summary_ms([x for r in results for x in r.start_latency]),
        },
        "completed": {
            "stages": len(ended),
            "of": opts.workflows * opts.stages,
            "all_ended": all_ended,
            "seconds": round(window, 3),
            "stages_per_s": round(completed_per_s, 2),
            "node_cpu_ms_per_stage": round(1e3 * cpu["node"] / len(ended), 1) if ended else None,
            "by_status": dict(Counter(job.status_text for job in ended)),
            "phases_median_ms": _phase_medians(ended),
        },
        "status": {
            "load": status_load,
            "idle": summary_ms(idle["status_idle"]),
            "errors": probe_errors,
        },
        "baseline": {
            "what": "grpc.health.v1 Health/Check against the idle node, before the load",
            **baseline,
            "inprocess": summary_ms(idle["inprocess"]),
            "node_health_under_load": summary_ms(load["health_load"]),
        },
        "status_p99_over_baseline_p99": None if ratio is None else round(ratio, 2),
        "goals": {
            "accepted_200_per_s": accepted_per_s >= GOAL_STAGES_PER_SECOND,
            "completed_200_per_s": completed_per_s >= GOAL_STAGES_PER_SECOND,
            "status_p99_under_20ms": status_load["p99_ms"] is not None
            and status_load["p99_ms"] < GOAL_STATUS_P99_MS,
        },
        "cpu_seconds_during_load": {"wall": round(load_seconds, 2), **cpu},
        "errors": dict(errors),
    }
    return report


PHASES = (
    ("queued", None, S.JOB_STATUS_QUEUED),
    ("provisioning", S.JOB_STATUS_PROVISIONING, S.JOB_STATUS_RUNNING),
    ("running", S.JOB_STATUS_RUNNING, S.JOB_STATUS_PUBLISHING),
    ("publishing", S.JOB_STATUS_PUBLISHING, None),
)


def _phase_medians(jobs: list[compute_pb2.JobInfo]) -> dict[str, float | None]:
    """Median ms per phase: queued (accepted -> first later status), provisioning, running, publishing."""
    spans: dict[str, list[float]] = {"queued": [], "provisioning": [], "running": [], "publishing": []}
    totals = []
    for job in jobs:
        events = [(e.status, e.time.ToNanoseconds() / 1e9) for e in job.history]
        if len(events) < 2:
            continue
        totals.append(events[-1][1] - events[0][1])
        for i, (status, at) in enumerate(events[:-1]):
            following = events[i + 1][1]
            name = {
                S.JOB_STATUS_QUEUED: "queued",
                S.JOB_STATUS_PROVISIONING: "provisioning",
                S.JOB_STATUS_RUNNING: "running",
                S.JOB_STATUS_PUBLISHING: "publishing",
            }.get(status)
            if name is not None:
                spans[name].append(following - at)
    medians: dict[str, float | None] = {}
    for name, values in [*spans.items(), ("accepted_to_end", totals)]:
        value = percentile(values, 50)
        medians[name] = None if value is None else round(value * 1e3, 1)
    return medians


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}{unit}"
    return f"{value}{unit}"


def print_table(report: dict[str, Any]) -> None:
    acc, done, st, base = report["accepted"], report["completed"], report["status"], report["baseline"]
    goals = report["goals"]
    cfg = report["config"]

    def met(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    rows = [
        ("stages accepted/s (FreeStartCompute)", _fmt(acc["stages_per_s"]),
         f"{acc['stages']} stages in {acc['seconds']:.2f}s; call p50 {_fmt(acc['start_call']['p50_ms'], ' ms')}"
         f", p99 {_fmt(acc['start_call']['p99_ms'], ' ms')}"),
        ("stages completed/s", _fmt(done["stages_per_s"]),
         f"{done['stages']}/{done['of']} ended in {done['seconds']:.2f}s"
         + ("" if done["all_ended"] else " (deadline: not all ended)")
         + f"; node CPU {_fmt(done['node_cpu_ms_per_stage'], ' ms')} per ended stage"),
        ("GetComputeStatus p50 / p99, under load", f"{_fmt(st['load']['p50_ms'])} / {_fmt(st['load']['p99_ms'])} ms",
         f"n={st['load']['n']}, errors {st['errors']}"),
        ("GetComputeStatus p50 / p99, idle node", f"{_fmt(st['idle']['p50_ms'])} / {_fmt(st['idle']['p99_ms'])} ms",
         f"n={st['idle']['n']}"),
        ("baseline: Health/Check, idle node", f"{_fmt(base['p50_ms'])} / {_fmt(base['p99_ms'])} ms",
         f"n={base['n']} (the ratio's baseline)"),
        ("Health/Check on the node, under load",
         f"{_fmt(base['node_health_under_load']['p50_ms'])} / {_fmt(base['node_health_under_load']['p99_ms'])} ms",
         f"n={base['node_health_under_load']['n']}"),
        ("trivial RPC, in-process grpc server", f"{_fmt(base['inprocess']['p50_ms'])} / {_fmt(base['inprocess']['p99_ms'])} ms",
         f"n={base['inprocess']['n']}"),
        ("ratio status p99 / baseline p99", _fmt(report["status_p99_over_baseline_p99"], "x"), ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(
        f"workflows: {cfg['workflows']} x {cfg['stages_per_workflow']} stages, {cfg['clients']} clients, "
        f"{cfg['cpus']} CPUs, Python {cfg['python']}, algorithm: {cfg['algorithm']}"
    )
    print(
        f"environment: {cfg['environment']}; load average before the run: {cfg['loadavg_1m_before']:.2f}"
        " (other work on the machine skews every figure)"
    )
    print("-" * (width + vwidth + 50))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    print("-" * (width + vwidth + 50))
    print(f"goal >= {GOAL_STAGES_PER_SECOND:g} stages/s accepted:  {met(goals['accepted_200_per_s'])}")
    print(f"goal >= {GOAL_STAGES_PER_SECOND:g} stages/s completed: {met(goals['completed_200_per_s'])}")
    print(f"goal status p99 < {GOAL_STATUS_P99_MS:g} ms:        {met(goals['status_p99_under_20ms'])}")
    phases = done["phases_median_ms"]
    print(
        "median per stage (ms): "
        + ", ".join(f"{name} {_fmt(value)}" for name, value in phases.items())
        + f"; by status: {done['by_status']}"
    )
    cpu = report["cpu_seconds_during_load"]
    print(
        f"CPU seconds during the load ({cpu['wall']:.1f}s wall x {cfg['cpus']} CPUs, machine "
        f"{_fmt(cpu['machine_busy_percent'], '%')} busy, {_fmt(cpu['runnable_processes_mean'])} runnable "
        f"on average): node {cpu['node']} (its event loop thread {cpu['node_loop_waiting_for_cpu']} s runnable but waiting for a CPU), "
        f"engine plugin {cpu['plugin']}, load generator {cpu['bench']}, probe {cpu['probe']}"
    )
    sampled = ", ".join(
        f"{kind} {v['cpu_s']} s in {v['processes']}" for kind, v in sorted(cpu["jobs_sampled"].items())
    )
    print(f"  jobs, sampled: {sampled or '-'}; reaped by the plugin: {cpu['jobs_reaped']} s")
    if report["errors"]:
        print(f"errors: {report['errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, help="workflows to submit (default 20; --quick: 4)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument(
        "--stages-per-workflow", type=int, default=2, help="independent stages each (default 2)"
    )
    parser.add_argument("--timeout", type=float, help="seconds the load may take (default 60; --quick: 12)")
    parser.add_argument("--quick", action="store_true", help="a run of about 15 s")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", help="record the node and plugin with py-spy")
    parser.add_argument(
        "--max-jobs",
        type=int,
        default=0,
        help="the environment's max_jobs (default 0: bounded by its 64 cores)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the node's data dir (and its log)")
    args = parser.parse_args(argv)
    opts = Options(
        workflows=args.workflows or (4 if args.quick else 20),
        clients=max(1, args.clients),
        stages=max(1, args.stages_per_workflow),
        timeout=args.timeout or (12.0 if args.quick else 60.0),
        as_json=args.json,
        py_spy=args.py_spy,
        keep=args.keep,
        max_jobs=max(0, args.max_jobs),
        loadavg_before=os.getloadavg()[0],
    )
    report = run(opts)
    if opts.as_json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
