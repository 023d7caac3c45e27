"""The free tier as an operator configures it: a node started with a TOML file (production mode).

``[environments."<id>".free]`` turns the free tier on for one environment and
sets its limits; an environment without such a table has no free tier once a
config file is given (only a development node, without a file, computes for
free everywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from nodeproc import NodeProcess, running_node, wait_for

FREE_ENV = "stub-local"
PAID_ENV = "stub-paid"
SHARED_ENV = "stub-shared"
TOKEN = "0x" + "ab" * 20
PAYMENT = compute_pb2.Payment(chain_id=31337, token_address=TOKEN)
S = common_pb2.JobStatus
CONFIG = f"""
[engines.external_stub]
enabled = true

[[engines.external_stub.environments]]
id = "{FREE_ENV}"
cpu = 2
ram_gib = 4
disk_gib = 4

[[engines.external_stub.environments]]
id = "{PAID_ENV}"
cpu = 1
ram_gib = 1
disk_gib = 1

[[engines.external_stub.environments]]
id = "{SHARED_ENV}"
cpu = 2
ram_gib = 2
disk_gib = 1

[environments."{FREE_ENV}".free]
max_jobs_per_consumer = 1
max_job_duration_seconds = 60

[[environments."{PAID_ENV}".fees]]
chain_id = 31337
token_address = "{TOKEN}"
token_symbol = "TST"
prices = [{{ resource_id = "cpu", price_per_unit_minute = "1000" }}]

[environments."{SHARED_ENV}".free]
max_concurrent_jobs = 1
"""


def workflow(
    env: str = FREE_ENV, script: str = "sleep 30", stages: int = 1, duration: int | None = 30
) -> dict:
    doc: dict[str, Any] = {
        "environment": env,
        "stages": [
            {
                "index": i,
                "algorithm": {
                    "rawcode": script,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
            for i in range(stages)
        ],
    }
    if duration is not None:
        doc["maxJobDuration"] = duration
    return doc


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("free-tier")
    config = root / "node.toml"
    config.write_text(CONFIG)
    with running_node(root / "data", config=config) as node:
        node.wait_listening()
        node.wait_environment(FREE_ENV)
        node.wait_environment(PAID_ENV)
        yield node
        node.settle()


@pytest.fixture
def new_consumer(node: NodeProcess) -> Iterator[Callable[[], Client]]:
    """Makes fresh consumers; whatever they started is stopped afterwards, so their slots free up."""
    made: list[Client] = []

    def new() -> Client:
        made.append(Client(node.address, auth.new_private_key()))
        return made[-1]

    yield new
    for client in made:
        for workflow_id in {job.workflow_id for job in client.status(all=True)}:
            stop(node, client, workflow_id)
        client.close()


def stop(node: NodeProcess, client: Client, workflow_id: str) -> None:
    """Stops a workflow once its stages run, and waits until it has ended.

    Not earlier: a StopCompute that reaches the engine while it is still starting the stage can
    be ignored (the stage then runs to its end) or end the stage as "lost" instead of "stopped".
    """

    def started() -> bool:
        return all(
            job.terminal or job.status == S.JOB_STATUS_RUNNING
            for job in client.status(workflow_id=workflow_id)
        )

    wait_for(started, 20, f"workflow {workflow_id} to run")
    if not all(job.terminal for job in client.status(workflow_id=workflow_id)):
        client.stop(workflow_id=workflow_id)
    wait_ended(node, client, workflow_id)


def wait_ended(node: NodeProcess, client: Client, workflow_id: str, timeout: float = 20) -> None:
    def ended() -> bool:
        return all(job.terminal for job in client.status(workflow_id=workflow_id))

    try:
        wait_for(ended, timeout, f"workflow {workflow_id} to end")
    except AssertionError as exc:
        jobs = [
            (job.status_text, [e.status for e in job.history])
            for job in client.status(workflow_id=workflow_id)
        ]
        warnings = [r for r in node.logs if r.get("level") in ("warning", "error")]
        raise AssertionError(f"{exc}: {jobs}; node warnings: {warnings}") from None


def refusal(client: Client, doc: dict) -> C2DError:
    with pytest.raises(C2DError) as caught:
        client.start(doc, free=True)
    return caught.value


def test_environments_show_the_free_tier_terms(node: NodeProcess) -> None:
    envs = {env.id: env for env in node.environments()}
    free = envs[FREE_ENV].free
    assert free.enabled
    assert (free.max_jobs_per_consumer, free.max_job_duration_seconds) == (1, 60)
    assert not envs[PAID_ENV].free.enabled


def test_one_free_job_at_a_time_per_consumer(node: NodeProcess, new_consumer: Callable[[], Client]) -> None:
    alice, bob = new_consumer(), new_consumer()
    first = alice.start(workflow(), free=True)
    assert not alice.initialize(workflow()).free_eligible

    error = refusal(alice, workflow())
    assert error.code == "PERMISSION_DENIED", error
    assert "allows 1 jobs per consumer at once" in error.message
    assert "you have 1 running or queued" in error.message
    assert len(alice.status(all=True)) == 1  # the refused workflow left nothing behind

    # Another consumer is not held back by alice's job.
    assert bob.initialize(workflow()).free_eligible
    bob.start(workflow(), free=True)

    # Once alice's job has ended, she may start another.
    stop(node, alice, first.workflow_id)
    assert alice.initialize(workflow()).free_eligible
    alice.start(workflow(script="true"), free=True)


def test_a_workflow_with_more_stages_than_the_limit_is_refused(new_consumer: Callable[[], Client]) -> None:
    carol = new_consumer()
    error = refusal(carol, workflow(stages=2))
    assert error.code == "PERMISSION_DENIED", error
    assert "allows 1 jobs per consumer" in error.message
    assert carol.status(all=True) == []


def test_a_duration_above_the_free_maximum_is_refused(new_consumer: Callable[[], Client]) -> None:
    dave = new_consumer()
    assert not dave.initialize(workflow(duration=120)).free_eligible
    error = refusal(dave, workflow(duration=120))
    assert error.code == "PERMISSION_DENIED", error
    assert "max duration 120s exceeds the free tier's 60s" in error.message
    assert dave.status(all=True) == []


def test_an_environment_without_a_free_table_has_no_free_tier(new_consumer: Callable[[], Client]) -> None:
    erin = new_consumer()
    assert not erin.initialize(workflow(env=PAID_ENV)).free_eligible
    error = refusal(erin, workflow(env=PAID_ENV))
    assert error.code == "PERMISSION_DENIED", error
    assert f"environment {PAID_ENV!r} has no free tier" in error.message
    assert erin.status(all=True) == []


def test_initialize_reports_free_eligibility_without_starting_anything(
    new_consumer: Callable[[], Client],
) -> None:
    frank = new_consumer()
    assert frank.initialize(workflow()).free_eligible
    assert frank.initialize(workflow()).free_eligible  # asking twice changes nothing
    assert frank.status(all=True) == []


def test_a_free_stage_without_a_duration_gets_the_free_maximum(new_consumer: Callable[[], Client]) -> None:
    grace = new_consumer()
    started = grace.start(workflow(script="true", duration=None), free=True)
    (job,) = grace.wait(started.workflow_id, timeout=30)
    assert job.max_duration_seconds == 60
    assert job.status == S.JOB_STATUS_FINISHED


def test_the_free_tier_caps_jobs_of_all_consumers_together(
    node: NodeProcess, new_consumer: Callable[[], Client]
) -> None:
    heidi, ivan = new_consumer(), new_consumer()
    first = heidi.start(workflow(env=SHARED_ENV), free=True)
    error = refusal(ivan, workflow(env=SHARED_ENV))
    assert error.code == "PERMISSION_DENIED", error
    assert f"the free tier of {SHARED_ENV!r} is full: 1 of 1" in error.message
    stop(node, heidi, first.workflow_id)
    ivan.start(workflow(env=SHARED_ENV, script="true"), free=True)


def test_initialize_quotes_a_paid_environment_in_its_token(new_consumer: Callable[[], Client]) -> None:
    judy = new_consumer()
    quote = judy.initialize(workflow(env=PAID_ENV, duration=120), payment=PAYMENT).quote
    assert quote.amount == "2000"  # 1 cpu x 1000 per minute x 2 minutes
    assert quote.token_address == TOKEN and quote.chain_id == 31337
    with pytest.raises(C2DError) as caught:
        judy.initialize(workflow(env=PAID_ENV), payment=compute_pb2.Payment(chain_id=1, token_address=TOKEN))
    error = caught.value
    assert error.code == "FAILED_PRECONDITION" and "accepts TST on chain 31337" in error.message
