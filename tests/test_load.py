"""200 stages from 8 clients at once against a real node: none lost, every one ends with its result.

Everything is real: ``python -m host`` as a subprocess, the external_stub engine
plugin, its shims, pods and confined algorithms, SQLite, signatures, gRPC over
sockets. Each client is a thread with its own key and :class:`c2d.client.Client`,
as independent consumers are. The environment runs at most ``MAX_JOBS`` stages at
once, so the rest queue: the machine is loaded, not swamped.

It checks behaviour, not speed: every workflow is accepted, each client sees
exactly its own stages, every stage ends FINISHED with its output, whose bytes
(unique per stage) come back intact, and the node answered every call (no
UNAVAILABLE, no DEADLINE_EXCEEDED, no error at all). The waits are for
conditions; ``HANG_GUARD_SECONDS`` only stops a hung run, it is no margin.
The timings belong to ``bench/workflows.py``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from nodeproc import NodeProcess, running_node

pytestmark = pytest.mark.load

S = common_pb2.JobStatus
ENV = "load"
CLIENTS = 8
WORKFLOWS_PER_CLIENT = 5
STAGES_PER_WORKFLOW = 5  # 8 x 5 x 5 = 200 stages
MAX_JOBS = 16  # stages the environment runs at once; the others queue
POLL_SECONDS = 1.0
HANG_GUARD_SECONDS = 1200.0  # a hung node fails the test instead of hanging CI; not a timing margin
T = TypeVar("T")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    size = f"cpu = {MAX_JOBS}, ram_gib = {MAX_JOBS}, disk_gib = {MAX_JOBS}, max_jobs = {MAX_JOBS}"
    env = {"C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", {size}}}]'}
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node
        node.settle()


def marker(client: int, workflow: int, stage: int) -> str:
    """What stage ``stage`` of workflow ``workflow`` of client ``client`` writes: unique to it."""
    return f"client {client} workflow {workflow} stage {stage}"


def workflow(client: int, number: int, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "environment": ENV,
        "resources": resources,
        "stages": [
            {
                "index": i,
                "algorithm": {
                    "rawcode": f"printf '%s' '{marker(client, number, i)}' > \"$C2D_DATA/outputs/out.txt\"",
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
            for i in range(STAGES_PER_WORKFLOW)
        ],
    }


@dataclass
class Consumer:
    """One client's run: what it started, what it saw, every error any of its calls got."""

    number: int
    expected: dict[str, str] = field(default_factory=dict)  # job id -> the bytes its output must hold
    jobs: dict[str, compute_pb2.JobInfo] = field(default_factory=dict)  # the last status of each
    extra: set[str] = field(default_factory=set)  # job ids status(all) showed that this client never started
    outputs: dict[str, str] = field(default_factory=dict)  # job id -> the output's bytes downloaded
    errors: list[str] = field(default_factory=list)
    crashed: BaseException | None = None

    def call(self, what: str, fn: Callable[[], T]) -> T | None:
        """``fn()``, with any error the node answered recorded (the test fails on any)."""
        try:
            return fn()
        except C2DError as exc:
            self.errors.append(f"{what}: {exc}")
            return None


def run_consumer(
    address: str,
    consumer: Consumer,
    resources: list[dict[str, Any]],
    go: threading.Event,
    deadline: float,
    out_dir: Path,
) -> None:
    try:
        with Client(address, auth.new_private_key(), timeout=120) as client:
            go.wait()
            for number in range(WORKFLOWS_PER_CLIENT):
                doc = workflow(consumer.number, number, resources)
                started = consumer.call("FreeStartCompute", lambda doc=doc: client.start(doc, free=True))
                if started is None:
                    continue
                for ref in started.stages:
                    consumer.expected[ref.job_id] = marker(consumer.number, number, ref.index)
            _follow(client, consumer, deadline)
            _download(client, consumer, out_dir / f"client-{consumer.number}")
    except BaseException as exc:  # reported by the test, with the thread's name
        consumer.crashed = exc


def _follow(client: Client, consumer: Consumer, deadline: float) -> None:
    """GetComputeStatus(all) until every stage this client started has ended (or the hang guard)."""
    while time.monotonic() < deadline:
        jobs = consumer.call("GetComputeStatus(all)", lambda: client.status(all=True))
        for job in jobs or []:
            if job.job_id in consumer.expected:
                consumer.jobs[job.job_id] = job
            else:
                consumer.extra.add(job.job_id)
        if jobs is not None and all(
            job_id in consumer.jobs and consumer.jobs[job_id].terminal for job_id in consumer.expected
        ):
            return
        time.sleep(POLL_SECONDS)


def _download(client: Client, consumer: Consumer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for job_id, job in consumer.jobs.items():
        output = [f for f in job.results if f.kind == compute_pb2.RESULT_KIND_OUTPUT]
        if len(output) != 1:
            continue  # the test names every stage without exactly one output
        path = consumer.call(
            f"GetComputeResult({job_id})",
            lambda job_id=job_id, f=output[0]: client.result(job_id, f.index, out_dir / job_id, expected=f),
        )
        if path is not None:
            consumer.outputs[job_id] = path.read_text()


@pytest.mark.timeout(HANG_GUARD_SECONDS + 600)  # pytest-timeout's default (300 s) is for ordinary tests
def test_200_stages_from_8_clients_none_lost_each_with_its_result(node: NodeProcess, tmp_path: Path) -> None:
    (env,) = [e for e in node.environments() if e.id == ENV]
    resources = [{"id": r.id, "amount": r.min} for r in env.resources if r.min > 0]
    consumers = [Consumer(i) for i in range(CLIENTS)]
    go = threading.Event()
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    threads = [
        threading.Thread(
            target=run_consumer,
            args=(node.address, consumer, resources, go, deadline, tmp_path),
            name=f"consumer-{consumer.number}",
            daemon=True,
        )
        for consumer in consumers
    ]
    for thread in threads:
        thread.start()
    go.set()  # every client starts its workflows at once
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 600)  # downloads after the guard: bounded too
    assert not [t.name for t in threads if t.is_alive()], "a client is still running past the hang guard"
    crashed = {c.number: repr(c.crashed) for c in consumers if c.crashed is not None}
    assert not crashed, f"client threads crashed: {crashed}"

    errors = [e for c in consumers for e in c.errors]
    assert not errors, f"the node did not answer every call ({len(errors)} errors): {errors[:10]}"
    started = sum(len(c.expected) for c in consumers)
    assert started == CLIENTS * WORKFLOWS_PER_CLIENT * STAGES_PER_WORKFLOW == 200
    assert len({job_id for c in consumers for job_id in c.expected}) == 200, "a job id was handed out twice"
    foreign = {c.number: sorted(c.extra) for c in consumers if c.extra}
    assert not foreign, f"GetComputeStatus(all) showed clients jobs they never started: {foreign}"
    lost = {
        c.number: sorted(set(c.expected) - set(c.jobs)) for c in consumers if set(c.expected) - set(c.jobs)
    }
    assert not lost, f"stages missing from their owner's GetComputeStatus(all): {lost}"

    jobs = [job for c in consumers for job in c.jobs.values()]
    unfinished = Counter(
        f"{job.status_text}: {job.status_message}" for job in jobs if job.status != S.JOB_STATUS_FINISHED
    )
    assert not unfinished, f"stages that did not end FINISHED: {dict(unfinished)}"
    for consumer in consumers:
        for job_id, want in consumer.expected.items():
            job = consumer.jobs[job_id]
            outputs = [f for f in job.results if f.kind == compute_pb2.RESULT_KIND_OUTPUT]
            assert [f.name for f in outputs] == ["out.txt"], f"{job_id}: outputs {[f.name for f in outputs]}"
            assert consumer.outputs.get(job_id) == want, (
                f"{job_id}: downloaded {consumer.outputs.get(job_id)!r}"
            )
