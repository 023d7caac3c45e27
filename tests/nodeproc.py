"""Runs ``python -m host`` as a real subprocess for tests, the way an operator runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from c2d.compute.v1 import compute_pb2, compute_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class NodeProcess:
    """A node subprocess with JSON logs collected for assertions."""

    def __init__(
        self,
        data_dir: Path,
        *,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        pod_port: int | None = None,
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.pod_port = pod_port or free_port()
        self.data_dir = data_dir
        listen = f"{listen_host}:{self.port}"  # e.g. "[::]" for IPv4 and IPv6 callers; clients use 127.0.0.1
        argv = [sys.executable, "-m", "host", "--data-dir", str(data_dir), "--listen", listen]
        argv += ["--log-format", "json"]
        if config is not None:
            argv += ["--config", str(config)]
        self.logs: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={
                **os.environ,
                "C2D_PODS__LISTEN": f"127.0.0.1:{self.pod_port}",
                "C2D_LOAD_PLUGINS": "external_stub",  # tests name other engines explicitly
                "C2D_CHAIN__DEV": "off",  # tests of payments give their chain explicitly
                # A port of its own (logged as "metrics listening"): test nodes never share 9470.
                "C2D_METRICS__LISTEN": "127.0.0.1:0",
                "C2D_HTTP__LISTEN": "127.0.0.1:0",  # likewise the dashboard's ("http listening")
                **(env or {}),
            },
            text=True,
        )
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()
        self.channel = grpc.insecure_channel(self.address)
        self.compute = compute_pb2_grpc.ComputeServiceStub(self.channel)

    def _read_logs(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw_lines.append(line.rstrip("\n"))
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    self.logs.append(record)

    def node_key(self) -> str:
        """The operator's key: the node creates it in its data dir on first start."""
        return (self.data_dir / "node_key").read_text().strip()

    @property
    def pid(self) -> int:
        return self.process.pid

    def environments(self) -> list[Any]:
        try:
            reply = self.compute.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=2)
        except grpc.RpcError:
            return []
        return list(reply.environments)

    def wait_listening(self, timeout: float = 30) -> None:
        """Waits until the node accepts connections: a first gRPC call that finds nothing listening
        puts the channel into reconnect backoff, which would add seconds to every start."""

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return self.process.poll() is not None  # exited: let the caller report it

        wait_for(listening, timeout, f"the node to listen on {self.address}", interval=0.05)

    def settle(self, engine: str = "external_stub", timeout: float = 15) -> None:
        """Waits (within reason) until the engine has destroyed every job, so no job outlives the node."""
        jobs = self.data_dir / "engines" / engine / "jobs"
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: not jobs.exists() or not any(jobs.iterdir()), timeout, "every job destroyed", 0.2
            )

    def wait_environment(self, env_id: str, timeout: float = 30) -> Any:
        self.wait_listening(timeout)
        return wait_for(
            lambda: next((e for e in self.environments() if e.id == env_id), None),
            timeout,
            f"environment {env_id!r}; node log tail:\n" + "\n".join(self.raw_lines[-30:]),
        )

    def plugin_pids(self) -> list[int]:
        return [pid for pid in children_of(self.pid) if process_alive(pid)]

    def metrics_address(self, timeout: float = 30) -> str:
        """HOST:PORT of the node's Prometheus endpoint, from its "metrics listening" log line."""
        found = wait_for(lambda: self.log_events("metrics listening"), timeout, "the metrics endpoint")
        return str(found[0]["address"])

    def http_address(self, timeout: float = 30) -> str:
        """HOST:PORT of the node's HTTP listener (the dashboard), from its "http listening" log line."""
        found = wait_for(lambda: self.log_events("http listening"), timeout, "the HTTP listener")
        return str(found[0]["address"])

    def log_events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.logs if r.get("event") == event]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.channel.close()
            self._reader.join(timeout=2)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.channel.close()


@contextlib.contextmanager
def running_node(data_dir: Path, **kwargs: Any) -> Iterator[NodeProcess]:
    node = NodeProcess(data_dir, **kwargs)
    try:
        yield node
    finally:
        node.kill()
