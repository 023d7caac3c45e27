"""How long a stage may wait for capacity: the environment's limit, a workflow's own (capped by
it), expiry with what it waited, the queue per tier in GetEnvironments, and a restart.

The node tests hold the environment's one job slot (``max_jobs = 1``) with a stage that runs
until the test stops it, so whether another stage waits is never a matter of timing; a stage
with a limit of 1 s then expires for certain, and the tests only wait (generously) for it to
end. The scheduler's own rules are driven with explicit times (``stages.schedule(now, ...)``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paidnode import DEPOSIT, claimed_events, fund_node, new_consumer, payment, stub_env, wait_payment
from paidnode import ENV as PAID_ENV
from queueing import hold_capacity, job, release

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.chain.devchain import DevChain
from host.store import counts, stages
from host.store.db import open_database
from host.store.models import Stage
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-queue"
ENV_MAX = 600  # the environment's queue limit
CONFIG = f"""
[engines.external_stub]
enabled = true

[[engines.external_stub.environments]]
id = "{ENV}"
cpu = 1
ram_gib = 1
disk_gib = 1
max_jobs = 1

[environments."{ENV}"]
max_queue_seconds = {ENV_MAX}

[environments."{ENV}".free]
max_job_duration_seconds = 600
"""


def workflow(script: str, queue_seconds: int | None = None, env: str = ENV) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "environment": env,
        "maxJobDuration": 600,
        "stages": [
            {
                "index": 0,
                "algorithm": {
                    "rawcode": script,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
        ],
    }
    if queue_seconds is not None:
        doc["queueMaxWaitTime"] = queue_seconds
    return doc


def environment(client: Client) -> common_pb2.Environment:
    return next(env for env in client.environments() if env.id == ENV)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("queue")
    config = root / "node.toml"
    config.write_text(CONFIG)
    with running_node(root / "data", config=config) as node:
        node.wait_environment(ENV)
        yield node
        node.settle()


@pytest.fixture
def client(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client


# -- over gRPC, against a node with the stub engine --------------------------------------------


def test_a_stage_queued_past_its_limit_expires_and_leaves_the_capacity_free(client: Client) -> None:
    blocker = hold_capacity(client, workflow("sleep 600"))
    queued = client.start(workflow("echo never", queue_seconds=1))
    (expired,) = client.wait(queued.workflow_id, timeout=60)
    assert expired.status == S.JOB_STATUS_QUEUE_EXPIRED
    assert expired.max_queue_seconds == 1
    message = expired.history[-1].message
    assert message.startswith("waited ") and message.endswith("; its queue limit is 1 s"), message
    assert not expired.HasField("started")  # it never held capacity, nor ran
    release(client, blocker)
    # Nothing of the expired stage (nor the stopped one) holds the one slot: the next stage runs.
    later = client.start(workflow("echo ran"))
    assert [j.status for j in client.wait(later.workflow_id, timeout=60)] == [S.JOB_STATUS_FINISHED]


def test_a_workflow_asking_more_than_the_environment_allows_gets_the_environments_limit(
    client: Client,
) -> None:
    env = environment(client)
    assert env.max_queue_seconds == ENV_MAX
    asked_more = client.start(workflow("echo capped", queue_seconds=10**6))
    asked_nothing = client.start(workflow("echo default"))
    asked_less = client.start(workflow("echo less", queue_seconds=30))
    limits = [job(client, s.workflow_id).max_queue_seconds for s in (asked_more, asked_nothing, asked_less)]
    assert limits == [ENV_MAX, ENV_MAX, 30]
    for started in (asked_more, asked_nothing, asked_less):
        client.wait(started.workflow_id, timeout=60)
    with pytest.raises(C2DError) as refused:  # beyond any duration the node takes: refused, not capped
        client.start(workflow("echo absurd", queue_seconds=2**32 - 1))
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.message.startswith("workflow.max_queue_seconds = 4294967295 is out of range")


def test_get_environments_counts_the_waiting_stage_which_runs_once_capacity_frees(client: Client) -> None:
    blocker = hold_capacity(client, workflow("sleep 600"))
    queued = client.start(workflow("echo waited"))
    env = wait_for(lambda: (e := environment(client)).free_queue.queued_jobs and e, 30, "the queued stage")
    assert (env.queued_jobs, env.free_queue.queued_jobs, env.paid_queue.queued_jobs) == (1, 1, 0)
    assert env.free_queue.longest_wait_seconds >= 1
    assert env.paid_queue.longest_wait_seconds == 0
    assert env.running_jobs == 1
    assert job(client, queued.workflow_id).status == S.JOB_STATUS_QUEUED
    release(client, blocker)
    (ran,) = client.wait(queued.workflow_id, timeout=60)
    assert ran.status == S.JOB_STATUS_FINISHED  # its 600 s were far from spent
    after = environment(client)
    assert (after.queued_jobs, after.free_queue.queued_jobs, after.free_queue.longest_wait_seconds) == (
        0,
        0,
        0,
    )


def test_the_cli_lists_the_queue_per_tier(node: NodeProcess, client: Client) -> None:
    from c2d.cli.render import ENV_COLUMNS, env_row

    blocker = hold_capacity(client, workflow("sleep 600"))
    queued = client.start(workflow("echo listed"))
    env = wait_for(lambda: (e := environment(client)).free_queue.queued_jobs and e, 30, "the queued stage")
    row = dict(zip(ENV_COLUMNS, env_row(env), strict=True))
    assert row["queued free"].startswith("1 (longest ")
    assert (row["queued paid"], row["max queue"]) == ("0", "10m")
    release(client, blocker)
    client.wait(queued.workflow_id, timeout=60)


def test_a_restart_keeps_when_a_waiting_stage_was_queued_and_its_deadline(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(CONFIG)
    data_dir = tmp_path / "data"
    key = auth.new_private_key()
    node = NodeProcess(data_dir, config=config)
    try:
        node.wait_environment(ENV)
        with Client(node.address, key) as client:
            hold_capacity(client, workflow("sleep 600"))
            queued = client.start(workflow("echo after the restart", queue_seconds=300))
            before = queue_times(data_dir, queued.stages[0].job_id)
        node.kill()
        node = NodeProcess(data_dir, config=config, port=node.port, pod_port=node.pod_port)
        node.wait_environment(ENV)
        with Client(node.address, key) as client:
            assert queue_times(data_dir, queued.stages[0].job_id) == before
            assert before[1] == before[0] + 300 and before[2] == 300
            for workflow_id in {j.workflow_id for j in client.status(all=True) if not j.terminal}:
                client.stop(workflow_id=workflow_id)
            client.wait(queued.workflow_id, timeout=60)
        node.settle()
    finally:
        node.kill()


def queue_times(data_dir: Path, job_id: str) -> tuple[float, float, int]:
    """(queued_at, queue_deadline, queue_limit_seconds) as the node's SQLite database has them."""
    with sqlite3.connect(f"file:{data_dir / 'node.db'}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT queued_at, queue_deadline, queue_limit_seconds FROM stage WHERE job_id = ?", (job_id,)
        ).fetchone()
    assert row is not None and None not in row, row
    return row[0], row[1], row[2]


# -- the scheduler's rules, at explicit times ---------------------------------------------------

NO_ENGINE = stages.Terms({}, 3600.0)  # no environment grants: every queued stage waits


def new_stage(job_id: str, index: int, limit: int, after: list[str] | None = None) -> stages.NewStage:
    return stages.NewStage(
        job_id=job_id,
        index=index,
        environment_id=ENV,
        engine="external_stub",
        status=S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE if after else S.JOB_STATUS_QUEUED,
        spec={},
        run_after=after or [],
        resources=[],
        max_duration_seconds=60,
        queue_limit_seconds=limit,
    )


def store(workflow_id: str, created_at: float, *new: stages.NewStage, free: bool = True) -> None:
    stages.store_workflow(
        stages.NewWorkflow(workflow_id, "0xabc", ENV, free, [], created_at, stages=list(new))
    )


def test_a_queued_stage_expires_only_once_its_own_limit_has_passed(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    store("w", 1000.0, new_stage("short", 0, 10))
    store("v", 1000.0, new_stage("long", 0, 100))
    assert stages.schedule(1010.0, NO_ENGINE).changes.ended == []  # at the limit, not past it
    ended = stages.schedule(1010.25, NO_ENGINE).changes.ended
    assert [(e.job_id, e.status) for e in ended] == [("short", S.JOB_STATUS_QUEUE_EXPIRED)]
    assert (
        ended[0].message == "waited 10 s in the queue without capacity becoming free; its queue limit is 10 s"
    )
    assert Stage.get_by_id("long").terminal is False


def test_a_stage_that_runs_after_another_counts_its_wait_from_when_it_was_queued(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    store("w", 1000.0, new_stage("first", 0, 10), new_stage("second", 1, 10, after=["first"]))
    # The first stage ran for an hour (longer than any queue limit) and finished.
    stages.end_stage("first", S.JOB_STATUS_FINISHED, "done", 4600.0, NO_ENGINE)
    stages.schedule(4600.0, NO_ENGINE)
    second = Stage.get_by_id("second")
    assert (second.status, second.queued_at, second.queue_deadline) == (S.JOB_STATUS_QUEUED, 4600.0, 4610.0)
    assert stages.schedule(4609.0, NO_ENGINE).changes.ended == []
    assert [e.job_id for e in stages.schedule(4611.0, NO_ENGINE).changes.ended] == ["second"]


def test_the_queue_is_counted_per_environment_and_tier_from_the_first_queued(
    tmp_path: Path, store_url: str | None
) -> None:
    open_database(tmp_path, store_url)
    store("f1", 1000.0, new_stage("f1", 0, 100))
    store("f2", 1005.0, new_stage("f2", 0, 100), new_stage("f2-next", 1, 100, after=["f2"]))
    store("p1", 1002.0, new_stage("p1", 0, 100), free=False)
    counted = counts.environment_counts()[ENV]
    assert counted.running == 0
    assert (counted.free.queued, counted.free.first_queued_at) == (2, 1000.0)  # not the one waiting
    assert (counted.paid.queued, counted.paid.first_queued_at) == (1, 1002.0)


# -- paid: a stage that expires in the queue costs nothing ------------------------------------

SETTLED: set[int] = {compute_pb2.PAYMENT_STATUS_CLAIMED, compute_pb2.PAYMENT_STATUS_RELEASED}


@pytest.fixture(scope="module")
def paid_node(tmp_path_factory: pytest.TempPathFactory, anvil: DevChain) -> Iterator[NodeProcess]:
    env = {
        **stub_env(anvil),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": (
            f'[{{id = "{PAID_ENV}", cpu = 1, ram_gib = 1, disk_gib = 1, max_jobs = 1}}]'
        ),
        f"C2D_ENVIRONMENTS__{PAID_ENV.upper()}__MAX_QUEUE_SECONDS": str(ENV_MAX),
    }
    with running_node(tmp_path_factory.mktemp("paid-queue"), env=env) as node:
        node.wait_environment(PAID_ENV)
        fund_node(anvil, node.node_key())
        yield node
        node.settle()


def test_a_paid_stage_that_expires_in_the_queue_is_not_charged_and_its_lock_goes_back(
    paid_node: NodeProcess, anvil: DevChain
) -> None:
    consumer = new_consumer(anvil, auth.address_of(paid_node.node_key()))
    pay = payment(anvil)
    with Client(paid_node.address, consumer.key) as client:
        blocker = hold_capacity(
            client, workflow("sleep 600", env=PAID_ENV), lambda doc: client.start(doc, payment=pay)
        )
        expiring = client.start(workflow("echo never", queue_seconds=1, env=PAID_ENV), payment=pay)
        waiting = client.start(workflow("echo later", env=PAID_ENV), payment=pay)
        assert expiring.quote is not None and waiting.quote is not None
        assert expiring.quote.min_lock_seconds + ENV_MAX - 1 == waiting.quote.min_lock_seconds  # 1 s queue
        (expired,) = client.wait(expiring.workflow_id, timeout=60)
        assert expired.status == S.JOB_STATUS_QUEUE_EXPIRED
        settled = wait_payment(client, expiring.workflow_id, SETTLED)
        assert (settled.status, settled.claimed_amount) == (compute_pb2.PAYMENT_STATUS_RELEASED, "0")
        assert [int(e["args"]["amount"]) for e in claimed_events(anvil, expiring.workflow_id)] in ([], [0])
        held = int(job(client, blocker).payment.locked_amount) + int(waiting.quote.amount)
        assert consumer.funds(anvil) == (DEPOSIT - held, held)  # only the other two stay locked
        env = next(e for e in client.environments() if e.id == PAID_ENV)
        assert (env.paid_queue.queued_jobs, env.free_queue.queued_jobs) == (1, 0)  # the one still waiting
        assert env.paid_queue.longest_wait_seconds >= 1
        release(client, blocker)
        (ran,) = client.wait(waiting.workflow_id, timeout=60)
        assert ran.status == S.JOB_STATUS_FINISHED
        wait_payment(client, waiting.workflow_id, SETTLED)
