"""One free one-stage job through the node's Ocean-compatible HTTP gateway, next to the same job through gRPC.

Starts its own ``python -m host`` (no dev chain) with one external_stub environment and
its HTTP listener on a free port, and registers ``examples/dataset.json`` as the
operator (data root ``examples/data``, as in the README's quick start). Then, one after
another and interleaved (the face that goes first alternates from run to run), the same
job: one stage whose algorithm counts the dataset's lines into an output file.

* gateway: ``POST /api/services/freeCompute`` (signed as ocean.js signs: keccak256 of
  consumerAddress + nonce + "freeStartCompute", personal-signed), then
  ``GET /api/services/compute?consumerAddress=&jobId=`` every ``--poll`` seconds, unsigned
  as ocean.js asks, until the job is no longer running; over one keep-alive HTTP
  connection, as ocean.js's fetch keeps one;
* gRPC: ``FreeStartCompute``, then the signed ``GetComputeStatus(job_id)`` every
  ``--poll`` seconds until the stage is terminal, over the public API's raw stubs.

Each face has a consumer key of its own; every start is signed before the clock starts
(a status poll is signed inside the loop, as a client must). Each run is timed from just
before the start call (client clock) to (a) the stage's recorded finished time (node
clock, same machine: ``dateFinished`` on the gateway, ``finished`` on gRPC) and (b) the
first poll that saw it ended. Between runs the bench waits until the stage's processes
are gone, so that no teardown overlaps the next run.

Figures: median and p90 of each face over ``--runs`` (default 10; after ``--warmup``
runs of each that are not counted, default 1), the ratios gateway / gRPC, and whether
the gateway meets the goal of at most 1.10x the gRPC time; and, paired run by run (each
gateway run against the gRPC run beside it, which shared the machine's load of the
moment), in how many runs the gateway took longer and by how much. To find where the time goes:
the start call and a status poll of each face (medians), and the median time the stage
spent in each status of its history (read over gRPC once the run is over, untimed). For
reference it prints ocean-node 3.1's median for the same trivial job on this kind of
machine (a figure given, not measured here). The exit status is 0 whether or not the
goal is met.

    python bench/ocean_gateway.py [--runs N] [--warmup W] [--poll S] [--quick] [--json] [--keep]

``--quick``: 3 runs (+1 warm-up) of each. About 30 s on two cores with the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import grpc
from benchlib import Node, Signer, free_port, met, percentile, stub_environments
from eth_hash.auto import keccak

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2

ROOT = Path(__file__).resolve().parent.parent
DATASET_FILE = ROOT / "examples" / "dataset.json"
DATA_ROOT = ROOT / "examples" / "data"
ENV_ID = "bench"
ALGORITHM = 'wc -l < "$C2D_DATA/inputs/0/numbers.csv" > "$C2D_DATA/outputs/lines.txt"'
CONTAINER = {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1.36"}
API = "/api/services"
GOAL_RATIO = 1.10
# ocean-node 3.1, the same trivial job on this kind of machine: a figure given, not measured here.
OCEAN_NODE_MEDIAN_S = 11.2
OCEAN_FINISHED = 70
S = common_pb2.JobStatus


# ---------------------------------------------------------------- small helpers


def median(values: list[float]) -> float | None:
    return percentile(values, 50)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 1)


def status_name(status: int) -> str:
    return S.Name(status).removeprefix("JOB_STATUS_").lower()


def next_nonce(signer: Signer) -> int:
    """The key's next nonce (one counter for both faces: the node keeps one per address)."""
    signer.nonce = max(auth.new_nonce(), signer.nonce + 1)
    return signer.nonce


def ocean_signature(key: str, address: str, nonce: int, command: str) -> str:
    """Ocean's signature, as ocean.js makes it: keccak256(address + nonce + command), its 32 bytes
    signed as a personal message."""
    digest = keccak(f"{address}{nonce}{command}".encode())
    return "0x" + auth.sign_text(key, digest).hex()


# ---------------------------------------------------------------- the gateway's HTTP


class OceanHTTP:
    """One keep-alive HTTP connection to the node's Ocean routes (what ocean.js's fetch keeps)."""

    def __init__(self, address: str, timeout: float = 30) -> None:
        host, _, port = address.rpartition(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON); reconnects once when the server closed an idle connection."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                return response.status, json.loads(response.read() or b"null")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def wait_http(gateway: OceanHTTP, node: Node, timeout: float = 60) -> dict[str, Any]:
    """The node's Ocean root (``GET /``) once its HTTP listener answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"the node exited with {node.process.returncode}; see {node.log_path}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, root = gateway.call("GET", "/")
            if status == 200 and isinstance(root, dict):
                return root
        gateway.close()
        time.sleep(0.05)
    raise RuntimeError(f"the node's HTTP listener did not answer in {timeout:g}s; see {node.log_path}")


# ---------------------------------------------------------------- one run of each face


@dataclass
class Consumer:
    """A consumer key, its address and its nonces."""

    key: str
    address: str
    signer: Signer

    @classmethod
    def new(cls) -> Consumer:
        key = auth.new_private_key()
        return cls(key, auth.address_of(key), Signer(key))


def gateway_run(
    gateway: OceanHTTP, consumer: Consumer, dataset: dict[str, Any], poll: float
) -> dict[str, Any]:
    """POST freeCompute, then GET compute every ``poll`` seconds until the job is no longer running."""
    nonce = next_nonce(consumer.signer)
    body = {
        "environment": ENV_ID,
        "datasets": [{"documentId": dataset["did"], "serviceId": dataset["services"][0]["serviceId"]}],
        "algorithm": {"meta": {"rawcode": ALGORITHM, "container": {**CONTAINER, "checksum": ""}}},
        "consumerAddress": consumer.address,
        "nonce": str(nonce),
        "signature": ocean_signature(consumer.key, consumer.address, nonce, "freeStartCompute"),
    }
    t0 = time.time()
    started = time.perf_counter()
    status, reply = gateway.call("POST", f"{API}/freeCompute", body)
    start_call = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"freeCompute answered {status}: {reply}")
    job_id = reply[0]["jobId"]
    query = f"{API}/compute?" + urlencode({"consumerAddress": consumer.address, "jobId": job_id})
    polls: list[float] = []
    while True:
        at = time.perf_counter()
        status, reply = gateway.call("GET", query)
        polls.append(time.perf_counter() - at)
        if status != 200:
            raise RuntimeError(f"GET compute answered {status}: {reply}")
        (job,) = reply
        if not job["isRunning"]:
            observed = time.perf_counter() - started
            break
        time.sleep(poll)
    finished = float(job["dateFinished"]) if job.get("dateFinished") else None
    return {
        "job_id": job_id,
        "t0": t0,
        "seconds": None if finished is None else finished - t0,
        "observed_seconds": observed,
        "start_call_seconds": start_call,
        "poll_seconds": polls,
        "status": job["statusText"],
        "ok": job["status"] == OCEAN_FINISHED and (job.get("terminationDetails") or {}).get("exitCode") == 0,
    }


def grpc_run(node: Node, consumer: Consumer, dataset: dict[str, Any], poll: float) -> dict[str, Any]:
    """FreeStartCompute, then the signed GetComputeStatus(job_id) every ``poll`` seconds until terminal."""
    flow = compute_pb2.Workflow(
        environment_id=ENV_ID,
        stages=[
            compute_pb2.Stage(
                index=0,
                input=[
                    compute_pb2.StageInput(
                        index=0, did=dataset["did"], service_id=dataset["services"][0]["serviceId"]
                    )
                ],
                algorithm=compute_pb2.Algorithm(
                    rawcode=ALGORITHM,
                    container=compute_pb2.AlgorithmContainer(
                        entrypoint=CONTAINER["entrypoint"], image=CONTAINER["image"], tag=CONTAINER["tag"]
                    ),
                ),
            )
        ],
    )
    stub = node.compute
    request = consumer.signer.sign("FreeStartCompute", compute_pb2.FreeStartComputeRequest(workflow=flow))
    t0 = time.time()
    started = time.perf_counter()
    reply = stub.FreeStartCompute(request, timeout=60)
    start_call = time.perf_counter() - started
    job_id = reply.stages[0].job_id
    polls: list[float] = []
    while True:
        at = time.perf_counter()
        status = consumer.signer.sign("GetComputeStatus", compute_pb2.GetComputeStatusRequest(job_id=job_id))
        (job,) = stub.GetComputeStatus(status, timeout=60).jobs
        polls.append(time.perf_counter() - at)
        if job.terminal:
            observed = time.perf_counter() - started
            break
        time.sleep(poll)
    finished = job.finished.ToNanoseconds() / 1e9 if job.HasField("finished") else None
    return {
        "job_id": job_id,
        "t0": t0,
        "seconds": None if finished is None else finished - t0,
        "observed_seconds": observed,
        "start_call_seconds": start_call,
        "poll_seconds": polls,
        "status": job.status_text,
        "ok": job.status == S.JOB_STATUS_FINISHED and job.exit_code == 0,
    }


def phases(node: Node, consumer: Consumer, job_id: str, t0: float) -> dict[str, float]:
    """The time the stage spent in each status of its history (read over gRPC, untimed)."""
    request = consumer.signer.sign("GetComputeStatus", compute_pb2.GetComputeStatusRequest(job_id=job_id))
    (job,) = node.compute.GetComputeStatus(request, timeout=60).jobs
    history = [(e.status, e.time.ToNanoseconds() / 1e9) for e in job.history]
    if not history:
        return {}
    spans = {"start call -> " + status_name(history[0][0]): history[0][1] - t0}
    for (status, at), (_, following) in itertools.pairwise(history):
        spans[status_name(status)] = spans.get(status_name(status), 0.0) + following - at
    if job.HasField("finished"):
        end = job.finished.ToNanoseconds() / 1e9
        if abs(end - history[-1][1]) >= 0.0005:
            spans[f"{status_name(history[-1][0])} event -> finished time"] = end - history[-1][1]
    return spans


def settle(node: Node, timeout: float = 10) -> float:
    """Waits until no process of the node's jobs is left (the stage torn down); the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and node.job_processes():
        time.sleep(0.05)
    return time.monotonic() - started


# ---------------------------------------------------------------- the bench


@dataclass
class Options:
    runs: int
    warmup: int
    poll: float
    as_json: bool
    keep: bool


def _say(opts: Options, text: str) -> None:
    print(text, file=sys.stderr if opts.as_json else sys.stdout, flush=True)


def environments() -> str:
    return stub_environments({"id": ENV_ID, "cpu": 2, "ram_gib": 4, "disk_gib": 2})


def run(opts: Options) -> dict[str, Any]:
    loadavg_before = os.getloadavg()[0]
    dataset = json.loads(DATASET_FILE.read_text())
    data_dir = Path(tempfile.mkdtemp(prefix="c2d-bench-ocean-"))
    http_address = f"127.0.0.1:{free_port()}"
    node = Node(
        data_dir / "node",
        environments(),
        {"C2D_HTTP__LISTEN": http_address, "C2D_ASSETS__DATA_ROOT": str(DATA_ROOT)},
    )
    gateway = OceanHTTP(http_address)
    try:
        started = time.monotonic()
        node.wait_environment(ENV_ID)
        root = wait_http(gateway, node)
        with Client(node.address, node.node_key()) as operator:
            operator.register_asset(dataset, replace=True)
        _say(
            opts,
            f"node up in {time.monotonic() - started:.1f}s: gRPC {node.address}, HTTP {http_address} "
            f"({root.get('software')} {root.get('version')}); {dataset['did']} registered "
            f"(data dir {node.data_dir})",
        )
        ocean, direct = Consumer.new(), Consumer.new()
        runs: dict[str, list[dict[str, Any]]] = {"gateway": [], "grpc": []}
        for i in range(opts.warmup + opts.runs):
            counted = i >= opts.warmup
            faces = ("gateway", "grpc") if i % 2 == 0 else ("grpc", "gateway")
            this: dict[str, dict[str, Any]] = {}
            for face in faces:
                if face == "gateway":
                    one = gateway_run(gateway, ocean, dataset, opts.poll)
                    one["phases"] = phases(node, ocean, one["job_id"], one["t0"])
                else:
                    one = grpc_run(node, direct, dataset, opts.poll)
                    one["phases"] = phases(node, direct, one["job_id"], one["t0"])
                one["settle_seconds"] = settle(node)
                this[face] = one
                if counted:
                    runs[face].append(one)
            label = f"run {i + 1 - opts.warmup}" if counted else f"warm-up {i + 1}"
            _say(
                opts,
                f"{label}: "
                + ", ".join(
                    f"{face} {_fmt(ms(this[face]['seconds']), '')} / {_fmt(ms(this[face]['observed_seconds']))}"
                    f" ({this[face]['status']})"
                    for face in faces
                ),
            )
        return report(opts, runs, loadavg_before)
    finally:
        gateway.close()
        node.stop()
        if opts.keep:
            _say(opts, f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def _stats(values: list[float]) -> dict[str, float | None]:
    return {"median_ms": ms(median(values)), "p90_ms": ms(percentile(values, 90))}


def _medians(rows: list[dict[str, float]]) -> dict[str, float | None]:
    names: list[str] = []
    for row in rows:
        names += [n for n in row if n not in names]
    return {n: ms(median([row[n] for row in rows if n in row])) for n in names}


def _face(rows: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r["seconds"] for r in rows if r["seconds"] is not None]
    observed = [r["observed_seconds"] for r in rows]
    return {
        "finished": {**_stats(finished), "runs_ms": [ms(r["seconds"]) for r in rows]},
        "observed": {**_stats(observed), "runs_ms": [ms(v) for v in observed]},
        "statuses": [r["status"] for r in rows],
        "all_finished": all(r["ok"] for r in rows),
        "start_call_median_ms": ms(median([r["start_call_seconds"] for r in rows])),
        "status_poll_median_ms": ms(median([p for r in rows for p in r["poll_seconds"]])),
        "polls_per_run_median": median([float(len(r["poll_seconds"])) for r in rows]),
        "teardown_after_median_ms": ms(median([r["settle_seconds"] for r in rows])),
        "status_phases_median_ms": _medians([r["phases"] for r in rows]),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _paired(runs: dict[str, list[dict[str, Any]]], figure: str) -> dict[str, Any]:
    """Each gateway run against the gRPC run beside it: robust where the machine's load drifts
    between runs (how often the gateway took longer, and the median difference)."""
    differences = [
        g[figure] - d[figure]
        for g, d in zip(runs["gateway"], runs["grpc"], strict=True)
        if g[figure] is not None and d[figure] is not None
    ]
    return {
        "pairs": len(differences),
        "gateway_longer": sum(1 for d in differences if d > 0),
        "median_difference_ms": ms(median(differences)),
    }


def report(opts: Options, runs: dict[str, list[dict[str, Any]]], loadavg_before: float) -> dict[str, Any]:
    gateway, direct = _face(runs["gateway"]), _face(runs["grpc"])
    ratio_finished = _ratio(gateway["finished"]["median_ms"], direct["finished"]["median_ms"])
    ratio_observed = _ratio(gateway["observed"]["median_ms"], direct["observed"]["median_ms"])
    return {
        "config": {
            "runs": opts.runs,
            "warmup": opts.warmup,
            "poll_s": opts.poll,
            "algorithm": ALGORITHM,
            "dataset": str(DATASET_FILE.relative_to(ROOT)),
            "environment": environments(),
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(loadavg_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0],
        },
        "gateway": gateway,
        "grpc": direct,
        "ratio_finished": ratio_finished,
        "ratio_observed": ratio_observed,
        "paired_finished": _paired(runs, "seconds"),
        "paired_observed": _paired(runs, "observed_seconds"),
        "goal": {
            "max_ratio": GOAL_RATIO,
            "met": ratio_finished is not None and ratio_finished <= GOAL_RATIO,
            "observed_met": ratio_observed is not None and ratio_observed <= GOAL_RATIO,
        },
        "reference": {
            "ocean_node_3_1_median_s": OCEAN_NODE_MEDIAN_S,
            "note": "the same trivial job on this kind of machine; given, not measured here",
        },
    }


def _fmt(value: float | None, unit: str = " ms") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def print_report(rep: dict[str, Any]) -> None:
    cfg, gateway, direct = rep["config"], rep["gateway"], rep["grpc"]
    print()
    print(
        f"one free stage over {cfg['dataset']} on the stub engine, {cfg['runs']} runs (+{cfg['warmup']} warm-up) "
        f"of each face, interleaved; status polled every {cfg['poll_s'] * 1e3:g} ms on both; "
        f"{cfg['cpus']} CPUs, Python {cfg['python']}"
    )
    print(
        f"load average {cfg['loadavg_1m_before']:.2f} before, {cfg['loadavg_1m_after']:.2f} after "
        "(other work on the machine skews every figure)"
    )
    print("-" * 100)
    print(f"{'':<52}{'median':>10}{'p90':>10}   runs")
    rows = [
        ("gateway: freeCompute -> finished (node clock)", gateway, "finished"),
        ("gRPC:    FreeStartCompute -> finished (node clock)", direct, "finished"),
        ("gateway: freeCompute -> first poll that saw it end", gateway, "observed"),
        ("gRPC:    FreeStartCompute -> first poll saw it end", direct, "observed"),
    ]
    for name, face, figure in rows:
        row = face[figure]
        print(
            f"{name:<52}{_fmt(row['median_ms'], ''):>10}{_fmt(row['p90_ms'], ''):>10}   "
            + ", ".join(_fmt(v, "") for v in row["runs_ms"])
        )
    for name, face in (("gateway", gateway), ("gRPC", direct)):
        if not face["all_finished"]:
            print(f"  {name}: NOT ALL FINISHED: {face['statuses']}")
    for label, key in (("to finished", "ratio_finished"), ("to the poll that saw it end", "ratio_observed")):
        value = rep[key]
        print(f"ratio gateway / gRPC, {label:<30}{'-' if value is None else f'{value:.2f}x':>10}")
    for label, key in (
        ("to finished", "paired_finished"),
        ("to the poll that saw it end", "paired_observed"),
    ):
        pair = rep[key]
        print(
            f"paired, {label}: the gateway took longer in {pair['gateway_longer']} of {pair['pairs']} runs, "
            f"by a median {_fmt(pair['median_difference_ms'])}"
        )
    goal = rep["goal"]
    print(
        f"goal: the gateway at most {goal['max_ratio']}x the gRPC time: {met(goal['met'])} (to finished); "
        f"{met(goal['observed_met'])} (to the poll that saw it end)"
    )
    print(
        f"for reference: ocean-node 3.1 takes a median {rep['reference']['ocean_node_3_1_median_s']} s for the "
        "same trivial job on this kind of machine (a figure given by the project, not measured here)"
    )
    print("-" * 100)
    for name, face in (("gateway", gateway), ("gRPC", direct)):
        print(
            f"{name}: start call {_fmt(face['start_call_median_ms'])}, a status poll "
            f"{_fmt(face['status_poll_median_ms'])} ({face['polls_per_run_median']:g} polls a run), "
            f"stage torn down {_fmt(face['teardown_after_median_ms'])} after it was seen ended (medians)"
        )
    print("median time in each status of the stage's history:   gateway         gRPC")
    names = list(gateway["status_phases_median_ms"])
    names += [n for n in direct["status_phases_median_ms"] if n not in names]
    for name in names:
        print(
            f"  {name:<48} {_fmt(gateway['status_phases_median_ms'].get(name)):>10} "
            f"{_fmt(direct['status_phases_median_ms'].get(name)):>12}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="counted runs of each face (default 10; --quick: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs of each face first (default 1)")
    parser.add_argument(
        "--poll", type=float, default=0.02, help="seconds between status polls, both faces (default 0.02)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 runs of each: a sanity run, not a measurement"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and the node's log)")
    args = parser.parse_args(argv)
    opts = Options(
        runs=max(1, args.runs or (3 if args.quick else 10)),
        warmup=max(0, args.warmup),
        poll=max(0.001, args.poll),
        as_json=args.json,
        keep=args.keep,
    )
    try:
        rep = run(opts)
    except (C2DError, grpc.RpcError, RuntimeError, OSError, http.client.HTTPException) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    if opts.as_json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
