"""The node's rules for environments, on the Docker engine: who may use a tier, fair use, the
queue's limits and claims in batches, each on real containers.

One node (``python -m host`` with the Docker engine) on anvil for the module, over real gRPC
through the SDK; its environments are small ones of the one Docker machine, each configured for
one rule. The stub engine's tests (tests/test_env_access.py, test_fair_use.py,
test_queue_limits.py, test_payment_batches.py) say the same of the node alone; these show the
rules hold when the jobs are containers: refused requests start none, granted ones run with
exactly what was granted, and what was billed is what ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from accesstoken import AccessToken, deploy_access_token
from eth_typing import HexStr
from paidnode import (
    DEPOSIT,
    PRICES,
    Settling,
    assert_each_claimed_once,
    claimed_events,
    fund_node,
    new_consumer,
    payment,
    stage,
    wait_payment,
)
from queueing import hold_capacity, job, release
from refusals import refused_quote_and_start, refused_start

from c2d import auth, billing
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d_docker_engine.containers import JOB_CPU_SHARES
from host.chain.devchain import DevChain
from nodeproc import NodeProcess, free_port, wait_for

pytestmark = pytest.mark.docker

S = common_pb2.JobStatus
P = compute_pb2
SETTLED: set[int] = {P.PAYMENT_STATUS_CLAIMED, P.PAYMENT_STATUS_RELEASED}
GIB = 1 << 30

LISTED = "docker-listed"  # free tier for the allow list only
HELD = "docker-held"  # paid tier for holders of the access token
FAIR = "docker-fair"  # per-job maximum and a constraint
FLOOR = "docker-floor"  # min_job_duration_seconds: a short stage pays for the minimum
QUEUE = "docker-queue"  # one job at a time
BATCH = "docker-batch"  # two jobs at a time, for the blocker of the batch test
BATCH_RUNNERS = 2
FLOOR_SECONDS = 120
ENV_MAX_QUEUE = 600


def engine_config(pod_image: str) -> str:
    def env(env_id: str, cpu: int = 1, ram: int = 1, disk: int = 1, extra: str = "") -> str:
        return (
            f'[[engines.docker.environments]]\nid = "{env_id}"\n'
            f"cpu = {cpu}\nram_gib = {ram}\ndisk_gib = {disk}\n{extra}\n"
        )

    return (
        f'[engines.docker]\npod_image = "{pod_image}"\n\n'
        + env(LISTED)
        + env(HELD)
        + env(FAIR, cpu=2, ram=4)
        + env(FLOOR, extra=f"min_job_duration_seconds = {FLOOR_SECONDS}")
        + env(QUEUE, extra="max_jobs = 1")
        + env(
            BATCH,
            cpu=BATCH_RUNNERS,
            ram=BATCH_RUNNERS,
            disk=BATCH_RUNNERS,
            extra=f"max_jobs = {BATCH_RUNNERS}",
        )
    )


def terms_config(chain: DevChain, token: str, allowed: str) -> str:
    prices = ", ".join(f'{{ resource_id = "{r}", price_per_unit_minute = "{p}" }}' for r, p in PRICES.items())
    fees = f'chain_id = {chain.chain_id}\ntoken_address = "{chain.token_address}"\nprices = [{prices}]\n'

    def paid(env_id: str) -> str:
        return f'[[environments."{env_id}".fees]]\n{fees}\n'

    return f"""
[environments."{LISTED}".free]
allow = ["{allowed}"]

{paid(HELD)}
[environments."{HELD}".free]
enabled = false
[environments."{HELD}".paid]
access_lists = [{{ chain_id = {chain.chain_id}, address = "{token}" }}]

[environments."{FAIR}".resources.cpu]
max = 1
[environments."{FAIR}".resources.ram]
constraints = [{{ id = "cpu", min = 1, max = 2 }}]
[environments."{FAIR}".free]
max_job_duration_seconds = 600
{paid(FAIR)}
{paid(FLOOR)}
[environments."{QUEUE}"]
max_queue_seconds = {ENV_MAX_QUEUE}
[environments."{QUEUE}".free]
max_job_duration_seconds = 600
{paid(QUEUE)}
{paid(BATCH)}
"""


@dataclass
class Rules:
    node: NodeProcess
    chain: DevChain
    token: AccessToken
    allowed_key: str
    payee: str
    image: str  # NAME:TAG of the busybox image every stage runs in


@pytest.fixture(scope="module")
def rules(
    tmp_path_factory: pytest.TempPathFactory, anvil: DevChain, pod_image: str, busybox_image: str
) -> Iterator[Rules]:
    assert anvil.rpc_url is not None
    root = tmp_path_factory.mktemp("docker-rules")
    token = deploy_access_token(anvil)
    allowed_key = auth.new_private_key()
    config = root / "node.toml"
    config.write_text(
        engine_config(pod_image) + terms_config(anvil, token.address, auth.address_of(allowed_key))
    )
    env = {
        "C2D_LOAD_PLUGINS": "docker",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",  # on the bridge gateway, where the pods reach it
        "C2D_CHAIN__ESCROW_ADDRESS": anvil.escrow_address,
        "C2D_CHAIN__CHAIN_ID": str(anvil.chain_id),
        "C2D_CHAIN__RPC_URL": anvil.rpc_url,
        "C2D_CHAIN__RETRY_MAX_SECONDS": "1",
        "C2D_CHAIN__ACCESS_CACHE_SECONDS": "0",  # a token minted now grants now
        # while the batch test holds the chain's mining, the claim in flight waits for its receipt
        "C2D_CHAIN__RECEIPT_TIMEOUT_SECONDS": "900",
    }
    node = NodeProcess(root / "data", config=config, env=env)
    try:
        for env_id in (LISTED, HELD, FAIR, FLOOR, QUEUE, BATCH):
            node.wait_environment(env_id, timeout=60)
        payee = fund_node(anvil, node.node_key())
        yield Rules(node, anvil, token, allowed_key, payee, busybox_image)
        node.settle("docker", timeout=60)
    finally:
        node.kill()


def one_stage(rules: Rules, env_id: str, script: str, **fields: Any) -> dict[str, Any]:
    return {"environment": env_id, "stages": [stage(0, script, image=rules.image)], **fields}


def output(client: Client, finished: compute_pb2.JobInfo, name: str, out_dir: Path) -> str:
    """The text of the stage's output file ``name``, fetched through the node."""
    paths = client.results(finished.job_id, out_dir)
    (found,) = [p for p in paths if p.name == name]
    return found.read_text().strip()


def finished(client: Client, workflow_id: str) -> compute_pb2.JobInfo:
    (ended,) = client.wait(workflow_id, timeout=180)
    assert ended.status == S.JOB_STATUS_FINISHED, [(e.status, e.message) for e in ended.history]
    return ended


# -- who may use a tier (docs/access.md) ---------------------------------------------------------


def test_an_allow_list_free_tier_refuses_a_stranger_and_runs_a_listed_consumer(
    rules: Rules, tmp_path: Path
) -> None:
    doc = one_stage(rules, LISTED, "echo listed > /data/outputs/who.txt")
    with Client(rules.node.address, auth.new_private_key()) as stranger:
        err = refused_start(stranger, doc)
    assert err.code == "PERMISSION_DENIED", err
    assert err.message == (
        f"environment '{LISTED}': the free tier is restricted; to use it, "
        "be on the environment's allow list (ask the node's operator)"
    )
    with Client(rules.node.address, rules.allowed_key) as listed:
        ended = finished(listed, listed.start(doc, free=True).workflow_id)
        assert output(listed, ended, "who.txt", tmp_path) == "listed"


def test_an_access_list_paid_tier_runs_the_payer_once_the_token_is_minted(
    rules: Rules, tmp_path: Path
) -> None:
    consumer = new_consumer(rules.chain, rules.payee)
    doc = one_stage(rules, HELD, "echo held > /data/outputs/who.txt")
    pay = payment(rules.chain)
    with Client(rules.node.address, consumer.key) as client:
        err = refused_start(client, doc, pay)
        assert err.code == "PERMISSION_DENIED", err
        grants = f"hold a token of {rules.token.address.lower()} on chain {rules.chain.chain_id}"
        assert f"environment '{HELD}': the paid tier is restricted; to use it, {grants}" in err.message
        assert consumer.funds(rules.chain) == (DEPOSIT, 0)  # nothing locked
        assert consumer.escrow.get_locks(rules.chain.token_address, consumer.address) == []
        rules.token.mint(consumer.address, 1)
        started = client.start(doc, payment=pay)
        assert started.payment is not None and started.payment.status == P.PAYMENT_STATUS_LOCKED
        ended = finished(client, started.workflow_id)
        assert output(client, ended, "who.txt", tmp_path) == "held"
        paid = wait_payment(client, started.workflow_id, SETTLED)
    assert paid.status == P.PAYMENT_STATUS_CLAIMED and int(paid.claimed_amount) > 0
    assert consumer.funds(rules.chain) == (DEPOSIT - int(paid.claimed_amount), 0)


# -- fair use (docs/fair-use.md) -----------------------------------------------------------------


def fair(rules: Rules, script: str, **resources: float) -> dict[str, Any]:
    asked = [{"id": rid, "amount": amount} for rid, amount in resources.items()]
    return one_stage(rules, FAIR, script, resources=asked)


def test_more_than_the_per_job_maximum_or_a_constraint_is_refused_on_docker(rules: Rules) -> None:
    pay = payment(rules.chain)
    with Client(rules.node.address, auth.new_private_key()) as client:
        over_max = refused_quote_and_start(client, fair(rules, "true", cpu=2), pay)
        over_constraint = refused_quote_and_start(client, fair(rules, "true", cpu=1, ram=3), pay)
    assert over_max.code == over_constraint.code == "INVALID_ARGUMENT", (over_max, over_constraint)
    assert "stage 0: cpu 2 cores is above the maximum of 1 cores per job" in over_max.message
    assert "stage 0: ram 3 GiB is more than 2 GiB per cpu for 1 cpu (2 GiB)" in over_constraint.message
    assert "Traceback" not in over_max.message + over_constraint.message


def algorithm_container(docker_client: Any, job_id: str) -> Any:
    """The job's running algorithm container, found by the labels the engine gives it."""
    found = docker_client.containers.list(filters={"label": [f"c2d.job={job_id}", "c2d.role=algorithm"]})
    return found[0] if found and found[0].status == "running" else None


def test_a_request_within_the_terms_runs_with_exactly_the_granted_resources(
    rules: Rules, docker_client: Any, tmp_path: Path
) -> None:
    """cpu 1 and ram 2 (the most 1 cpu allows): the container's CPU quota and memory limit are
    those, at a CPU weight below the node's; the algorithm waits for the test to have looked (a file the test makes in it)."""
    script = "while [ ! -e /tmp/seen ]; do sleep 0.1; done; echo ran > /data/outputs/ran.txt"
    with Client(rules.node.address, auth.new_private_key()) as client:
        started = client.start(fair(rules, script, cpu=1, ram=2), free=True)
        job_id = started.stages[0].job_id
        container = wait_for(lambda: algorithm_container(docker_client, job_id), 120, "the algorithm running")
        host_config = container.attrs["HostConfig"]
        assert (host_config["NanoCpus"], host_config["Memory"]) == (10**9, 2 * GIB), host_config
        assert host_config["MemorySwap"] == 2 * GIB  # no swap beyond the grant
        assert host_config["CpuShares"] == JOB_CPU_SHARES  # the node's processes weigh 1,024
        assert container.exec_run(["touch", "/tmp/seen"]).exit_code == 0
        ended = finished(client, started.workflow_id)
        assert {r.id: r.amount for r in ended.resources} == {"cpu": 1, "ram": 2, "disk": 1}
        assert output(client, ended, "ran.txt", tmp_path) == "ran"


def test_a_paid_stage_shorter_than_the_minimum_duration_is_billed_the_minimum(rules: Rules) -> None:
    consumer = new_consumer(rules.chain, rules.payee)
    with Client(rules.node.address, consumer.key) as client:
        started = client.start(one_stage(rules, FLOOR, "true"), payment=payment(rules.chain))
        assert started.quote is not None
        lines = list(started.quote.breakdown)
        assert {line.min_minutes for line in lines} == {FLOOR_SECONDS // 60}
        ended = finished(client, started.workflow_id)
        paid = wait_payment(client, started.workflow_id, SETTLED)
    ran = (ended.algorithm_finished.ToNanoseconds() - ended.started.ToNanoseconds()) / 1e9
    assert ran < 60, "the stage ran a minute or more: the floor would not show"
    floor = sum(billing.line_cost(x.amount, x.price_per_unit_minute, FLOOR_SECONDS // 60) for x in lines)
    one_minute = sum(billing.line_cost(x.amount, x.price_per_unit_minute, 1) for x in lines)
    assert floor > one_minute
    assert paid.status == P.PAYMENT_STATUS_CLAIMED and int(paid.claimed_amount) == floor, paid
    assert [int(e["args"]["amount"]) for e in claimed_events(rules.chain, started.workflow_id)] == [floor]
    assert consumer.funds(rules.chain) == (DEPOSIT - floor, 0)


# -- the queue's limits (README: waiting for capacity) -------------------------------------------


def queued(rules: Rules, script: str, queue_seconds: int | None = None) -> dict[str, Any]:
    doc = one_stage(rules, QUEUE, script)
    if queue_seconds is not None:
        doc["queueMaxWaitTime"] = queue_seconds
    return doc


def assert_expired_in_the_queue(client: Client, workflow_id: str) -> None:
    (expired,) = client.wait(workflow_id, timeout=120)
    assert expired.status == S.JOB_STATUS_QUEUE_EXPIRED, [(e.status, e.message) for e in expired.history]
    assert expired.max_queue_seconds == 1
    # the expiry's own event (a paid one's history goes on with its payment settling)
    message = next(e.message for e in expired.history if e.status == S.JOB_STATUS_QUEUE_EXPIRED)
    assert message.startswith("waited ") and message.endswith("; its queue limit is 1 s"), message
    assert not expired.HasField("started")  # it never held capacity, nor ran


def test_a_stage_queued_past_its_limit_expires_behind_a_running_container(rules: Rules) -> None:
    with Client(rules.node.address, auth.new_private_key()) as client:
        blocker = hold_capacity(client, queued(rules, "sleep 600"))
        try:
            expiring = client.start(queued(rules, "echo never", queue_seconds=1), free=True)
            assert_expired_in_the_queue(client, expiring.workflow_id)
        finally:
            release(client, blocker)
        # nothing of the expired stage (nor the stopped one) holds the one slot: the next one runs
        finished(client, client.start(queued(rules, "echo ran"), free=True).workflow_id)


def test_a_paid_stage_that_expires_in_the_queue_is_not_charged_and_its_lock_goes_back(rules: Rules) -> None:
    consumer = new_consumer(rules.chain, rules.payee)
    pay = payment(rules.chain)
    with Client(rules.node.address, consumer.key) as client:
        blocker = hold_capacity(
            client, queued(rules, "sleep 600"), lambda doc: client.start(doc, payment=pay)
        )
        try:
            expiring = client.start(queued(rules, "echo never", queue_seconds=1), payment=pay)
            assert_expired_in_the_queue(client, expiring.workflow_id)
            settled = wait_payment(client, expiring.workflow_id, SETTLED)
            assert (settled.status, settled.claimed_amount) == (P.PAYMENT_STATUS_RELEASED, "0")
            assert [int(e["args"]["amount"]) for e in claimed_events(rules.chain, expiring.workflow_id)] in (
                [],
                [0],
            )
            held = int(job(client, blocker).payment.locked_amount)
            assert consumer.funds(rules.chain) == (DEPOSIT - held, held)  # only the blocker's stays locked
        finally:
            release(client, blocker)
        wait_payment(client, blocker, SETTLED)


# -- claims in batches (host/payments/settle.py) -------------------------------------------------


def test_paid_docker_workflows_settling_together_are_claimed_in_a_batch(rules: Rules) -> None:
    """Five workflows end while the chain does not mine: claimed in fewer transactions than five,
    by claimLocks, each lock once."""
    settling = Settling(rules.node, rules.chain, 5, env=BATCH, runners=BATCH_RUNNERS, image=rules.image)
    try:
        try:
            settling.release_while_not_mining()
        finally:
            settling.mine_again()
        paid = settling.payments(rules.node)
        txs = assert_each_claimed_once(rules.chain, settling, paid)
    finally:
        settling.close()
    assert len(txs) < 5 and len(txs) <= 2, {tx: len(ids) for tx, ids in txs.items()}
    # five locks in at most two transactions: one holds three or more, claimed by claimLocks
    contract = rules.chain.escrow(rules.chain.deployer_key).contract
    batch = max(txs, key=lambda tx: len(txs[tx]))
    function, _ = contract.decode_function_input(rules.chain.w3.eth.get_transaction(HexStr(batch))["input"])
    assert function.fn_name.startswith("claimLocks"), function.fn_name
