"""Paid compute settled through Ocean Protocol's own Escrow (``[chain] escrow_kind = "ocean"``).

Ocean's Escrow and FactoryRouter are deployed on anvil from ``@oceanprotocol/contracts`` 2.6.0
(tests/oceanjs, ``npm ci``); the node is a real process with the stub engine, paid through the
gRPC face here (tests/test_ocean_gateway.py pays through the Ocean face with ocean.js). The
payments pipeline is the one every node runs; these tests check what differs on Ocean's
contract: its lock listing, its cancellations, and the community fee taken from each claim.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from oceanescrow import ESCROW_ARTIFACT, OceanEscrow, artifact, deploy_ocean_escrow, ocean_env
from paidnode import (
    DEPOSIT,
    ENV,
    Consumer,
    Settling,
    events_by_tx,
    fund_node,
    payment,
    per_minute,
    stub_env,
    two_stages,
    wait_payment,
)
from paidnode import node_env as batch_node_env
from tcpproxy import TcpProxy

from c2d import auth, billing
from c2d.chain.client import job_id_to_uint
from c2d.chain.ocean import ocean_escrow_abi
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.chain.devchain import DevChain
from nodeproc import NodeProcess, running_node, wait_for
from oceanhttp import oceanjs, oceanjs_binary

S = common_pb2.JobStatus
P = compute_pb2
SETTLED = {P.PAYMENT_STATUS_CLAIMED, P.PAYMENT_STATUS_RELEASED}


@pytest.fixture(scope="module")
def ocean(anvil: DevChain) -> OceanEscrow:
    return deploy_ocean_escrow(anvil)


def node_env(ocean: OceanEscrow) -> dict[str, str]:
    return ocean_env(ocean, stub_env(ocean.chain))


@pytest.fixture
def own_node(tmp_path: Path, ocean: OceanEscrow) -> Iterator[list[NodeProcess]]:
    """A node of the test's own settling through Ocean's escrow; the list holds its incarnation."""
    node = NodeProcess(tmp_path / "node", env=node_env(ocean))
    node.wait_environment(ENV)
    fund_node(ocean.chain, node.node_key())
    holder = [node]
    try:
        yield holder
    finally:
        holder[-1].kill()


def claimed_events(ocean: OceanEscrow, workflow_id: str) -> list[object]:
    """Ocean's escrow's Claimed events for the workflow's lock: a claim made twice shows here."""
    contract = ocean.client(ocean.chain.deployer_key).contract
    lock_id = job_id_to_uint(workflow_id)
    return [e for e in contract.events.Claimed.get_logs(from_block=0) if int(e["args"]["jobId"]) == lock_id]


def assert_claimed_once(ocean: OceanEscrow, client: Client, workflow_id: str, consumer: Consumer) -> int:
    """One Claimed event for what the node's records say; the payer keeps exactly the rest."""
    paid = wait_payment(client, workflow_id, SETTLED)
    assert paid.status == P.PAYMENT_STATUS_CLAIMED
    events = claimed_events(ocean, workflow_id)
    assert len(events) == 1, f"claimed {len(events)} times"
    claimed = int(events[0]["args"]["amount"])  # type: ignore[index]
    assert claimed == int(paid.claimed_amount)
    assert consumer.funds(ocean.chain) == (DEPOSIT - claimed, 0)
    return claimed


def test_the_committed_abi_is_the_one_of_oceans_package() -> None:
    """sdk/c2d/chain/artifacts/OceanEscrow.abi.json is @oceanprotocol/contracts 2.6.0's Escrow ABI."""
    assert ocean_escrow_abi() == artifact(ESCROW_ARTIFACT)["abi"]


def test_the_adapter_lists_one_payees_locks_filtered_by_token_and_payer(ocean: OceanEscrow) -> None:
    """Ocean's getLocks matches its filters with "or"; the adapter's answer is exact."""
    payee_key = auth.new_private_key()
    payee = auth.address_of(payee_key)
    ocean.chain.fund(payee)
    first, second = ocean.consumer(payee), ocean.consumer(payee)
    node = ocean.client(payee_key)
    token = ocean.chain.token_address
    node.create_lock(11, token, first.address, 100, 3600)
    node.create_lock(12, token, second.address, 200, 3600)
    assert sorted(lock.job_id for lock in node.get_locks(payee=payee)) == [11, 12]
    (mine,) = node.get_locks(token, first.address, payee)
    assert (mine.job_id, mine.payer.lower(), mine.payee.lower(), mine.amount) == (
        11,
        first.address,
        payee,
        100,
    )
    assert mine.token == token
    assert node.get_locks(ocean.collector, None, payee) == []  # another token: none, not all
    assert node.lock_exists(12, token, second.address).amount == 200  # type: ignore[union-attr]
    assert node.lock_exists(12, token, first.address) is None


def test_a_paid_workflow_is_locked_and_claimed_in_oceans_escrow(
    own_node: list[NodeProcess], ocean: OceanEscrow
) -> None:
    node = own_node[0]
    payee = auth.address_of(node.node_key())
    consumer = ocean.consumer(payee)
    token = ocean.chain.token_address
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(), payment=payment(ocean.chain))
        assert started.payment.status == P.PAYMENT_STATUS_LOCKED
        assert started.payment.escrow_address == ocean.address
        locked = int(started.quote.amount)
        assert consumer.funds(ocean.chain) == (DEPOSIT - locked, locked)
        (lock,) = consumer.escrow.get_locks(token, consumer.address, payee)
        assert (lock.job_id, lock.amount) == (job_id_to_uint(started.workflow_id), locked)
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
        claimed = assert_claimed_once(ocean, client, started.workflow_id, consumer)
        proof = client.payment_proof(started.workflow_id)
    assert claimed == per_minute(started.quote, 0) + per_minute(started.quote, 1) < locked
    # the claim's proof on Ocean's escrow is the digest of the node's signed records
    (event,) = claimed_events(ocean, started.workflow_id)
    assert "0x" + bytes(event["args"]["proof"]).hex() == proof.digest  # type: ignore[index]
    check = billing.check_proof(proof.records, proof.node_signature, proof.digest, payee)
    assert check.ok, check.problems
    assert consumer.escrow.get_locks(payee=payee) == []
    # claimed and withdrawn: the node has the claim less Ocean's fee, the collector the fee
    fee = ocean.fee(claimed)
    assert consumer.escrow.balance_of(token, payee) == claimed - fee
    assert consumer.escrow.balance_of(token, ocean.collector) >= fee > 0


def test_a_refused_lock_in_oceans_escrow_stores_nothing(
    own_node: list[NodeProcess], ocean: OceanEscrow
) -> None:
    node = own_node[0]
    stranger = ocean.consumer(None)  # deposited, never authorized the node
    with Client(node.address, stranger.key) as client:
        with pytest.raises(C2DError) as err:
            client.start(two_stages(), payment=payment(ocean.chain))
        assert err.value.code == "FAILED_PRECONDITION" and "not authorized" in err.value.message
        assert client.status(all=True) == []
    assert stranger.funds(ocean.chain) == (DEPOSIT, 0)


def restart(node: NodeProcess, ocean: OceanEscrow) -> NodeProcess:
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=10)
    again = NodeProcess(node.data_dir, env=node_env(ocean), port=node.port, pod_port=node.pod_port)
    again.wait_listening()
    return again


def test_sigkill_after_the_lock_claims_once_in_oceans_escrow(
    own_node: list[NodeProcess], ocean: OceanEscrow
) -> None:
    node = own_node[0]
    consumer = ocean.consumer(auth.address_of(node.node_key()))
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(), payment=payment(ocean.chain))
    own_node.append(restart(node, ocean))
    with Client(own_node[-1].address, consumer.key) as client:
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
        claimed = assert_claimed_once(ocean, client, started.workflow_id, consumer)
    assert claimed == per_minute(started.quote, 0) + per_minute(started.quote, 1)


def test_an_expired_lock_is_cancelled_in_oceans_escrow_and_the_payer_keeps_it_all(
    own_node: list[NodeProcess], ocean: OceanEscrow
) -> None:
    """The node is down past its lock's expiry: back, it cancels the lock, and nothing is claimed."""
    node = own_node[0]
    payee = auth.address_of(node.node_key())
    consumer = ocean.consumer(payee)
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(first="sleep 600"), payment=payment(ocean.chain))
        first = started.stages[0].job_id
        wait_for(lambda: client.status(job_id=first)[0].status == S.JOB_STATUS_RUNNING, 30, "stage 0 running")
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=10)
    ocean.chain.advance_time(int(started.quote.min_lock_seconds) + 60)
    again = NodeProcess(node.data_dir, env=node_env(ocean), port=node.port, pod_port=node.pod_port)
    own_node.append(again)
    again.wait_listening()
    with Client(again.address, consumer.key) as client:
        client.stop(workflow_id=started.workflow_id)
        paid = wait_payment(client, started.workflow_id, SETTLED)
    assert paid.status == P.PAYMENT_STATUS_RELEASED and int(paid.claimed_amount or 0) == 0
    assert claimed_events(ocean, started.workflow_id) == []
    contract = ocean.client(ocean.chain.deployer_key).contract
    cancelled = [
        e
        for e in contract.events.Canceled.get_logs(from_block=0)
        if int(e["args"]["jobId"]) == job_id_to_uint(started.workflow_id)
    ]
    assert len(cancelled) == 1 and int(cancelled[0]["args"]["amount"]) == int(started.quote.amount)
    assert consumer.funds(ocean.chain) == (DEPOSIT, 0)
    assert consumer.escrow.get_locks(payee=payee) == []


# -- ocean.js: paying through Ocean's escrow with its own helpers, starting on the Ocean face ---


@pytest.fixture(scope="module")
def node_binary() -> str:
    return oceanjs_binary()


def ocean_consumer(ocean: OceanEscrow, tmp_path: Path) -> tuple[str, Path]:
    """A consumer with gas and test tokens in its wallet (nothing in the escrow yet), and its key file."""
    key = auth.new_private_key()
    ocean.chain.fund(auth.address_of(key), tokens=DEPOSIT)
    key_file = tmp_path / "consumer.key"
    key_file.write_text(key + "\n")
    return key, key_file


def paid_args(node: NodeProcess, ocean: OceanEscrow, key_file: Path, *extra: str) -> list[str]:
    chain = ocean.chain
    return [
        "paid",
        "--node", f"http://{node.http_address()}",
        "--key-file", str(key_file),
        "--env", ENV,
        "--rpc", str(chain.rpc_url),
        "--chain", str(chain.chain_id),
        "--token", chain.token_address,
        *extra,
    ]  # fmt: skip


def test_oceanjs_pays_through_oceans_escrow_and_the_node_claims_what_the_job_cost(
    own_node: list[NodeProcess], ocean: OceanEscrow, node_binary: str, tmp_path: Path
) -> None:
    node = own_node[0]
    payee = auth.address_of(node.node_key())
    key, key_file = ocean_consumer(ocean, tmp_path)
    summary = oceanjs(node_binary, *paid_args(node, ocean, key_file))
    pay = summary["quote"]["payment"]
    assert pay["escrowAddress"] == ocean.address and pay["payee"].lower() == payee
    assert (pay["chainId"], pay["token"]) == (ocean.chain.chain_id, ocean.chain.token_address)
    amount = int(pay["amount"])
    assert amount > 0 and pay["minLockSeconds"] >= 120
    deposit = 3 * amount
    assert summary["before"] == {"available": str(deposit), "locked": "0", "locks": []}
    started = summary["started"]
    assert started["isFree"] is False and started["payment"]["status"] == "locked"
    assert started["payment"]["lockTx"].startswith("0x")
    # the node locked the quote for the job: in Ocean's escrow, under the workflow's lock id
    lock_id = str(job_id_to_uint(started["workflowId"]))
    assert summary["locked"]["locked"] == str(amount)
    assert summary["locked"]["locks"] == [
        {"jobId": lock_id, "payer": summary["consumer"], "amount": str(amount)}
    ]
    ended = summary["ended"]
    assert ended["status"] == 70 and ended["payment"]["status"] == "claimed"
    claimed = int(ended["payment"]["cost"])
    assert 0 < claimed < amount and ended["payment"]["claimTx"].startswith("0x")
    # what the job cost went to the node (less Ocean's fee); the rest stayed the payer's
    assert summary["after"] == {"available": str(deposit - claimed), "locked": "0", "locks": []}
    events = claimed_events(ocean, started["workflowId"])
    assert len(events) == 1 and int(events[0]["args"]["amount"]) == claimed  # type: ignore[index]
    escrow = ocean.client(key)
    assert escrow.balance_of(ocean.chain.token_address, payee) == claimed - ocean.fee(claimed)


def test_oceanjs_paid_job_claims_once_across_a_sigkill_of_the_node(
    own_node: list[NodeProcess], ocean: OceanEscrow, node_binary: str, tmp_path: Path
) -> None:
    """Killed while the job runs (locked, not claimed): back, the job is stopped and claimed once."""
    node = own_node[0]
    key, key_file = ocean_consumer(ocean, tmp_path)
    script = "echo started\nsleep 600\n"
    summary = oceanjs(node_binary, *paid_args(node, ocean, key_file, "--script", script, "--no-wait"))
    started = summary["started"]
    amount = int(summary["quote"]["payment"]["amount"])
    with Client(node.address, key) as client:
        job_id = started["jobId"]
        wait_for(
            lambda: client.status(job_id=job_id)[0].status == S.JOB_STATUS_RUNNING, 30, "the job running"
        )
    own_node.append(restart(node, ocean))
    with Client(own_node[-1].address, key) as client:
        client.stop(job_id=job_id)
        paid = wait_payment(client, started["workflowId"], SETTLED)
    assert paid.status == P.PAYMENT_STATUS_CLAIMED
    events = claimed_events(ocean, started["workflowId"])
    assert len(events) == 1, f"claimed {len(events)} times"
    claimed = int(events[0]["args"]["amount"])  # type: ignore[index]
    assert 0 < claimed == int(paid.claimed_amount) < amount
    funds = ocean.client(key).get_user_funds(auth.address_of(key), ocean.chain.token_address)
    assert (funds.available, funds.locked) == (3 * amount - claimed, 0)


# -- several locks ready at once: one claimLocks on Ocean's escrow --------------------------


def test_workflows_ending_together_are_claimed_in_one_claim_locks_on_oceans_escrow(
    tmp_path: Path, ocean: OceanEscrow
) -> None:
    """Ocean's claimLocks settles the batch; each lock is claimed once and each payer keeps the rest."""
    chain = ocean.chain
    node = NodeProcess(tmp_path / "node", env=ocean_env(ocean, batch_node_env(chain)))
    try:
        node.wait_environment(ENV)
        fund_node(chain, node.node_key())
        settling = Settling(node, chain, 6)
        try:
            settling.release_while_not_mining()
            settling.mine_again()
            paid = settling.payments(node)
        finally:
            settling.close()
    finally:
        node.kill()
    txs = events_by_tx(chain, "Claimed", settling.lock_ids)
    per_lock = Counter(j for js in txs.values() for j in js)
    assert per_lock == Counter(settling.lock_ids), "a lock claimed twice, or not at all"
    # the claim in flight when the chain stopped mining, then all the others in one transaction
    assert len(txs) <= 2 and max(len(js) for js in txs.values()) >= 5, txs
    spent = Counter[int]()
    for (which, _), state in zip(settling.started, paid, strict=True):
        assert state.status == P.PAYMENT_STATUS_CLAIMED and int(state.claimed_amount) > 0
        spent[which] += int(state.claimed_amount)
    for which, consumer in enumerate(settling.consumers):
        assert consumer.funds(chain) == (DEPOSIT - spent[which], 0)


def test_a_node_configured_for_the_other_escrow_does_not_start(tmp_path: Path, ocean: OceanEscrow) -> None:
    """Ocean's escrow named without escrow_kind = "ocean": read with the other contract's calls its
    locks would be misread, so the node stops at start, as with another chain, naming the setting."""
    env = {**stub_env(ocean.chain), "C2D_CHAIN__ESCROW_ADDRESS": ocean.address}
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        assert node.process.wait(timeout=60) == 1
    finally:
        node.kill()
    (error,) = wait_for(lambda: node.log_events("cannot use the configured chain"), 10, "the error logged")
    assert (
        "is Ocean Protocol's Escrow" in error["error"]
        and 'set [chain] escrow_kind = "ocean"' in error["error"]
    )


def test_an_escrow_of_the_other_kind_found_later_locks_nothing(tmp_path: Path, ocean: OceanEscrow) -> None:
    """The chain was down at start: the first paid start checks the escrow, and refuses in words."""
    chain = ocean.chain
    assert chain.rpc_url is not None
    with TcpProxy(chain.rpc_url.rpartition(":")[2]) as proxy:
        proxy.cut()
        env = {
            **stub_env(chain, rpc_url=f"http://127.0.0.1:{proxy.port}"),
            "C2D_CHAIN__ESCROW_ADDRESS": ocean.address,
        }
        with running_node(tmp_path / "node", env=env) as node:
            node.wait_environment(ENV)
            wait_for(lambda: node.log_events("chain unreachable at start"), 30, "the warning")
            proxy.restore()
            payee = auth.address_of(node.node_key())
            fund_node(chain, node.node_key())
            consumer = ocean.consumer(payee)
            with Client(node.address, consumer.key) as client:
                with pytest.raises(C2DError) as err:
                    client.start(two_stages(), payment=payment(chain))
                assert err.value.code == "UNAVAILABLE"
                assert err.value.message.startswith("paid compute is off on this node")
                assert 'set [chain] escrow_kind = "ocean"' in err.value.message
                assert client.status(all=True) == []
    assert consumer.funds(chain) == (DEPOSIT, 0)
    assert consumer.escrow.get_locks(payee=payee) == []
