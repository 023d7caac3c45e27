"""GetComputeStatus(all) for an owner with 1,000 ended jobs, next to one job's status and Health/Check.

Starts its own ``python -m host`` (no dev chain) with one external_stub environment,
then gets it where the figure needs it through the public API only: one owner (a key
of its own) starts ``--jobs`` stages (default 1,000) as free workflows of
``--stages-per-workflow`` independent stages (default 50), each running
``echo x > "$C2D_DATA/outputs/o"``, and waits until every one has ended; so each job
has a full status history and results (its output and its logs). With ``--state
DIR`` the filled node is kept in DIR and reused by the next run (filling 1,000
stages takes minutes where the stub does about one stage a second). A state dir
belongs to the commit that filled it: give each commit its own.

Then, on the idle node, with every request signed before the clock starts:

* ``GetComputeStatus(all=true)`` for the owner, ``--calls`` times (default 20);
* baselines of the same run: ``GetComputeStatus(job_id)`` for one of those jobs
  (same owner, same signature check, one job's work) and ``grpc.health.v1``
  ``Health/Check`` (the bare round trip through the node's server stack).

Figures: p50 / p99 of each, the all-jobs call per job (p50 / jobs), its ratio to the
one-job call, the reply's size. Goal (issue 11): the all-jobs call at most 50 ms
(p50); the exit status is 0 either way.

    python bench/status_all.py [--jobs N] [--stages-per-workflow K] [--max-jobs J]
                               [--calls C] [--state DIR] [--quick] [--json] [--keep]

``--quick``: 100 jobs, 10 calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from benchlib import (
    Node,
    Signer,
    fmt,
    met,
    min_resources,
    stage,
    stub_environments,
    summary_ms,
    time_health,
)

from c2d import auth
from c2d.client import C2DError, Client
from c2d.compute.v1 import compute_pb2

ENV_ID = "bench"
ALGORITHM = 'echo x > "$C2D_DATA/outputs/o"'
GOAL_MS = 50.0
HEALTH_CALLS = 400
ONE_JOB_CALLS = 200
FILL_POLL_SECONDS = 5.0


@dataclass
class Options:
    jobs: int
    stages: int
    max_jobs: int
    calls: int
    state: Path | None
    as_json: bool
    keep: bool
    fill_timeout: float


def _say(opts: Options, text: str) -> None:
    print(text, file=sys.stderr if opts.as_json else sys.stdout, flush=True)


def environments(max_jobs: int) -> str:
    return stub_environments({"id": ENV_ID, "cpu": 64, "ram_gib": 64, "disk_gib": 64, "max_jobs": max_jobs})


def fill(node: Node, client: Client, opts: Options) -> list[compute_pb2.JobInfo]:
    """Starts the owner's missing stages and waits until all of them have ended."""
    env = node.wait_environment(ENV_ID)
    resources = min_resources(env)
    have = len(client.status(all=True))
    missing = opts.jobs - have
    started = time.monotonic()
    while missing > 0:
        count = min(opts.stages, missing)
        doc = {
            "environment": ENV_ID,
            "resources": resources,
            "stages": [stage(i, ALGORITHM) for i in range(count)],
        }
        client.start(doc, free=True)
        missing -= count
    if have < opts.jobs:
        _say(opts, f"started {opts.jobs - have} stages; waiting for them to end")
    said = time.monotonic()
    while True:
        jobs = client.status(all=True)
        ended = sum(1 for job in jobs if job.terminal)
        if ended == len(jobs) >= opts.jobs:
            if have < opts.jobs:
                _say(opts, f"{ended} jobs ended, filled in {time.monotonic() - started:.0f}s")
            return jobs
        if time.monotonic() - started > opts.fill_timeout:
            raise RuntimeError(f"only {ended} of {len(jobs)} jobs ended in {opts.fill_timeout:g}s")
        if time.monotonic() - said >= 30:
            _say(opts, f"  {ended} of {len(jobs)} ended after {time.monotonic() - started:.0f}s")
            said = time.monotonic()
        time.sleep(FILL_POLL_SECONDS)


def wait_quiet(node: Node, timeout: float = 120) -> None:
    """Until no process of the node's jobs is left (the engine has destroyed them), so nothing else runs."""
    deadline = time.monotonic() + timeout
    while node.job_processes() and time.monotonic() < deadline:
        time.sleep(0.5)


def time_status(node: Node, signer: Signer, count: int, **target: Any) -> tuple[list[float], int, int]:
    """``count`` signed GetComputeStatus calls (signed before the clock); (seconds, jobs, reply bytes)."""
    samples = []
    jobs = size = 0
    for _ in range(count):
        request = signer.sign("GetComputeStatus", compute_pb2.GetComputeStatusRequest(**target))
        started = time.perf_counter()
        reply = node.compute.GetComputeStatus(request, timeout=120)
        samples.append(time.perf_counter() - started)
        jobs, size = len(reply.jobs), reply.ByteSize()
    return samples, jobs, size


def run(opts: Options) -> dict[str, Any]:
    root = opts.state or Path(tempfile.mkdtemp(prefix="c2d-bench-status-"))
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / "owner_key"
    if not key_file.exists():
        key_file.write_text(auth.new_private_key())
    key = key_file.read_text().strip()
    node = Node(root / "node", environments(opts.max_jobs))
    try:
        node.wait_environment(ENV_ID)
        with Client(node.address, key, timeout=300) as client:
            jobs = fill(node, client, opts)
        wait_quiet(node)
        return measure(node, key, jobs, opts)
    finally:
        node.stop()
        if opts.state is not None or opts.keep:
            _say(opts, f"state kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def measure(node: Node, key: str, jobs: list[compute_pb2.JobInfo], opts: Options) -> dict[str, Any]:
    signer = Signer(key)
    with_output = sum(1 for job in jobs if any(f.kind == compute_pb2.RESULT_KIND_OUTPUT for f in job.results))
    one_job = jobs[0].job_id
    for _ in range(3):  # warm the channel and the node's caches alike for every call
        time_status(node, signer, 1, all=True)
        time_status(node, signer, 1, job_id=one_job)
    health = time_health(node.health, HEALTH_CALLS)
    single, _, single_bytes = time_status(node, signer, ONE_JOB_CALLS, job_id=one_job)
    every, count, every_bytes = time_status(node, signer, opts.calls, all=True)
    every_s = summary_ms(every)
    single_s = summary_ms(single)
    p50 = every_s["p50_ms"]
    return {
        "config": {
            "jobs": opts.jobs,
            "stages_per_workflow": opts.stages,
            "environment": environments(opts.max_jobs),
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
        },
        "owner": {
            "jobs": len(jobs),
            "by_status": dict(Counter(job.status_text for job in jobs)),
            "with_output": with_output,
            "results": sum(len(job.results) for job in jobs),
            "history_events": sum(len(job.history) for job in jobs),
        },
        "status_all": {**every_s, "jobs_in_reply": count, "reply_bytes": every_bytes},
        "per_job_ms": None if p50 is None or not count else round(p50 / count, 4),
        "baseline_status_one_job": {**single_s, "reply_bytes": single_bytes},
        "baseline_health": summary_ms(health),
        "all_over_one_job_p50": None
        if p50 is None or not single_s["p50_ms"]
        else round(p50 / single_s["p50_ms"], 1),
        "goal": {"max_ms": GOAL_MS, "met": p50 is not None and p50 <= GOAL_MS},
    }


def print_report(rep: dict[str, Any]) -> None:
    own, every, one, health = (
        rep["owner"],
        rep["status_all"],
        rep["baseline_status_one_job"],
        rep["baseline_health"],
    )
    print()
    print(
        f"owner: {own['jobs']} jobs {own['by_status']}, {own['with_output']} with an output, "
        f"{own['results']} results, {own['history_events']} history events; "
        f"{rep['config']['cpus']} CPUs, load average {rep['config']['loadavg_1m']:.2f}"
    )
    rows = [
        ("GetComputeStatus(all), p50 / p99", f"{fmt(every['p50_ms'])} / {fmt(every['p99_ms'])} ms",
         f"n={every['n']}, {every['jobs_in_reply']} jobs, {every['reply_bytes']:,} bytes; "
         f"{fmt(rep['per_job_ms'], ' ms')} per job"),
        ("baseline: GetComputeStatus(job_id)", f"{fmt(one['p50_ms'])} / {fmt(one['p99_ms'])} ms",
         f"n={one['n']}, {one['reply_bytes']:,} bytes"),
        ("baseline: Health/Check", f"{fmt(health['p50_ms'])} / {fmt(health['p99_ms'])} ms", f"n={health['n']}"),
        ("ratio all / one job (p50)", fmt(rep["all_over_one_job_p50"], "x"), ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    print(f"goal GetComputeStatus(all) p50 <= {GOAL_MS:g} ms: {met(rep['goal']['met'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, help="the owner's jobs (default 1000; --quick: 100)")
    parser.add_argument(
        "--stages-per-workflow", type=int, default=50, help="stages per workflow (default 50)"
    )
    parser.add_argument("--max-jobs", type=int, default=16, help="the environment's max_jobs (default 16)")
    parser.add_argument(
        "--calls", type=int, help="GetComputeStatus(all) calls timed (default 20; --quick: 10)"
    )
    parser.add_argument("--state", type=Path, metavar="DIR", help="keep the filled node here and reuse it")
    parser.add_argument("--fill-timeout", type=float, default=3600.0, help="seconds the filling may take")
    parser.add_argument("--quick", action="store_true", help="100 jobs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the node's data dir (and its log)")
    args = parser.parse_args(argv)
    opts = Options(
        jobs=args.jobs or (100 if args.quick else 1000),
        stages=max(1, args.stages_per_workflow),
        max_jobs=max(0, args.max_jobs),
        calls=max(1, args.calls or (10 if args.quick else 20)),
        state=args.state.resolve() if args.state else None,
        as_json=args.json,
        keep=args.keep,
        fill_timeout=args.fill_timeout,
    )
    try:
        report = run(opts)
    except (C2DError, grpc.RpcError, RuntimeError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    if opts.as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
