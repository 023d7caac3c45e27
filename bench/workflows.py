"""Workflow throughput and latency under load of a node on the external_stub engine.

Starts its own ``python -m host`` in a temporary data dir (no dev chain), with two
external_stub environments: "bench" (64 cores, 64 GiB RAM, 64 GiB disk, no job cap
unless ``--max-jobs``) for the load, and "probe" (one job at a time) for the probe's
starts. Then:

* C client threads (each with its own key and :class:`c2d.client.Client`) submit
  many small free workflows of K independent stages (a trivial shell algorithm)
  as fast as they can, and poll ``GetComputeStatus(all)`` until every stage has
  ended or the deadline passes;
* a status probe, in a process of its own so that the load threads' GIL does not
  inflate its timings, calls the signed ``GetComputeStatus`` (one job id, the
  signing outside the timing) in a loop, alternating with ``grpc.health.v1``
  ``Health/Check`` against the node, before the load (idle) and during it;
* a start probe, in another process, calls the signed ``FreeStartCompute`` for a
  one-stage workflow in "probe" every 0.25 s (idle, then during the load) and
  stops it at once (untimed). "probe" runs one job at a time and a blocker stage
  holds that slot, so the probe's stages queue and never run: they measure the
  node's answer to a start without adding stages to the load.

Figures, each with its baseline from the same run: stages accepted per second and
completed per second; how many of the stages ended within the ``--timeout`` and
the time to the last; FreeStartCompute p50/p99 under load (the probe's, and the
load's own calls) against the idle node's; GetComputeStatus and Health/Check
p50/p99 under load against Health/Check on the idle node (the bare round trip
through the same server stack); the node's CPU per ended stage against its CPU
per idle Health/Check. Goals (issue 11; the exit status is 0 either way): at least
50 stages/s completed, every stage ended within 10 s, FreeStartCompute p99 < 50
ms, status p99 < 20 ms, Health/Check p99 < 10 ms, node CPU <= 10 ms per stage.

Also printed, for diagnosis: CPU seconds spent during the load by the node (and
how long its event loop thread sat runnable, waiting for a CPU), the engine
plugin, the jobs (shims, pods and algorithms, sampled from /proc by kind, and as
the plugin's reaped children, with its fork server's), this load generator and the probes;
and median per-phase times of the ended stages, from their status history. Every stage
requests the environment's minimum of each resource.

    python bench/workflows.py [--workflows N] [--clients C] [--stages-per-workflow K]
                              [--timeout S] [--max-jobs J] [--quick] [--json]
                              [--py-spy DIR] [--keep]

Defaults: 20 workflows x 2 stages from 4 clients, 60 s at most for the load
(about 50 s in all on two cores); ``--quick``: 4 workflows, 12 s (about 15 s).
Issue 11's second load: ``--workflows 40 --stages-per-workflow 5 --clients 8 --timeout 120``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
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
from benchlib import (
    Node,
    S,
    Signer,
    channel_options,
    cpu_seconds,
    fmt,
    machine_busy,
    met,
    min_resources,
    parent_of,
    percentile,
    run_delay_seconds,
    stage,
    stub_environments,
    summary_ms,
    time_health,
)
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from c2d import auth
from c2d.client import C2DError, Client, as_workflow
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc

ENV_ID = "bench"
PROBE_ENV_ID = "probe"
ALGORITHM = 'echo x > "$C2D_DATA/outputs/o"'
BLOCKER = "sleep 100000"  # holds the probe environment's one slot (until the stage's time limit)
GOAL_COMPLETED_PER_S = 50.0
GOAL_ALL_ENDED_S = 10.0
GOAL_START_P99_MS = 50.0
GOAL_STATUS_P99_MS = 20.0
GOAL_HEALTH_P99_MS = 10.0
GOAL_NODE_CPU_MS = 10.0
POLL_SECONDS = 2.0  # each client asks for all of its jobs this often
BASELINE_CALLS = 400
IDLE_STATUS_CALLS = 200
IDLE_START_CALLS = 20
PROBE_INTERVAL_SECONDS = 0.05  # 20 status calls and 20 health checks a second, at most
START_PROBE_INTERVAL_SECONDS = 0.25  # 4 probe starts a second, at most
MAX_STATUS_JOBS = 1000  # GetComputeStatus(all) answers at most this many jobs


def environments(max_jobs: int) -> str:
    """The stub's environments: "bench" for the load, "probe" (one job at a time) for the start probe."""
    return stub_environments(
        {"id": ENV_ID, "cpu": 64, "ram_gib": 64, "disk_gib": 64, "max_jobs": max_jobs},
        {"id": PROBE_ENV_ID, "cpu": 1, "ram_gib": 1, "disk_gib": 1, "max_jobs": 1},
    )


JOB_KINDS = (
    ("pods.configuration", "pod-configuration"),
    ("pods.publishing", "pod-publishing"),
    ("c2d_external_stub.shim", "shim"),
    # A shim forked by the plugin's fork server keeps the server's command line (and its job's folder).
    ("c2d_external_stub.forkserver", "shim"),
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


# ---------------------------------------------------------------- the probes (processes of their own)


def _probe_main(address: str, key: str, job_id: str, conn: Any) -> None:
    """The status probe, in a spawned process: baselines and idle status first, then samples until told to stop.

    Messages to ``conn``: ("ready", idle_results, times) after the idle phase, then,
    once it receives "stop", ("done", load_results, cpu, errors). It starts the load
    phase on "load".
    """
    results: dict[str, list[float]] = {}
    # 1. A trivial unary RPC on a tiny grpc server in this process: the machine's bare round trip.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as local:
        results["inprocess"] = time_health(health_pb2_grpc.HealthStub(local), BASELINE_CALLS)
    server.stop(None)

    channel = grpc.insecure_channel(address, options=channel_options())
    health_stub = health_pb2_grpc.HealthStub(channel)
    compute = compute_pb2_grpc.ComputeServiceStub(channel)
    # 2. Health/Check against the idle node: the baseline of the ratio.
    results["health_idle"] = time_health(health_stub, BASELINE_CALLS)
    # 3. The signed status call on the idle node.
    status = _StatusCaller(compute, key, job_id)
    results["status_idle"] = [status.call() for _ in range(IDLE_STATUS_CALLS)]
    conn.send(("ready", results, os.times()))
    if conn.recv() != "load":
        return
    before = os.times()
    load: dict[str, list[float]] = {"status_load": [], "health_load": []}
    request = health_pb2.HealthCheckRequest()
    errors: Counter[str] = Counter()
    next_at = time.monotonic()
    while not conn.poll():
        # Paced, so that the probe measures the node rather than loading it: a status call,
        # then a health check, every PROBE_INTERVAL_SECONDS (at once when the last ran late).
        next_at = max(next_at + PROBE_INTERVAL_SECONDS, time.monotonic())
        load["status_load"].append(status.call())
        started = time.perf_counter()
        try:
            health_stub.Check(request, timeout=30)
        except grpc.RpcError as exc:
            errors[f"Health/Check {exc.code().name}"] += 1
        load["health_load"].append(time.perf_counter() - started)
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.recv()
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    errors.update(status.errors)
    conn.send(("done", load, cpu, dict(errors)))
    channel.close()


class _StatusCaller:
    """GetComputeStatus(job_id), signed like the SDK signs it; only the RPC itself is timed."""

    def __init__(self, stub: compute_pb2_grpc.ComputeServiceStub, key: str, job_id: str) -> None:
        self.stub = stub
        self.signer = Signer(key)
        self.job_id = job_id
        self.errors: Counter[str] = Counter()

    def call(self) -> float:
        request = self.signer.sign(
            "GetComputeStatus", compute_pb2.GetComputeStatusRequest(job_id=self.job_id)
        )
        started = time.perf_counter()
        try:
            self.stub.GetComputeStatus(request, timeout=30)
        except grpc.RpcError as exc:
            self.errors[f"GetComputeStatus {exc.code().name}"] += 1
        return time.perf_counter() - started


def _start_probe_main(address: str, key: str, resources: list[dict[str, Any]], conn: Any) -> None:
    """The start probe, in a spawned process: FreeStartCompute on the idle node, then under load.

    Each start is a one-stage workflow in the probe environment, whose one slot a
    blocker holds: the stage queues, and is stopped at once (StopCompute, untimed).
    Messages: ("ready", idle_samples), then on "stop" ("done", load_samples, errors).
    """
    channel = grpc.insecure_channel(address, options=channel_options())
    stub = compute_pb2_grpc.ComputeServiceStub(channel)
    signer = Signer(key)
    doc = {"environment": PROBE_ENV_ID, "resources": resources, "stages": [stage(0, "true")]}
    wf = as_workflow(doc)
    errors: Counter[str] = Counter()

    def one() -> float | None:
        request = signer.sign("FreeStartCompute", compute_pb2.FreeStartComputeRequest(workflow=wf))
        started = time.perf_counter()
        try:
            reply = stub.FreeStartCompute(request, timeout=120)
        except grpc.RpcError as exc:
            errors[f"FreeStartCompute {exc.code().name}"] += 1
            return None
        took = time.perf_counter() - started
        stop = signer.sign("StopCompute", compute_pb2.StopComputeRequest(workflow_id=reply.workflow_id))
        try:
            stub.StopCompute(stop, timeout=120)
        except grpc.RpcError as exc:
            errors[f"StopCompute {exc.code().name}"] += 1
        return took

    idle = [t for t in (one() for _ in range(IDLE_START_CALLS)) if t is not None]
    conn.send(("ready", idle))
    if conn.recv() != "load":
        return
    load: list[float] = []
    next_at = time.monotonic()
    while not conn.poll():
        next_at = max(next_at + START_PROBE_INTERVAL_SECONDS, time.monotonic())
        took = one()
        if took is not None:
            load.append(took)
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.recv()
    conn.send(("done", load, dict(errors)))
    channel.close()


# ---------------------------------------------------------------- the load


@dataclass
class ClientResult:
    accepted_at: list[float] = field(default_factory=list)  # perf_counter when each start returned
    start_latency: list[float] = field(default_factory=list)
    stages_accepted: int = 0
    job_ids: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    jobs: dict[str, compute_pb2.JobInfo] = field(default_factory=dict)  # the last status seen


def workflow(stages: int, resources: list[dict[str, Any]], script: str = ALGORITHM) -> dict[str, Any]:
    return {
        "environment": ENV_ID,
        "resources": resources,
        "stages": [stage(i, script) for i in range(stages)],
    }


def run_client(
    address: str,
    workflows: int,
    stages: int,
    resources: list[dict[str, Any]],
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
    """Follows this client's stages (all of them in one call) until they have ended or time is up.

    The last poll falls at the deadline, so the count of stages ended in time is complete.
    """
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
    node = Node(data_dir, environments(opts.max_jobs))
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


def _wait_status(client: Client, job_id: str, wanted: int, timeout: float) -> compute_pb2.JobInfo:
    deadline = time.monotonic() + timeout
    while True:
        (job,) = client.status(job_id=job_id)
        if job.status == wanted:
            return job
        if job.terminal or time.monotonic() >= deadline:
            raise RuntimeError(f"job {job_id} is {job.status_text}, not {S.Name(wanted)}")
        time.sleep(0.2)


def _run(node: Node, opts: Options) -> dict[str, Any]:
    started = time.monotonic()
    env = node.wait_environment(ENV_ID)
    probe_env = node.wait_environment(PROBE_ENV_ID)
    _say(opts, f"node up in {time.monotonic() - started:.1f}s at {node.address} (data dir {node.data_dir})")
    resources = min_resources(env)
    probe_resources = min_resources(probe_env)

    # The probe's job: one finished stage of its own, so that GetComputeStatus has a real job to show.
    probe_key = auth.new_private_key()
    with Client(node.address, probe_key, timeout=60) as probe_client:
        (probe_job,) = probe_client.start(workflow(1, resources), free=True).job_ids
        first = probe_client.wait([probe_job], poll=0.2, timeout=120)[0]
        # The blocker: it holds the probe environment's one slot, so the start probe's stages queue.
        blocker = {"environment": PROBE_ENV_ID, "resources": probe_resources, "stages": [stage(0, BLOCKER)]}
        (blocker_job,) = probe_client.start(blocker, free=True).job_ids
        _wait_status(probe_client, blocker_job, S.JOB_STATUS_RUNNING, 120)
    _say(opts, f"probe job {probe_job}: {first.status_text}; blocker running; measuring baselines")

    # The node's CPU for one bare round trip: the baseline of its CPU per stage.
    health_cpu_before = cpu_seconds(node.pid)[0]
    health_calls = time_health(node.health, BASELINE_CALLS, warmup=0)
    node_cpu_per_health_ms = 1e3 * (cpu_seconds(node.pid)[0] - health_cpu_before) / len(health_calls)

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    probe = ctx.Process(target=_probe_main, args=(node.address, probe_key, probe_job, parent), daemon=True)
    probe.start()
    _, idle, _ = _from_probe(child, probe, 120)
    start_parent, start_child = ctx.Pipe()
    start_probe = ctx.Process(
        target=_start_probe_main,
        args=(node.address, auth.new_private_key(), probe_resources, start_parent),
        daemon=True,
    )
    start_probe.start()
    _, start_idle = _from_probe(start_child, start_probe, 120)

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
    start_child.send("load")
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
    start_child.send("stop")
    _, load, probe_cpu, probe_errors = _from_probe(child, probe, 60)
    _, start_load, start_errors = _from_probe(start_child, start_probe, 180)
    probe.join(10)
    start_probe.join(10)
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
    return _report(
        opts, idle, load, probe_cpu, Counter(probe_errors) + Counter(start_errors), results,
        load_start, load_wall, load_seconds, cpu_before, cpu_after, sampler,
        start_idle, start_load, node_cpu_per_health_ms,
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
        for server in fork_servers(pid):  # the shims it forked are its children, not the plugin's
            plugin_children += cpu_seconds(server)[1]
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


def fork_servers(plugin: int) -> list[int]:
    """The plugin's fork servers (external_stub's), which reap the shims they forked."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if (
                entry.name.isdigit()
                and parent_of(int(entry.name)) == plugin
                and b"c2d_external_stub.forkserver" in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
    return found


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
    probe_errors: Counter[str],
    results: list[ClientResult],
    load_start: float,
    load_wall: float,
    load_seconds: float,
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
    sampler: JobSampler,
    start_idle: list[float],
    start_load: list[float],
    node_cpu_per_health_ms: float,
) -> dict[str, Any]:
    accepted_at = [t for r in results for t in r.accepted_at]
    stages_accepted = sum(r.stages_accepted for r in results)
    accept_window = (max(accepted_at) - load_start) if accepted_at else 0.0
    jobs = [job for r in results for job in r.jobs.values()]
    ended = [job for job in jobs if job.terminal]
    finished_at = sorted(job.finished.ToNanoseconds() / 1e9 for job in ended if job.HasField("finished"))
    submitted = opts.workflows * opts.stages
    all_ended = len(ended) == stages_accepted and stages_accepted == submitted
    last_s = (finished_at[-1] - load_wall) if finished_at and all_ended else None
    window = last_s if last_s is not None else min(load_seconds, opts.timeout)
    ended_in_time = sum(1 for t in finished_at if t - load_wall <= opts.timeout)
    completed_per_s = len(ended) / window if window and window > 0 else 0.0
    accepted_per_s = stages_accepted / accept_window if accept_window > 0 else 0.0
    status_load = summary_ms(load["status_load"])
    health_load = summary_ms(load["health_load"])
    baseline = summary_ms(idle["health_idle"])
    start_probe_load = summary_ms(start_load)
    start_probe_idle = summary_ms(start_idle)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_before}
    cpu["probe"] = round(probe_cpu, 2)
    machine_total = cpu.pop("machine_total")
    cpu["machine_busy_percent"] = (
        round(100 * cpu.pop("machine_busy") / machine_total, 1) if machine_total else None
    )
    cpu["jobs_sampled"] = sampler.by_kind()
    runnable = sampler.running
    cpu["runnable_processes_mean"] = round(sum(runnable) / len(runnable), 1) if runnable else None
    node_cpu_per_stage = round(1e3 * cpu["node"] / len(ended), 1) if ended else None
    errors = Counter(e for r in results for e in r.errors)
    errors.update(probe_errors)
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
            "of": submitted,
            "all_ended": all_ended,
            "ended_within_timeout": ended_in_time,
            "last_ended_s": None if last_s is None else round(last_s, 3),
            "seconds": round(window, 3),
            "stages_per_s": round(completed_per_s, 2),
            "node_cpu_ms_per_stage": node_cpu_per_stage,
            "baseline_node_cpu_ms_per_health_check": round(node_cpu_per_health_ms, 3),
            "node_cpu_per_stage_over_health_check": ratio(node_cpu_per_stage, node_cpu_per_health_ms),
            "by_status": dict(Counter(job.status_text for job in ended)),
            "phases_median_ms": _phase_medians(ended),
        },
        "start": {
            "probe_load": start_probe_load,
            "probe_idle": start_probe_idle,
            "probe_p99_over_idle_p99": ratio(start_probe_load["p99_ms"], start_probe_idle["p99_ms"]),
        },
        "status": {
            "load": status_load,
            "idle": summary_ms(idle["status_idle"]),
            "errors": sum(v for k, v in probe_errors.items() if k.startswith("GetComputeStatus")),
        },
        "baseline": {
            "what": "grpc.health.v1 Health/Check against the idle node, before the load",
            **baseline,
            "inprocess": summary_ms(idle["inprocess"]),
            "node_health_under_load": health_load,
        },
        "status_p99_over_baseline_p99": ratio(status_load["p99_ms"], baseline["p99_ms"]),
        "health_p99_under_load_over_baseline_p99": ratio(health_load["p99_ms"], baseline["p99_ms"]),
        "goals": {
            "completed_50_per_s": completed_per_s >= GOAL_COMPLETED_PER_S,
            "all_ended_within_10s": last_s is not None and last_s < GOAL_ALL_ENDED_S,
            "start_p99_under_50ms": start_probe_load["p99_ms"] is not None
            and start_probe_load["p99_ms"] < GOAL_START_P99_MS,
            "status_p99_under_20ms": status_load["p99_ms"] is not None
            and status_load["p99_ms"] < GOAL_STATUS_P99_MS,
            "health_p99_under_10ms": health_load["p99_ms"] is not None
            and health_load["p99_ms"] < GOAL_HEALTH_P99_MS,
            "node_cpu_at_most_10ms_per_stage": node_cpu_per_stage is not None
            and node_cpu_per_stage <= GOAL_NODE_CPU_MS,
        },
        "cpu_seconds_during_load": {"wall": round(load_seconds, 2), **cpu},
        "errors": dict(errors),
    }
    return report


PHASES = {
    S.JOB_STATUS_QUEUED: "queued",
    S.JOB_STATUS_PROVISIONING: "provisioning",
    S.JOB_STATUS_RUNNING: "running",
    S.JOB_STATUS_PUBLISHING: "publishing",
}


def _phase_medians(jobs: list[compute_pb2.JobInfo]) -> dict[str, float | None]:
    """Median ms per phase: queued (accepted -> first later status), provisioning, running, publishing."""
    spans: dict[str, list[float]] = {name: [] for name in PHASES.values()}
    totals = []
    for job in jobs:
        events = [(e.status, e.time.ToNanoseconds() / 1e9) for e in job.history]
        if len(events) < 2:
            continue
        totals.append(events[-1][1] - events[0][1])
        for i, (status, at) in enumerate(events[:-1]):
            name = PHASES.get(status)
            if name is not None:
                spans[name].append(events[i + 1][1] - at)
    medians: dict[str, float | None] = {}
    for name, values in [*spans.items(), ("accepted_to_end", totals)]:
        value = percentile(values, 50)
        medians[name] = None if value is None else round(value * 1e3, 1)
    return medians


def _p(summary: dict[str, Any]) -> str:
    return f"{fmt(summary['p50_ms'])} / {fmt(summary['p99_ms'])} ms"


def print_table(report: dict[str, Any]) -> None:
    acc, done, st, base = report["accepted"], report["completed"], report["status"], report["baseline"]
    start = report["start"]
    goals = report["goals"]
    cfg = report["config"]
    timeout = cfg["timeout_s"]
    rows = [
        ("stages accepted/s (FreeStartCompute)", fmt(acc["stages_per_s"]),
         f"{acc['stages']} stages in {acc['seconds']:.2f}s"),
        ("stages completed/s", fmt(done["stages_per_s"]),
         f"{done['stages']}/{done['of']} ended in {done['seconds']:.2f}s"
         + ("" if done["all_ended"] else " (deadline: not all ended)")),
        (f"stages ended within {timeout:g} s", f"{done['ended_within_timeout']} of {done['of']}",
         "last ended " + (f"{done['last_ended_s']:.2f} s after the load began" if done["last_ended_s"] is not None
                          else "-: not all ended")),
        ("FreeStartCompute p50 / p99, probe, under load", _p(start["probe_load"]),
         f"n={start['probe_load']['n']}; one-stage workflow every {START_PROBE_INTERVAL_SECONDS:g} s"),
        ("FreeStartCompute p50 / p99, probe, idle node", _p(start["probe_idle"]),
         f"n={start['probe_idle']['n']} (baseline); ratio p99 {fmt(start['probe_p99_over_idle_p99'], 'x')}"),
        ("FreeStartCompute p50 / p99, the load's calls", _p(acc["start_call"]),
         f"n={acc['start_call']['n']} ({cfg['stages_per_workflow']} stages each, the clients' burst)"),
        ("GetComputeStatus p50 / p99, under load", _p(st["load"]), f"n={st['load']['n']}, errors {st['errors']}"),
        ("GetComputeStatus p50 / p99, idle node", _p(st["idle"]), f"n={st['idle']['n']}"),
        ("Health/Check p50 / p99, under load", _p(base["node_health_under_load"]),
         f"n={base['node_health_under_load']['n']}; max {fmt(base['node_health_under_load']['max_ms'], ' ms')}"),
        ("baseline: Health/Check, idle node", _p(base), f"n={base['n']} (the ratios' baseline)"),
        ("trivial RPC, in-process grpc server", _p(base["inprocess"]), f"n={base['inprocess']['n']}"),
        ("ratio status p99 / baseline p99", fmt(report["status_p99_over_baseline_p99"], "x"), ""),
        ("ratio Health/Check p99 under load / baseline", fmt(report["health_p99_under_load_over_baseline_p99"], "x"),
         ""),
        ("node CPU per ended stage", fmt(done["node_cpu_ms_per_stage"], " ms"),
         f"baseline: node CPU per idle Health/Check {fmt(done['baseline_node_cpu_ms_per_health_check'], ' ms')}"
         f" (ratio {fmt(done['node_cpu_per_stage_over_health_check'], 'x')})"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(
        f"workflows: {cfg['workflows']} x {cfg['stages_per_workflow']} stages, {cfg['clients']} clients, "
        f"{cfg['cpus']} CPUs, Python {cfg['python']}, algorithm: {cfg['algorithm']}"
    )
    print(
        f"environments: {cfg['environment']}; load average before the run: {cfg['loadavg_1m_before']:.2f}"
        " (other work on the machine skews every figure)"
    )
    print("-" * (width + vwidth + 50))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    print("-" * (width + vwidth + 50))
    goal_lines = [
        (f"goal >= {GOAL_COMPLETED_PER_S:g} stages/s completed", goals["completed_50_per_s"]),
        (f"goal every stage ended within {GOAL_ALL_ENDED_S:g} s", goals["all_ended_within_10s"]),
        (f"goal FreeStartCompute p99 < {GOAL_START_P99_MS:g} ms (probe)", goals["start_p99_under_50ms"]),
        (f"goal GetComputeStatus p99 < {GOAL_STATUS_P99_MS:g} ms", goals["status_p99_under_20ms"]),
        (f"goal Health/Check p99 < {GOAL_HEALTH_P99_MS:g} ms", goals["health_p99_under_10ms"]),
        (f"goal node CPU <= {GOAL_NODE_CPU_MS:g} ms per stage", goals["node_cpu_at_most_10ms_per_stage"]),
    ]
    gwidth = max(len(text) for text, _ in goal_lines)
    for text, ok in goal_lines:
        print(f"{text + ':':<{gwidth + 1}}  {met(ok)}")
    phases = done["phases_median_ms"]
    print(
        "median per stage (ms): "
        + ", ".join(f"{name} {fmt(value)}" for name, value in phases.items())
        + f"; by status: {done['by_status']}"
    )
    cpu = report["cpu_seconds_during_load"]
    print(
        f"CPU seconds during the load ({cpu['wall']:.1f}s wall x {cfg['cpus']} CPUs, machine "
        f"{fmt(cpu['machine_busy_percent'], '%')} busy, {fmt(cpu['runnable_processes_mean'])} runnable "
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
        help="the load environment's max_jobs (default 0: bounded by its 64 cores)",
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
