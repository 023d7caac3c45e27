"""A 1 GiB result: pod -> node upload and node -> client download, against raw loopback TCP.

First the baseline, on the idle machine: ``--size-mib`` (default 1024) through one
TCP connection on 127.0.0.1, from a sender process (``sendall`` of a 1 MiB buffer)
to a receiver (``recv_into`` a 1 MiB buffer), ``--tcp-runs`` times (default 2; the
best counts): what the machine's loopback gives Python at all.

Then its own ``python -m host`` (no dev chain) with one external_stub environment
and one free stage whose algorithm writes ``--size-mib`` of zeros to
``$C2D_DATA/outputs/big.bin``; pod-publishing uploads that one file as is (no
archive). Meanwhile a probe process calls ``Health/Check`` every 10 ms (idle first:
the stall baseline; then through the whole stage).

* upload (pod -> node): from the pod's "outputs: big.bin" line to its "uploaded
  big.bin" line in ``publishing.log`` (a result of the stage, timestamps of the
  pod's clock): the pod's sha256 pass over the file and the upload itself. When
  the log says neither, the stage's publishing phase (PUBLISHING -> its end, from
  the status history) stands in, and the report says so;
* download (node -> client): a signed ``GetComputeResult`` stream of the file, its
  bytes counted and dropped (the node's and the wire's part); then the SDK's
  ``Client.result`` to a file (what a consumer gets: written to disk, sha256
  checked);
* the longest ``Health/Check`` (and the longest gap between two answers) while
  the upload ran, against the longest on the idle node.

Figures: MB/s (10^6 bytes) of each and its % of the raw loopback figure; the stall
and its baseline. Goals (issue 11; exit status 0 either way): upload and download
each at least 50 % of raw loopback, the longest Health/Check during the upload
under 50 ms. Needs about 3x ``--size-mib`` of free disk in the temp dir.

    python bench/results.py [--size-mib N] [--tcp-runs R] [--quick] [--json] [--keep]

``--quick``: 64 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from benchlib import Node, S, Signer, channel_options, fmt, met, min_resources, stage, stub_environments
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c2d import auth
from c2d.client import C2DError, Client
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc

ENV_ID = "bench"
OUTPUT = "big.bin"
MIB = 1 << 20
GIB = 1 << 30
PROBE_INTERVAL_SECONDS = 0.01
IDLE_PROBE_SECONDS = 3.0
GOAL_SHARE = 0.5
GOAL_STALL_MS = 50.0


@dataclass
class Options:
    size: int
    tcp_runs: int
    tcp_chunk: int
    as_json: bool
    keep: bool


def _say(opts: Options, text: str) -> None:
    print(text, file=sys.stderr if opts.as_json else sys.stdout, flush=True)


def mbps(size: int, seconds: float | None) -> float | None:
    return None if not seconds else round(size / seconds / 1e6, 1)


# ---------------------------------------------------------------- raw loopback TCP


def _tcp_sender(port: int, size: int, chunk: int) -> None:
    block = memoryview(bytes(chunk))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        left = size
        while left > 0:
            n = min(left, chunk)
            sock.sendall(block[:n])
            left -= n


def raw_tcp_seconds(size: int, chunk: int) -> float:
    """Seconds to move ``size`` bytes through one loopback TCP connection, sender in another process."""
    ctx = multiprocessing.get_context("spawn")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sender = ctx.Process(target=_tcp_sender, args=(listener.getsockname()[1], size, chunk), daemon=True)
        sender.start()
        conn, _ = listener.accept()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    got = 0
    with conn:
        started = time.perf_counter()
        while got < size:
            n = conn.recv_into(view)
            if not n:
                break
            got += n
        took = time.perf_counter() - started
    sender.join(30)
    if got != size:
        raise RuntimeError(f"raw TCP moved {got} of {size} bytes")
    return took


# ---------------------------------------------------------------- the Health/Check probe (its own process)


def _probe_main(address: str, conn: Any) -> None:
    """Health/Check every 10 ms: IDLE_PROBE_SECONDS idle, then from "load" until "stop".

    Sends ("idle", samples) and ("done", samples); a sample is (wall time sent, seconds).
    """
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    for _ in range(20):
        stub.Check(request, timeout=30)

    def probe(until: Any) -> list[tuple[float, float]]:
        samples = []
        next_at = time.monotonic()
        while not until():
            next_at = max(next_at + PROBE_INTERVAL_SECONDS, time.monotonic())
            sent = time.time()
            started = time.perf_counter()
            stub.Check(request, timeout=60)
            samples.append((sent, time.perf_counter() - started))
            time.sleep(max(0.0, next_at - time.monotonic()))
        return samples

    idle_until = time.monotonic() + IDLE_PROBE_SECONDS
    conn.send(("idle", probe(lambda: time.monotonic() >= idle_until)))
    if conn.recv() != "load":
        return
    load = probe(conn.poll)
    conn.recv()
    conn.send(("done", load))
    channel.close()


def stall(samples: list[tuple[float, float]], start: float, end: float) -> dict[str, float | None]:
    """The longest Health/Check overlapping [start, end] (wall clock), and the longest gap between answers."""
    inside = [(sent, took) for sent, took in samples if sent <= end and sent + took >= start]
    if not inside:
        return {"n": 0, "longest_call_ms": None, "longest_gap_ms": None}
    answers = [sent + took for sent, took in inside]
    gaps = [b - a for a, b in itertools.pairwise(answers)]
    return {
        "n": len(inside),
        "longest_call_ms": round(max(took for _, took in inside) * 1e3, 2),
        "longest_gap_ms": round(max(gaps) * 1e3, 2) if gaps else None,
    }


# ---------------------------------------------------------------- the node's side


def publishing_span(log: str) -> tuple[float, float] | None:
    """(start, end) wall times of the output's upload from the pod's log, or None when it does not say."""
    start = end = None
    for line in log.splitlines():
        stamp, _, message = line.partition(" ")
        try:
            at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            continue
        if message.startswith("outputs: ") and OUTPUT in message:
            start = at.timestamp()
        elif message.startswith(f"uploaded {OUTPUT}"):
            end = at.timestamp()
    return (start, end) if start is not None and end is not None and end > start else None


def raw_download(node: Node, key: str, job_id: str, index: int) -> tuple[float, int]:
    """A signed GetComputeResult stream, its bytes counted and dropped: (seconds, bytes)."""
    channel = grpc.insecure_channel(node.address, options=channel_options())
    try:
        stub = compute_pb2_grpc.ComputeServiceStub(channel)
        request = Signer(key).sign(
            "GetComputeResult", compute_pb2.GetComputeResultRequest(job_id=job_id, index=index)
        )
        got = 0
        started = time.perf_counter()
        for message in stub.GetComputeResult(request, timeout=600):
            got += len(message.data)
        return time.perf_counter() - started, got
    finally:
        channel.close()


def run(opts: Options) -> dict[str, Any]:
    tcp = []
    for _ in range(opts.tcp_runs):
        tcp.append(raw_tcp_seconds(opts.size, opts.tcp_chunk))
    _say(opts, "raw loopback TCP: " + ", ".join(f"{mbps(opts.size, t)} MB/s" for t in tcp))
    root = Path(tempfile.mkdtemp(prefix="c2d-bench-results-"))
    disk_gib = max(4, math.ceil(4 * opts.size / GIB))
    node = Node(
        root / "node",
        stub_environments({"id": ENV_ID, "cpu": 2, "ram_gib": 2, "disk_gib": disk_gib, "max_jobs": 1}),
    )
    try:
        return _run(node, opts, tcp, root)
    finally:
        node.stop()
        if opts.keep:
            _say(opts, f"data dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _run(node: Node, opts: Options, tcp: list[float], root: Path) -> dict[str, Any]:
    env = node.wait_environment(ENV_ID)
    key = auth.new_private_key()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    probe = ctx.Process(target=_probe_main, args=(node.address, parent), daemon=True)
    probe.start()
    _, idle = child.recv()
    script = f'head -c {opts.size} /dev/zero > "$C2D_DATA/outputs/{OUTPUT}"'
    disk = max(2, math.ceil(2 * opts.size / GIB) + 1)
    doc = {"environment": ENV_ID, "resources": min_resources(env, disk=disk), "stages": [stage(0, script)]}
    child.send("load")
    with Client(node.address, key, timeout=600) as client:
        (job_id,) = client.start(doc, free=True).job_ids
        (job,) = client.wait([job_id], poll=0.05, timeout=1800)
        child.send("stop")
        _, load = child.recv()
        probe.join(10)
        if job.status != S.JOB_STATUS_FINISHED:
            raise RuntimeError(f"the stage ended {job.status_text}: {job.status_message}")
        files = {f.kind: f for f in job.results}
        output = files[compute_pb2.RESULT_KIND_OUTPUT]
        if output.size != opts.size:
            raise RuntimeError(f"the output has {output.size} bytes, not {opts.size}")
        span = None
        if compute_pb2.RESULT_KIND_PUBLISHING_LOG in files:
            log = client.result(
                job_id, files[compute_pb2.RESULT_KIND_PUBLISHING_LOG].index, root / "publishing.log"
            )
            span = publishing_span(log.read_text(errors="replace"))
        upload_from = "publishing.log"
        if span is None:
            upload_from = "the publishing phase of the status history"
            events = [(e.status, e.time.ToNanoseconds() / 1e9) for e in job.history]
            begin = next(at for status, at in events if status == S.JOB_STATUS_PUBLISHING)
            span = (begin, events[-1][1])
        raw_seconds, raw_bytes = raw_download(node, key, job_id, output.index)
        if raw_bytes != opts.size:
            raise RuntimeError(f"GetComputeResult sent {raw_bytes} of {opts.size} bytes")
        started = time.perf_counter()
        path = client.result(job_id, output.index, root / "download" / OUTPUT, expected=output)
        sdk_seconds = time.perf_counter() - started
        path.unlink()
    hash_started = time.perf_counter()
    digest = hashlib.sha256()
    zeros = bytes(MIB)
    for _ in range(opts.size // MIB):
        digest.update(zeros)
    hash_seconds = time.perf_counter() - hash_started
    return report(opts, tcp, span, upload_from, raw_seconds, sdk_seconds, idle, load, hash_seconds)


def report(
    opts: Options,
    tcp: list[float],
    span: tuple[float, float],
    upload_from: str,
    raw_seconds: float,
    sdk_seconds: float,
    idle: list[tuple[float, float]],
    load: list[tuple[float, float]],
    hash_seconds: float,
) -> dict[str, Any]:
    tcp_mbps = max(mbps(opts.size, t) or 0.0 for t in tcp)

    def share(value: float | None) -> float | None:
        return None if value is None or not tcp_mbps else round(100 * value / tcp_mbps, 1)

    upload = mbps(opts.size, span[1] - span[0])
    raw = mbps(opts.size, raw_seconds)
    sdk = mbps(opts.size, sdk_seconds)
    during = stall(load, *span)
    baseline = stall(idle, idle[0][0], idle[-1][0] + idle[-1][1]) if idle else stall([], 0, 0)
    longest = during["longest_call_ms"]
    return {
        "config": {"size_bytes": opts.size, "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0]},
        "raw_tcp": {
            "runs_mbps": [mbps(opts.size, t) for t in tcp],
            "best_mbps": tcp_mbps,
            "chunk_bytes": opts.tcp_chunk,
        },
        "upload": {
            "mbps": upload,
            "percent_of_raw": share(upload),
            "seconds": round(span[1] - span[0], 3),
            "from": upload_from,
            "sha256_here_seconds": round(hash_seconds, 3),
        },
        "download_stream": {"mbps": raw, "percent_of_raw": share(raw), "seconds": round(raw_seconds, 3)},
        "download_sdk": {"mbps": sdk, "percent_of_raw": share(sdk), "seconds": round(sdk_seconds, 3)},
        "health_during_upload": during,
        "health_idle": baseline,
        "goals": {
            "upload_half_of_raw": upload is not None and upload >= GOAL_SHARE * tcp_mbps,
            "download_half_of_raw": sdk is not None and sdk >= GOAL_SHARE * tcp_mbps,
            "stall_under_50ms": longest is not None and longest < GOAL_STALL_MS,
        },
    }


def print_report(rep: dict[str, Any]) -> None:
    size_mib = rep["config"]["size_bytes"] / MIB
    up, stream, sdk = rep["upload"], rep["download_stream"], rep["download_sdk"]
    during, idle = rep["health_during_upload"], rep["health_idle"]
    print()
    print(
        f"{size_mib:g} MiB result, {rep['config']['cpus']} CPUs, load average {rep['config']['loadavg_1m']:.2f}"
    )
    rows = [
        ("baseline: raw loopback TCP", f"{fmt(rep['raw_tcp']['best_mbps'])} MB/s",
         "best of " + ", ".join(str(x) for x in rep["raw_tcp"]["runs_mbps"])
         + f"; {rep['raw_tcp']['chunk_bytes'] // 1024} KiB send/recv, sender in another process"),
        ("upload, pod -> node", f"{fmt(up['mbps'])} MB/s",
         f"{fmt(up['percent_of_raw'], ' %')} of raw; {up['seconds']:.2f} s from {up['from']} "
         f"(includes the pod's sha256 pass; sha256 of the same bytes here: {up['sha256_here_seconds']:.2f} s)"),
        ("download, GetComputeResult stream", f"{fmt(stream['mbps'])} MB/s",
         f"{fmt(stream['percent_of_raw'], ' %')} of raw; {stream['seconds']:.2f} s, bytes dropped"),
        ("download, SDK Client.result", f"{fmt(sdk['mbps'])} MB/s",
         f"{fmt(sdk['percent_of_raw'], ' %')} of raw; {sdk['seconds']:.2f} s, to disk, sha256 checked"),
        ("longest Health/Check during the upload", f"{fmt(during['longest_call_ms'])} ms",
         f"n={during['n']}, every {PROBE_INTERVAL_SECONDS * 1e3:g} ms; longest gap between answers "
         f"{fmt(during['longest_gap_ms'], ' ms')}"),
        ("baseline: longest Health/Check, idle node", f"{fmt(idle['longest_call_ms'])} ms",
         f"n={idle['n']}; longest gap {fmt(idle['longest_gap_ms'], ' ms')}"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    goals = rep["goals"]
    print(f"goal upload >= 50 % of raw loopback:           {met(goals['upload_half_of_raw'])}")
    print(f"goal download (SDK) >= 50 % of raw loopback:   {met(goals['download_half_of_raw'])}")
    print(f"goal longest Health/Check during upload < {GOAL_STALL_MS:g} ms: {met(goals['stall_under_50ms'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, help="the result's size (default 1024; --quick: 64)")
    parser.add_argument(
        "--tcp-runs", type=int, default=2, help="raw loopback runs, the best counts (default 2)"
    )
    parser.add_argument(
        "--tcp-chunk-kib", type=int, default=1024, help="the raw loopback's send/recv size (default 1024)"
    )
    parser.add_argument("--quick", action="store_true", help="a 64 MiB result")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the node's data dir (and its log)")
    args = parser.parse_args(argv)
    opts = Options(
        size=(args.size_mib or (64 if args.quick else 1024)) * MIB,
        tcp_runs=max(1, args.tcp_runs),
        tcp_chunk=max(1, args.tcp_chunk_kib) * 1024,
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
