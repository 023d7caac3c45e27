"""What the node benches share: a node process of their own, signed calls, percentiles, /proc readings.

The benches drive the node only from outside, as a consumer or an operator does:
``python -m host`` as a subprocess, the public gRPC API, the SDK. They never import
the host's modules, so that the same script measures an old commit ("before") and
the current one ("after") alike.

Every node here starts without the dev chain (``C2D_CHAIN__DEV=off``): a node in
development mode would otherwise run one (anvil, or py-evm inside the node's own
process), which costs CPU that no figure here is about. ``bench/payments.py`` brings
its own chain.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from c2d import auth
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc

SERVICE = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].full_name
CONTAINER = {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # what the benches' own channels accept (the node may send less)
S = common_pb2.JobStatus


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
    """Count, p50, p99 and max in milliseconds of latencies given in seconds."""
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return {
        "n": len(samples),
        "p50_ms": None if p50 is None else round(p50 * 1e3, 3),
        "p99_ms": None if p99 is None else round(p99 * 1e3, 3),
        "max_ms": round(max(samples) * 1e3, 3) if samples else None,
    }


def fmt(value: Any, unit: str = "") -> str:
    """A figure for a table: "-" for None, two decimals for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}{unit}"
    return f"{value}{unit}"


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def stub_environments(*envs: Mapping[str, Any]) -> str:
    """The stub's environments as TOML (C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS), one inline table each."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return str(v)

    tables = ["{" + ", ".join(f"{k} = {value(v)}" for k, v in env.items()) + "}" for env in envs]
    return "[" + ", ".join(tables) + "]"


def stage(index: int, script: str) -> dict[str, Any]:
    """One stage of the workflow JSON form, running ``script`` with ``sh`` (stub: a local process)."""
    return {"index": index, "algorithm": {"rawcode": script, "container": CONTAINER}}


def min_resources(env: common_pb2.Environment, **more: float) -> list[dict[str, Any]]:
    """The least of each resource ``env`` lets a stage ask for; ``more`` raises some (id=amount)."""
    resources = {r.id: r.min for r in env.resources if r.min > 0}
    resources.update(more)
    return [{"id": rid, "amount": amount} for rid, amount in resources.items()]


# ---------------------------------------------------------------- /proc


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


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def children_of(pid: int) -> list[int]:
    return [child for child in all_pids() if parent_of(child) == pid]


def descendants_of(roots: set[int]) -> set[int]:
    """Every process below any of ``roots`` (not the roots themselves), from one pass over /proc."""
    parents = {pid: parent_of(pid) for pid in all_pids()}
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in found}
        found |= frontier
    return found - roots


def cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        ).strip()
    except OSError:
        return ""


def processes_under(directory: Path) -> list[int]:
    """Processes whose command line or working directory lies in ``directory`` (the node's jobs)."""
    mark = str(directory)
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in cmdline(pid) or os.readlink(f"/proc/{pid}/cwd").startswith(mark):
                found.append(pid)
    return found


def pss_kib(pid: int) -> int | None:
    """The process's proportional set size (kB, /proc/<pid>/smaps_rollup); None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


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


# ---------------------------------------------------------------- signed calls


class Signer:
    """Signs ComputeService requests like the SDK does, with strictly rising nonces for one key.

    The benches sign before they start the clock, so that a figure is the node's time
    (and the wire's), not the signature's.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.nonce = 0

    def sign(self, method: str, request: Any) -> Any:
        self.nonce = max(auth.new_nonce(), self.nonce + 1)
        auth.sign_request(self.key, f"/{SERVICE}/{method}", request, nonce=self.nonce)
        return request


def time_health(stub: health_pb2_grpc.HealthStub, count: int, warmup: int = 20) -> list[float]:
    """``count`` Health/Check round trips (after ``warmup`` untimed ones), in seconds."""
    request = health_pb2.HealthCheckRequest()
    for _ in range(warmup):
        stub.Check(request, timeout=30)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        stub.Check(request, timeout=30)
        samples.append(time.perf_counter() - started)
    return samples


def channel_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]


# ---------------------------------------------------------------- the node


STUB_POOL = {
    "C2D_ENGINES__EXTERNAL_STUB__POOL_CPU": "1024",
    "C2D_ENGINES__EXTERNAL_STUB__POOL_RAM_GIB": "1024",
    "C2D_ENGINES__EXTERNAL_STUB__POOL_DISK_GIB": "1024",
}


class Node:
    """``python -m host`` in a data dir of its own, its JSON log in ``node.log`` there.

    ``environments`` is the stub's environments table (see :func:`stub_environments`);
    ``env`` adds or overrides environment variables (C2D_* settings).
    """

    def __init__(self, data_dir: Path, environments: str, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.address = f"127.0.0.1:{free_port()}"
        variables = {
            **os.environ,
            "C2D_PODS__LISTEN": f"127.0.0.1:{free_port()}",
            "C2D_LOAD_PLUGINS": "external_stub",
            "C2D_CHAIN__DEV": "off",  # no dev chain: these benches measure no payments
            "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": environments,
            # The benches' environments offer more than this machine has on purpose (they measure
            # the node, not the machine's capacity): the stub's pool, the machine's real totals by
            # default, would grant two 1-core stages at a time on two cores.
            **STUB_POOL,
            **(env or {}),
        }
        argv = [sys.executable, "-m", "host", "--data-dir", str(data_dir), "--listen", self.address]
        self.log_path = data_dir / "node.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*argv, "--log-format", "json"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=variables,
            )
        self.channel = grpc.insecure_channel(self.address, options=channel_options())
        self.compute = compute_pb2_grpc.ComputeServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    @property
    def pid(self) -> int:
        return self.process.pid

    def node_key(self) -> str:
        """The operator's key: the node creates it in its data dir on first start."""
        return (self.data_dir / "node_key").read_text().strip()

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

    def job_processes(self) -> set[int]:
        """Every process of this node's jobs: below the node (plugins excluded) or in its data dir, and below those.

        Shims run in sessions of their own and may outlive (or be re-parented away from)
        the plugin, so they are found by their job directories too.
        """
        plugins = set(self.plugin_pids())
        found = descendants_of(plugins) | set(processes_under(self.data_dir))
        found |= descendants_of(found)
        return found - plugins - {self.pid, os.getpid()}

    def stop(self) -> None:
        """Ends this run's jobs, then the node (SIGTERM, SIGKILL after a few seconds), then any job left."""
        self._kill_jobs()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.channel.close()
        self._kill_jobs()

    def _kill_jobs(self) -> None:
        for pid in processes_under(self.data_dir / "engines"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
