"""Memory (PSS) of 200 concurrent stub stages' processes, next to 200 bare ``sleep`` processes.

First the baselines, measured on this machine in this run: ``--stages`` bare
``sleep`` processes started by this script (the least a process per stage costs),
and one idle Python interpreter (``python -c`` waiting on stdin: what one more
interpreter per stage costs). Then its own ``python -m host`` (no dev chain) with
one external_stub environment sized to run every stage at once (cores, GiB of RAM
and disk = ``--stages``, no job cap), and ``--stages`` free stages (workflows of
``--stages-per-workflow``, from ``--clients`` clients) whose algorithm is ``sleep
--hold`` seconds: once each stage is RUNNING its processes stay put.

When every stage is RUNNING (or ``--timeout`` seconds have passed: then at the most
that ran at once), it sums the PSS (``Pss:`` of ``/proc/<pid>/smaps_rollup``: shared
pages split among their users, so the sum is what the processes cost together) of
every process of the node's jobs: found below the engine plugin and in the node's
data dir (shims run in sessions of their own), and below those; by kind (shim,
pod, sandbox, algorithm). The node's and the plugin's own PSS are shown beside.
Then it stops the node and the jobs.

Figures: stage processes' PSS in all and per running stage, against the bare
sleeps' in all and per process; the ratio. Goal (issue 11): under 1 GiB for 200
concurrent stages (5.12 MiB a stage); the exit status is 0 either way.

    python bench/memory.py [--stages N] [--stages-per-workflow K] [--clients C]
                           [--hold S] [--timeout S] [--quick] [--json] [--keep]

``--quick``: 20 stages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from benchlib import Node, cmdline, fmt, met, min_resources, pss_kib, stage, stub_environments

from c2d import auth
from c2d.client import C2DError, Client

ENV_ID = "bench"
GOAL_BYTES_PER_200 = 1 << 30
POLL_SECONDS = 2.0
SAMPLES = 3  # PSS readings one second apart once every stage runs; the largest counts
KINDS = (  # (marker in the command line, kind): the first that matches
    ("c2d_external_stub.shim", "shim"),
    ("pods.", "pod"),
    ("bwrap", "sandbox"),
    ("unshare", "sandbox"),
    ("setpriv", "sandbox"),
)


@dataclass
class Options:
    stages: int
    per_workflow: int
    clients: int
    hold: float
    timeout: float
    as_json: bool
    keep: bool


def _say(opts: Options, text: str) -> None:
    print(text, file=sys.stderr if opts.as_json else sys.stdout, flush=True)


def kind_of(pid: int) -> str:
    line = cmdline(pid)
    return next((kind for marker, kind in KINDS if marker in line), "algorithm")


def pss_of(pids: list[int]) -> tuple[int, int]:
    """(summed PSS in kB, processes read) of ``pids``; gone ones are skipped."""
    values = [v for v in (pss_kib(pid) for pid in pids) if v is not None]
    return sum(values), len(values)


# ---------------------------------------------------------------- baselines


def bare_sleeps(count: int) -> dict[str, Any]:
    """PSS of ``count`` bare ``sleep`` processes, started and ended here."""
    procs = [subprocess.Popen(["sleep", "600"]) for _ in range(count)]
    try:
        time.sleep(0.5)
        total, read = pss_of([p.pid for p in procs])
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    return {"processes": read, "pss_kib": total, "per_process_kib": round(total / read, 1) if read else None}


def idle_interpreter() -> dict[str, Any]:
    """PSS of one idle Python interpreter (this one's executable, ``-c`` reading stdin)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(1.0)
        total, _ = pss_of([proc.pid])
    finally:
        proc.kill()
        proc.wait()
    return {"pss_kib": total}


# ---------------------------------------------------------------- the stages


@dataclass
class Submitter:
    workflows: int
    errors: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)


def run(opts: Options) -> dict[str, Any]:
    sleeps = bare_sleeps(opts.stages)
    interpreter = idle_interpreter()
    _say(opts, f"baselines: {opts.stages} bare sleeps {sleeps['pss_kib'] / 1024:.1f} MiB PSS")
    root = Path(tempfile.mkdtemp(prefix="c2d-bench-memory-"))
    n = opts.stages
    node = Node(
        root / "node",
        stub_environments({"id": ENV_ID, "cpu": n, "ram_gib": n, "disk_gib": n, "max_jobs": 0}),
    )
    try:
        return _run(node, opts, sleeps, interpreter)
    finally:
        node.stop()
        if opts.keep:
            _say(opts, f"data dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _run(node: Node, opts: Options, sleeps: dict[str, Any], interpreter: dict[str, Any]) -> dict[str, Any]:
    env = node.wait_environment(ENV_ID)
    script = f"sleep {opts.hold:g}"
    workflows = -(-opts.stages // opts.per_workflow)
    keys = [auth.new_private_key() for _ in range(opts.clients)]
    per_client = [workflows // opts.clients + (i < workflows % opts.clients) for i in range(opts.clients)]
    doc = {
        "environment": ENV_ID,
        "resources": min_resources(env),
        "stages": [stage(i, script) for i in range(opts.per_workflow)],
        "maxJobDuration": int(opts.hold) + 60,
    }
    subs = [Submitter(count) for count in per_client]
    started = time.monotonic()
    threads = [
        threading.Thread(target=_submit_with, args=(node.address, key, doc, sub), daemon=True)
        for key, sub in zip(keys, subs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted = sum(len(s.job_ids) for s in subs)
    errors = [e for s in subs for e in s.errors]
    _say(opts, f"{submitted} stages submitted in {time.monotonic() - started:.1f}s; waiting until all run")
    most_running = 0
    peak: dict[str, Any] = {}  # the most the stage processes held while stages started (pods included)
    statuses: Counter[str] = Counter()
    deadline = started + opts.timeout
    said = time.monotonic()
    while time.monotonic() < deadline:
        statuses = _statuses(node, keys)
        most_running = max(most_running, statuses.get("running", 0))
        ramp = _sample(node)
        if ramp["stage_pss_kib"] > peak.get("stage_pss_kib", -1):
            peak = ramp
        if statuses.get("running", 0) >= submitted or any(
            s not in ("queued", "provisioning", "running") for s in statuses
        ):
            break
        if time.monotonic() - said >= 30:
            _say(opts, f"  after {time.monotonic() - started:.0f}s: {dict(statuses)}")
            said = time.monotonic()
        time.sleep(POLL_SECONDS)
    reached = time.monotonic() - started
    best: dict[str, Any] = {}
    for _ in range(SAMPLES):
        sample = _sample(node)
        if sample["stage_pss_kib"] >= best.get("stage_pss_kib", -1):
            best = sample
        time.sleep(1.0)
    running = statuses.get("running", 0)
    return report(
        opts, sleeps, interpreter, best, peak, running, most_running, submitted, reached, statuses, errors
    )


def _submit_with(address: str, key: str, doc: dict[str, Any], sub: Submitter) -> None:
    with Client(address, key, timeout=300) as client:
        for _ in range(sub.workflows):
            try:
                sub.job_ids.extend(client.start(doc, free=True).job_ids)
            except C2DError as exc:
                sub.errors.append(str(exc))


def _statuses(node: Node, keys: list[str]) -> Counter[str]:
    statuses: Counter[str] = Counter()
    for key in keys:
        with Client(node.address, key, timeout=300) as client, contextlib.suppress(C2DError):
            for job in client.status(all=True):
                statuses[job.status_text] += 1
    return statuses


def _sample(node: Node) -> dict[str, Any]:
    pids = sorted(node.job_processes())
    kinds: dict[str, dict[str, int]] = {}
    total = 0
    for pid in pids:
        value = pss_kib(pid)
        if value is None:
            continue
        entry = kinds.setdefault(kind_of(pid), {"processes": 0, "pss_kib": 0})
        entry["processes"] += 1
        entry["pss_kib"] += value
        total += value
    plugin, _ = pss_of(node.plugin_pids())
    own, _ = pss_of([node.pid])
    return {"stage_pss_kib": total, "by_kind": kinds, "node_pss_kib": own, "plugin_pss_kib": plugin}


def report(
    opts: Options,
    sleeps: dict[str, Any],
    interpreter: dict[str, Any],
    sample: dict[str, Any],
    peak: dict[str, Any],
    running: int,
    most_running: int,
    submitted: int,
    reached: float,
    statuses: Counter[str],
    errors: list[str],
) -> dict[str, Any]:
    total = sample["stage_pss_kib"]
    per_stage = total / running if running else None
    # The most the stage processes held in any reading: all running, or while pods still ran.
    most_kib = max(total, peak.get("stage_pss_kib") or 0)
    return {
        "config": {
            "stages": opts.stages,
            "stages_per_workflow": opts.per_workflow,
            "clients": opts.clients,
            "algorithm": f"sleep {opts.hold:g}",
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
        },
        "stages": {
            "submitted": submitted,
            "running_when_measured": running,
            "most_running": most_running,
            "seconds_to_measure": round(reached, 1),
            "statuses": dict(statuses),
        },
        "stage_processes": {
            "pss_kib": total,
            "per_stage_kib": None if per_stage is None else round(per_stage, 1),
            "by_kind": sample["by_kind"],
        },
        "peak_while_starting": {"pss_kib": peak.get("stage_pss_kib"), "by_kind": peak.get("by_kind", {})},
        "node_pss_kib": sample["node_pss_kib"],
        "plugin_pss_kib": sample["plugin_pss_kib"],
        "baseline_sleeps": sleeps,
        "baseline_interpreter": interpreter,
        "stage_over_sleeps": round(total / sleeps["pss_kib"], 1) if sleeps["pss_kib"] and total else None,
        "goal": {
            "bytes_for_200": GOAL_BYTES_PER_200,
            "most_bytes": most_kib * 1024,
            "running_scaled_to_200_bytes": None if per_stage is None else int(per_stage * 200 * 1024),
            # Only a run of 200 stages or more, all running at once, can meet it.
            "met": running == opts.stages >= 200 and most_kib * 1024 < GOAL_BYTES_PER_200,
        },
        "errors": errors,
    }


def _mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:,.1f} MiB"


def _kinds(by_kind: dict[str, dict[str, int]]) -> str:
    return ", ".join(
        f"{kind} {_mib(v['pss_kib'])} in {v['processes']}" for kind, v in sorted(by_kind.items())
    )


def print_report(rep: dict[str, Any]) -> None:
    st, proc = rep["stages"], rep["stage_processes"]
    sleeps, interp = rep["baseline_sleeps"], rep["baseline_interpreter"]
    print()
    print(
        f"{rep['config']['stages']} stages running `{rep['config']['algorithm']}`, {rep['config']['cpus']} CPUs, "
        f"load average {rep['config']['loadavg_1m']:.2f}; {st['running_when_measured']} running when measured "
        f"({st['seconds_to_measure']} s after the first start; statuses {st['statuses']})"
    )
    kinds = _kinds(proc["by_kind"])
    peak_kinds = _kinds(rep["peak_while_starting"]["by_kind"])
    rows = [
        ("stage processes, PSS", _mib(proc["pss_kib"]), kinds or "-"),
        ("  per running stage", _mib(proc["per_stage_kib"]), ""),
        ("stage processes, peak while starting", _mib(rep["peak_while_starting"]["pss_kib"]), peak_kinds or "-"),
        (f"baseline: {sleeps['processes']} bare sleeps, PSS", _mib(sleeps["pss_kib"]),
         f"{fmt(sleeps['per_process_kib'], ' kB')} each"),
        ("ratio stage processes / bare sleeps", fmt(rep["stage_over_sleeps"], "x"), ""),
        ("one idle Python interpreter, PSS", _mib(interp["pss_kib"]), "for scale"),
        ("node, PSS", _mib(rep["node_pss_kib"]), ""),
        ("engine plugin, PSS", _mib(rep["plugin_pss_kib"]), ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    goal = rep["goal"]
    scaled = goal["running_scaled_to_200_bytes"]
    print(
        f"goal < 1 GiB for 200 concurrent stages, the larger reading (here {goal['most_bytes'] / (1 << 30):.2f} GiB"
        f" for {st['running_when_measured']} stages; all running, scaled to 200: "
        f"{fmt(None if scaled is None else scaled / (1 << 30), ' GiB')}): "
        f"{met(goal['met'])}"
    )
    if rep["errors"]:
        print(f"errors: {rep['errors'][:5]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=int, help="concurrent stages (default 200; --quick: 20)")
    parser.add_argument(
        "--stages-per-workflow", type=int, default=10, help="stages per workflow (default 10)"
    )
    parser.add_argument("--clients", type=int, default=4, help="clients submitting (default 4)")
    parser.add_argument(
        "--hold", type=float, default=540.0, help="seconds each algorithm sleeps (default 540)"
    )
    parser.add_argument(
        "--timeout", type=float, default=480.0, help="seconds to wait for all to run (default 480)"
    )
    parser.add_argument("--quick", action="store_true", help="20 stages")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the node's data dir (and its log)")
    args = parser.parse_args(argv)
    opts = Options(
        stages=max(1, args.stages or (20 if args.quick else 200)),
        per_workflow=max(1, args.stages_per_workflow),
        clients=max(1, args.clients),
        hold=args.hold,
        timeout=min(args.timeout, args.hold - 30),
        as_json=args.json,
        keep=args.keep,
    )
    try:
        rep = run(opts)
    except (C2DError, grpc.RpcError, RuntimeError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    if opts.as_json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
