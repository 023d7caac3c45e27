""":class:`BacalhauDouble`: orchestrator, compute node and HTTP servers assembled for a test."""

from __future__ import annotations

import asyncio
import platform
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .api import VERSION_INFO, build_app, build_results_app
from .compute import LABEL_EXECUTOR, ComputeNode
from .orchestrator import Orchestrator
from .records import Execution, Job, JobState, new_node_id, rfc3339
from .spec import Resources
from .volumes import AllowedPath

DEFAULT_CAPACITY = Resources(cpu=4.0, memory=8 * 1024**3, disk=20 * 1024**3, gpu=0)


class BacalhauDouble:
    """A Bacalhau v1.9 orchestrator on ``http://127.0.0.1:<port>`` with one Docker compute node.

    ``allowed_paths`` are the node's ``Compute.AllowListedLocalPaths`` (``/data/**:rw``...),
    ``capacity`` its total resources (also the largest job it accepts), ``node_labels`` its labels
    (next to v1.9's runtime labels ``os_type``, ``os_arch`` and ``name``), ``token`` the bearer token every call but
    the agent's alive/version must carry. :meth:`suspend` makes it unreachable (connections refused)
    until :meth:`resume`; :meth:`close` stops it and removes every container and file it made.
    """

    def __init__(
        self,
        docker_client: Any,
        *,
        allowed_paths: Sequence[str] = (),
        capacity: Resources = DEFAULT_CAPACITY,
        node_labels: Mapping[str, str] | None = None,
        token: str | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.instance_id = uuid.uuid4().hex[:12]
        self.docker = docker_client
        self.token = token
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="bacalhau-double-"))
        self.changed = threading.Condition(threading.RLock())
        node_id = new_node_id()
        labels = {"os_type": "linux", "os_arch": _arch(), "name": node_id, **dict(node_labels or {})}
        self.node = ComputeNode(
            self.changed,
            docker_client,
            node_id=node_id,
            instance_id=self.instance_id,
            labels=labels,
            max_capacity=capacity,
            allowed_paths=tuple(AllowedPath.parse(entry) for entry in allowed_paths),
            work_dir=self.work_dir,
            results_url=lambda: self.results_url,
        )
        self.orchestrator = Orchestrator(self.changed, self.node, new_node_id())
        self.node.orchestrator = self.orchestrator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bacalhau-double", daemon=True)
        self._api_runner: web.AppRunner | None = None
        self._results_runner: web.AppRunner | None = None
        self._port = 0
        self._results_port = 0
        self._hanging: _Hang | None = None
        self._started_at = time.time_ns()
        self._closed = False

    # lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve the API and the local publisher's results; the API's base URL."""
        self._thread.start()
        self._api_runner, self._port = self._call(self._serve(build_app(self), 0))
        self._results_runner, self._results_port = self._call(self._serve(build_results_app(self), 0))
        return self.url

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError("the Bacalhau double is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def results_url(self) -> str:
        return f"http://127.0.0.1:{self._results_port}"

    def suspend(self, mode: str = "refuse") -> None:
        """Stop answering, state kept: ``refuse`` closes the port (connection refused), ``hang``
        keeps accepting connections but never answers (a client's read timeout fires)."""
        if mode not in ("refuse", "hang"):
            raise ValueError(f"suspend mode must be 'refuse' or 'hang', not {mode!r}")
        if self._api_runner is not None:
            self._call(self._api_runner.cleanup())
            self._api_runner = None
        if mode == "hang" and self._hanging is None:
            self._hanging = self._call(self._hang())

    def resume(self) -> None:
        """Answer again, on the same port."""
        if self._hanging is not None:
            self._call(self._unhang(self._hanging))
            self._hanging = None
        if self._api_runner is None and not self._closed:
            self._api_runner, _ = self._call(self._serve(build_app(self), self._port))

    async def _hang(self) -> _Hang:
        hang = _Hang()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hang.held.append(writer)  # read nothing, answer nothing, until resume() closes it

        hang.server = await asyncio.start_server(hold, "127.0.0.1", self._port, reuse_address=True)
        return hang

    async def _unhang(self, hang: _Hang) -> None:
        assert hang.server is not None
        hang.server.close()
        for writer in hang.held:
            writer.close()
        await hang.server.wait_closed()

    def close(self) -> None:
        """Stop serving, kill and remove every container of the node, delete its files."""
        if self._closed:
            return
        self._closed = True
        self.orchestrator.close()
        if self._thread.is_alive():
            if self._hanging is not None:
                self._call(self._unhang(self._hanging))
            for runner in (self._api_runner, self._results_runner):
                if runner is not None:
                    self._call(runner.cleanup())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self.node.close()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    stop = close

    def __enter__(self) -> BacalhauDouble:
        if not self._port:
            self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def _serve(self, app: web.Application, port: int) -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1]
        return runner, int(bound)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    # what the API shows of the node -----------------------------------------------------------

    def node_state(self) -> dict[str, Any]:
        """``models.NodeState`` of the compute node, with its current available capacity."""
        node = self.node
        with self.changed:
            available, running, enqueued = node.available, node.running_count, node.enqueued_count
        capacity = node.max_capacity.to_json()
        return {
            "Info": {
                "NodeID": node.node_id,
                "NodeType": "Compute",
                "Labels": dict(node.labels),
                "SupportedProtocols": ["NCLv1"],
                "ComputeNodeInfo": {
                    "ExecutionEngines": ["docker"],
                    "Publishers": ["local", "noop"],
                    "StorageSources": ["local", "localDirectory"],
                    "MaxCapacity": capacity,
                    "QueueCapacity": {},
                    "AvailableCapacity": available.to_json(),
                    "MaxJobRequirements": capacity,
                    "RunningExecutions": running,
                    "EnqueuedExecutions": enqueued,
                    "address": "127.0.0.1",
                },
                "BacalhauVersion": dict(VERSION_INFO),
            },
            "Membership": "APPROVED",
            "Connection": "CONNECTED",
            "ConnectionState": {
                "Status": "CONNECTED",
                "LastHeartbeat": rfc3339(time.time_ns()),
                "ConnectedSince": rfc3339(self._started_at),
                "DisconnectedSince": "0001-01-01T00:00:00Z",
            },
        }

    # inspection, for tests ----------------------------------------------------------------------

    def job(self, id_or_name: str) -> Job:
        return self.orchestrator.find(id_or_name)

    def executions(self, id_or_name: str) -> list[Execution]:
        return self.orchestrator.executions_of(self.job(id_or_name), all_versions=True)

    def containers(self) -> list[Any]:
        """The ``docker`` containers of this double's node that still exist."""
        return self.docker.containers.list(
            all=True, filters={"label": f"{LABEL_EXECUTOR}={self.instance_id}"}
        )

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        """Wait, woken by each change of the double's state, until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what} not met in {timeout} s")
                self.changed.wait(remaining)

    def wait_for_job(
        self,
        id_or_name: str,
        states: Sequence[str] = ("Completed", "Failed", "Stopped"),
        timeout: float = 60.0,
    ) -> Job:
        """Wait until the job is in one of ``states`` (JobStateType names); the job."""
        wanted = {JobState(s) for s in states}
        job = self.job(id_or_name)
        self.wait_for(lambda: job.state in wanted, timeout, f"job {id_or_name} in {sorted(states)}")
        return job

    def wait_for_container(self, id_or_name: str, timeout: float = 60.0) -> Any:
        """Wait until the node started a container for the job (and it is not over); that container."""
        job = self.job(id_or_name)

        def running() -> bool:
            return any(e.started and not e.terminal for e in self.orchestrator.executions_of(job))

        self.wait_for(running, timeout, f"an execution of {id_or_name} running")
        found = [c for c in self.containers() if c.labels.get("bacalhau-jobID", "").endswith(job.id)]
        if not found:
            raise LookupError(f"no container for job {id_or_name}")
        return found[0]


@dataclass
class _Hang:
    """A listener on the API's port that accepts connections and never answers them."""

    server: asyncio.Server | None = None
    held: list[asyncio.StreamWriter] = field(default_factory=list)


class StartedDouble:
    """What :func:`start_double` returns: ``url, stop = start_double(...)``, plus ``.double``."""

    def __init__(self, double: BacalhauDouble) -> None:
        self.double = double
        self.url = double.url
        self.stop = double.close

    def __iter__(self) -> Iterator[Any]:
        yield self.url
        yield self.stop


def start_double(docker_client: Any | None = None, **options: Any) -> StartedDouble:
    """Start a :class:`BacalhauDouble` (``docker.from_env()`` unless given); its URL and stop."""
    if docker_client is None:
        import docker

        docker_client = docker.from_env(timeout=120)
    double = BacalhauDouble(docker_client, **options)
    double.start()
    return StartedDouble(double)


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
