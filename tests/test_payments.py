"""Paid compute end to end: escrow lock before the stages, claim of the actual cost after them.

Real parts throughout: anvil over JSON-RPC (a separate process that outlives
the node, so the node can be SIGKILLed) or py-evm in process, the escrow
contract as committed, the node and the stub engine as processes, the SDK.
Balances are checked to the base unit.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from paidnode import (
    DEPOSIT,
    ENV,
    PRICES,
    Consumer,
    claimed_events,
    fund_node,
    in_process_node,
    new_consumer,
    payment,
    per_minute,
    stage,
    stub_env,
    two_stages,
    wait_payment,
)
from tcpproxy import TcpProxy

from c2d import auth, billing
from c2d.chain.client import job_id_to_uint
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.chain.devchain import DevChain, find_anvil, start_dev_chain
from nodeproc import NodeProcess, children_of, free_port, process_alive, running_node, wait_for

S = common_pb2.JobStatus
P = compute_pb2
SETTLED = {P.PAYMENT_STATUS_CLAIMED, P.PAYMENT_STATUS_RELEASED}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, anvil: DevChain) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("paid"), env=stub_env(anvil)) as node:
        node.wait_environment(ENV)
        fund_node(anvil, node.node_key())
        yield node


def node_address(node: NodeProcess) -> str:
    return auth.address_of(node.node_key())


def assert_settled_once(chain: DevChain, client: Client, workflow_id: str, consumer: Consumer) -> int:
    """Exactly one Claimed event, for what the records say; the consumer has exactly the rest."""
    paid = wait_payment(client, workflow_id, SETTLED)
    events = claimed_events(chain, workflow_id)
    assert len(events) == 1, f"claimed {len(events)} times"
    claimed = int(events[0]["args"]["amount"])
    assert claimed == int(paid.claimed_amount)
    assert consumer.funds(chain) == (DEPOSIT - claimed, 0)
    return claimed


# -- the whole flow -----------------------------------------------------------------


def test_paid_two_stage_workflow_claims_the_actual_cost(node: NodeProcess, anvil: DevChain) -> None:
    payee = node_address(node)
    consumer = new_consumer(anvil, payee)
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(), payment=payment(anvil))
        quote = started.quote
        assert int(quote.amount) == 3 * (per_minute(quote, 0) + per_minute(quote, 1))  # 3 minutes each
        assert started.payment.status == P.PAYMENT_STATUS_LOCKED
        assert started.payment.lock_transaction.startswith("0x")
        assert consumer.funds(anvil) == (DEPOSIT - int(quote.amount), int(quote.amount))
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
        paid = wait_payment(client, started.workflow_id, {P.PAYMENT_STATUS_CLAIMED})
        # each stage ran well under a minute: one minute each, the rest goes back
        expected = per_minute(quote, 0) + per_minute(quote, 1)
        assert int(paid.claimed_amount) == expected
        assert consumer.funds(anvil) == (DEPOSIT - expected, 0)
        assert (
            anvil.escrow(anvil.deployer_key).balance_of(anvil.token_address, payee) == expected
        )  # withdrawn
        assert len(claimed_events(anvil, started.workflow_id)) == 1

        proof = client.payment_proof(started.workflow_id)
    check = billing.check_proof(proof.records, proof.node_signature, proof.digest, payee)
    assert check.ok, check.problems
    (event,) = claimed_events(anvil, started.workflow_id)
    assert "0x" + bytes(event["args"]["proof"]).hex() == proof.digest
    assert [s["billed_minutes"] for s in check.records["stages"]] == [1, 1]


def test_a_failed_workflow_pays_only_for_what_ran(node: NodeProcess, anvil: DevChain) -> None:
    consumer = new_consumer(anvil, node_address(node))
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(first="exit 3"), payment=payment(anvil))
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_ALGORITHM_FAILED, S.JOB_STATUS_SKIPPED]
        claimed = assert_settled_once(anvil, client, started.workflow_id, consumer)
    assert claimed == per_minute(started.quote, 0)  # the skipped stage costs nothing


def test_a_stopped_workflow_pays_only_for_what_ran(node: NodeProcess, anvil: DevChain) -> None:
    consumer = new_consumer(anvil, node_address(node))
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(first="sleep 60"), payment=payment(anvil))
        first = started.stages[0].job_id
        wait_for(
            lambda: client.status(job_id=first)[0].status == S.JOB_STATUS_RUNNING,
            30,
            "the first stage running",
        )
        client.stop(workflow_id=started.workflow_id)
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_STOPPED, S.JOB_STATUS_SKIPPED]
        claimed = assert_settled_once(anvil, client, started.workflow_id, consumer)
    assert claimed == per_minute(started.quote, 0)


# -- refusals: nothing locked, nothing stored -----------------------------------------------


def refused(node: NodeProcess, anvil: DevChain, key: str, pay: compute_pb2.Payment | None = None) -> C2DError:
    with Client(node.address, key) as client:
        with pytest.raises(C2DError) as err:
            client.start(two_stages(), payment=pay or payment(anvil))
        assert client.status(all=True) == [], "a refused start stored a workflow"
    return err.value


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ({"deposit": 10}, "deposit at least"),
        ({"authorize": False}, "you have not authorized node"),
        ({"max_amount": 10}, "(10 base units) locked at once"),
        ({"max_seconds": 60}, "allows locks of at most 60s"),
        ({"max_locks": 0}, "allows 0 locks at once"),
    ],
    ids=["not-enough-funds", "no-authorization", "max-amount", "max-seconds", "max-locks"],
)
def test_a_start_the_consumer_cannot_pay_is_refused(
    node: NodeProcess, anvil: DevChain, setup: dict, words: str
) -> None:
    payee = node_address(node) if setup.pop("authorize", True) else None
    consumer = new_consumer(anvil, payee, **setup)
    before = consumer.funds(anvil)
    err = refused(node, anvil, consumer.key)
    assert err.code == "FAILED_PRECONDITION", err
    assert words in err.message, err.message
    assert consumer.funds(anvil) == before
    assert consumer.escrow.get_locks(anvil.token_address, consumer.address) == []


def test_a_paid_start_keeps_its_metadata_and_one_over_1024_bytes_locks_nothing(
    node: NodeProcess, anvil: DevChain
) -> None:
    consumer = new_consumer(anvil, node_address(node))
    with Client(node.address, consumer.key) as client:
        with pytest.raises(C2DError) as err:
            client.start(two_stages(), payment=payment(anvil), metadata={"note": "x" * 1014})  # 1,025 bytes
        assert err.value.code == "INVALID_ARGUMENT", err.value
        assert err.value.message == "metadata is 1025 bytes as compact JSON; at most 1024 are kept"
        assert client.status(all=True) == [], "a refused start stored a workflow"
        assert consumer.funds(anvil) == (DEPOSIT, 0), "a refused start locked funds"
        metadata = {"note": "x" * 1013}  # 1,024 bytes
        started = client.start(two_stages(), payment=payment(anvil), metadata=metadata)
        jobs = client.wait(started.workflow_id, timeout=60)
    assert [json_format.MessageToDict(j.metadata) for j in jobs] == [metadata] * 2
    assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2, "wait returns once the payment settled"
    assert all(j.payment.status == P.PAYMENT_STATUS_CLAIMED for j in jobs)


def test_a_token_the_node_does_not_take_is_refused(node: NodeProcess, anvil: DevChain) -> None:
    consumer = new_consumer(anvil, node_address(node))
    wrong = compute_pb2.Payment(chain_id=anvil.chain_id, token_address="0x" + "42" * 20)
    err = refused(node, anvil, consumer.key, wrong)
    assert err.code == "FAILED_PRECONDITION"
    assert "takes no payment in" in err.message and anvil.token_address in err.message, err.message
    wrong_chain = compute_pb2.Payment(chain_id=anvil.chain_id + 1, token_address=anvil.token_address)
    err = refused(node, anvil, consumer.key, wrong_chain)
    assert err.code == "FAILED_PRECONDITION" and f"on chain {anvil.chain_id}" in err.message, err.message
    assert consumer.funds(anvil) == (DEPOSIT, 0)


def test_the_proof_waits_for_the_end_and_is_the_owners(node: NodeProcess, anvil: DevChain) -> None:
    consumer = new_consumer(anvil, node_address(node))
    stranger = new_consumer(anvil, None, deposit=0)
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(first="sleep 30"), payment=payment(anvil))
        with pytest.raises(C2DError) as err:
            client.payment_proof(started.workflow_id)
        assert err.value.code == "FAILED_PRECONDITION" and "once every stage" in err.value.message
        with Client(node.address, stranger.key) as other, pytest.raises(C2DError) as err:
            other.payment_proof(started.workflow_id)
        assert err.value.code in ("NOT_FOUND", "PERMISSION_DENIED")
        client.stop(workflow_id=started.workflow_id)
        wait_payment(client, started.workflow_id, SETTLED)


# -- durability: SIGKILL around the lock and the claim --------------------------------------


def restart(node: NodeProcess, anvil: DevChain, **env: object) -> NodeProcess:
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=10)
    again = NodeProcess(node.data_dir, env=stub_env(anvil, **env), port=node.port, pod_port=node.pod_port)
    again.wait_listening()
    return again


@pytest.fixture
def own_node(tmp_path: Path, anvil: DevChain) -> Iterator[list[NodeProcess]]:
    """A node of the test's own, to kill; the list holds its current incarnation."""
    node = NodeProcess(tmp_path / "node", env=stub_env(anvil))
    node.wait_environment(ENV)
    fund_node(anvil, node.node_key())
    holder = [node]
    try:
        yield holder
    finally:
        holder[-1].kill()


def test_sigkill_after_the_lock_claims_once(own_node: list[NodeProcess], anvil: DevChain) -> None:
    node = own_node[0]
    consumer = new_consumer(anvil, node_address(node))
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(), payment=payment(anvil))
    own_node.append(restart(node, anvil))
    with Client(own_node[-1].address, consumer.key) as client:
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
        claimed = assert_settled_once(anvil, client, started.workflow_id, consumer)
    assert claimed == per_minute(started.quote, 0) + per_minute(started.quote, 1)


def test_sigkill_during_the_stages_claims_once(own_node: list[NodeProcess], anvil: DevChain) -> None:
    node = own_node[0]
    consumer = new_consumer(anvil, node_address(node))
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(first="sleep 2"), payment=payment(anvil))
        first = started.stages[0].job_id
        wait_for(lambda: client.status(job_id=first)[0].status == S.JOB_STATUS_RUNNING, 30, "stage 0 running")
    # the operator raises prices meanwhile: the running workflow pays what it was quoted
    own_node.append(restart(node, anvil, prices={r: str(int(p) * 7) for r, p in PRICES.items()}))
    with Client(own_node[-1].address, consumer.key) as client:
        jobs = client.wait(started.workflow_id, timeout=60)
        assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
        claimed = assert_settled_once(anvil, client, started.workflow_id, consumer)
    assert claimed == per_minute(started.quote, 0) + per_minute(started.quote, 1)


def pending_from(anvil: DevChain, address: str) -> list[dict]:
    content = anvil.w3.provider.make_request("txpool_content", [])["result"]["pending"]
    for sender, txs in content.items():
        if sender.lower() == address.lower():
            return list(txs.values())
    return []


@pytest.mark.parametrize("mined", [True, False], ids=["claim-mined-while-down", "claim-dropped"])
def test_sigkill_between_claim_sent_and_receipt_claims_once(
    own_node: list[NodeProcess], anvil: DevChain, mined: bool
) -> None:
    node = own_node[0]
    payee = node_address(node)
    consumer = new_consumer(anvil, payee)
    with Client(node.address, consumer.key) as client:
        started = client.start(two_stages(), payment=payment(anvil))
        anvil.w3.provider.make_request("evm_setAutomine", [False])
        try:
            client.wait(started.workflow_id, timeout=60, settled=False)
            (claim,) = wait_for(lambda: pending_from(anvil, payee), 30, "the claim in the mempool")
            # The chain holds the claim: every job reads "settling payment" until it is confirmed.
            jobs = client.status(workflow_id=started.workflow_id)
            assert [j.status for j in jobs] == [S.JOB_STATUS_SETTLING_PAYMENT] * 2
            assert [j.payment.status for j in jobs] == [P.PAYMENT_STATUS_CLAIMING] * 2
            assert all(j.terminal and j.history[-1].status == S.JOB_STATUS_SETTLING_PAYMENT for j in jobs)
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)
            if mined:
                anvil.w3.provider.make_request("evm_mine", [])
            else:
                anvil.w3.provider.make_request("anvil_dropTransaction", [claim["hash"]])
        finally:
            anvil.w3.provider.make_request("evm_setAutomine", [True])
    again = NodeProcess(node.data_dir, env=stub_env(anvil), port=node.port, pod_port=node.pod_port)
    own_node.append(again)
    again.wait_listening()
    with Client(again.address, consumer.key) as client:
        paid = wait_payment(client, started.workflow_id, SETTLED)
        assert_settled_once(anvil, client, started.workflow_id, consumer)
        settled = again.log_events("escrow settled")
        jobs = client.status(workflow_id=started.workflow_id)
    assert paid.status == P.PAYMENT_STATUS_CLAIMED
    # Settled once, after the restart: each job reads its own end again, and its history says so.
    assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
    for job in jobs:
        tail = [(e.status, e.message.partition(":")[0]) for e in job.history][-3:]
        assert [status for status, _ in tail] == [
            S.JOB_STATUS_FINISHED,
            S.JOB_STATUS_SETTLING_PAYMENT,
            S.JOB_STATUS_FINISHED,
        ], tail
        assert [said for _, said in tail[1:]] == ["the workflow has ended", "payment settled"], tail
        settling = [e for e in job.history if e.status == S.JOB_STATUS_SETTLING_PAYMENT]
        assert len(settling) == 1, "settling recorded once, across the restart"

    # mined while the node was down: found on chain; dropped: sent again after the restart
    assert [e["note"] == "claimed before a restart" for e in settled] == [mined]


def test_an_unreachable_chain_at_claim_time_is_retried(tmp_path: Path, anvil: DevChain) -> None:
    assert anvil.rpc_url is not None
    with TcpProxy(anvil.rpc_url.rpartition(":")[2]) as proxy:
        env = stub_env(anvil, rpc_url=f"http://127.0.0.1:{proxy.port}")
        with running_node(tmp_path / "node", env=env) as node:
            node.wait_environment(ENV)
            consumer = new_consumer(anvil, fund_node(anvil, node.node_key()))
            with Client(node.address, consumer.key) as client:
                proxy.cut()
                with pytest.raises(C2DError) as err:
                    client.start(two_stages(), payment=payment(anvil))
                assert err.value.code == "UNAVAILABLE" and "cannot reach its chain" in err.value.message
                assert client.status(all=True) == []
                proxy.restore()
                started = client.start(two_stages(first="sleep 1"), payment=payment(anvil))
                proxy.cut()
                client.wait(started.workflow_id, timeout=60, settled=False)
                wait_for(lambda: node.log_events("payment step failed; retrying"), 30, "a failed claim")
                assert (
                    client.status(workflow_id=started.workflow_id)[0].payment.status
                    == P.PAYMENT_STATUS_CLAIMING
                )
                assert consumer.funds(anvil)[1] == int(started.quote.amount), "claimed while cut off"
                proxy.restore()
                assert_settled_once(anvil, client, started.workflow_id, consumer)
            attempts = node.log_events("payment step failed; retrying")
    assert attempts and all(e["status"] == "claiming" for e in attempts)


def test_a_lock_no_workflow_owns_is_released(node: NodeProcess, anvil: DevChain, tmp_path: Path) -> None:
    """A lock naming the node with no workflow behind it (a lost database, a start cut off) goes back."""
    consumer = new_consumer(anvil, node_address(node))
    node_escrow = anvil.escrow(node.node_key())
    node_escrow.create_lock(12345, anvil.token_address, consumer.address, 1000, 10_000)
    assert consumer.funds(anvil) == (DEPOSIT - 1000, 1000)
    again = restart(node, anvil)  # the sweep runs at start
    try:
        wait_for(lambda: consumer.funds(anvil) == (DEPOSIT, 0), 30, "the lock released")
    finally:
        again.kill()


# -- py-evm in process ------------------------------------------------------------------


def test_paid_workflow_on_py_evm_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2D_LOAD_PLUGINS", "external_stub")
    with (
        start_dev_chain("py-evm") as chain,
        in_process_node(tmp_path / "node", chain, stub_env(chain)) as node,
    ):
        consumer = new_consumer(chain, fund_node(chain, node.node_key()))
        wait_for(lambda: _has_env(node.address), 30, "the stub environment")
        with Client(node.address, consumer.key) as client:
            started = client.start(two_stages(), payment=payment(chain))
            assert consumer.funds(chain) == (DEPOSIT - int(started.quote.amount), int(started.quote.amount))
            client.wait(started.workflow_id, timeout=60)
            paid = wait_payment(client, started.workflow_id, {P.PAYMENT_STATUS_CLAIMED})
        expected = per_minute(started.quote, 0) + per_minute(started.quote, 1)
        assert int(paid.claimed_amount) == expected
        assert consumer.funds(chain) == (DEPOSIT - expected, 0)
        assert len(claimed_events(chain, started.workflow_id)) == 1


def _has_env(address: str) -> bool:
    with Client(address) as client:
        try:
            return any(env.id == ENV for env in client.environments())
        except C2DError:
            return False


def test_no_chain_means_no_paid_start(tmp_path: Path) -> None:
    with running_node(tmp_path / "node") as node:
        node.wait_listening()
        with Client(node.address, auth.new_private_key()) as client, pytest.raises(C2DError) as err:
            client.start(
                {"environment": "x", "stages": [stage(0, "true")]},
                payment=compute_pb2.Payment(chain_id=1, token_address="0x" + "11" * 20),
            )
    assert err.value.code == "FAILED_PRECONDITION" and "takes no payments" in err.value.message


def test_a_development_node_offers_a_dev_chain_to_pay_on(tmp_path: Path) -> None:
    """``python -m host`` with no config: a dev chain, priced environments, a funded consumer."""
    from c2d.chain.client import ChainClient, EscrowClient, connect

    env = {"C2D_CHAIN__DEV": "auto", "C2D_CHAIN__DEV_PORT": str(free_port())}
    with running_node(tmp_path / "node", env=env) as node:
        (env_pb,) = wait_for(node.environments, 30, "environments")
        info = json.loads((node.data_dir / "devchain.json").read_text())
        assert (node.data_dir / "devchain.json").stat().st_mode & 0o077 == 0, (
            "the dev consumer's key is private"
        )
        (fees,) = env_pb.fees
        assert (fees.chain_id, fees.token_address, fees.escrow_address) == (
            info["chain_id"],
            info["token_address"],
            info["escrow_address"],
        )
        w3 = connect(info["rpc_url"], info["chain_id"])
        escrow = EscrowClient(ChainClient(w3, info["consumer_private_key"]), info["escrow_address"])
        escrow.deposit(info["token_address"], 10**18)
        escrow.authorize(info["token_address"], node_address(node), 10**18, 86_400, 5)
        pay = compute_pb2.Payment(chain_id=fees.chain_id, token_address=fees.token_address)
        with Client(node.address, info["consumer_private_key"]) as client:
            workflow = {"environment": env_pb.id, "stages": [stage(0, "echo paid")]}
            started = client.start(workflow, payment=pay)
            client.wait(started.workflow_id, timeout=60)
            paid = wait_payment(client, started.workflow_id, {P.PAYMENT_STATUS_CLAIMED})
        assert 0 < int(paid.claimed_amount) < int(started.quote.amount)


def test_a_killed_development_node_leaves_no_dev_chain_running(tmp_path: Path) -> None:
    """The dev chain is the node's helper: SIGKILL the node and anvil goes with it."""
    if find_anvil() is None:
        pytest.skip("anvil is missing: scripts/setup-dev installs it with npm ci")
    env = {"C2D_CHAIN__DEV": "anvil", "C2D_CHAIN__DEV_PORT": str(free_port())}
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_listening()
        (chain,) = wait_for(
            lambda: [p for p in children_of(node.pid) if "anvil" in Path(f"/proc/{p}/cmdline").read_text()],
            60,
            "the node's anvil",
        )
        node.kill()
    wait_for(lambda: not process_alive(chain), 30, "anvil to die with its node")


def test_a_lock_whose_start_was_cut_off_is_released(own_node: list[NodeProcess], anvil: DevChain) -> None:
    """Killed between the lock and storing the workflow: the consumer got no answer, so no work runs
    on that lock and it goes back whole."""
    import peewee

    from host.store import models

    node = own_node[0]
    consumer = new_consumer(anvil, node_address(node))
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=10)
    workflow_id = "cut-off-start"
    anvil.escrow(node.node_key()).create_lock(
        workflow_id, anvil.token_address, consumer.address, 5000, 10_000
    )
    db = peewee.SqliteDatabase(str(node.data_dir / "node.db"))
    with db.bind_ctx([models.Payment]):
        now = time.time()
        models.Payment.create(
            workflow_id=workflow_id,
            status="locking",
            chain_id=anvil.chain_id,
            escrow=anvil.escrow_address,
            token=anvil.token_address.lower(),
            payer=consumer.address,
            payee=node_address(node),
            lock_id=str(job_id_to_uint(workflow_id)),
            amount="5000",
            quote={"min_lock_seconds": 10_000, "breakdown": []},
            created_at=now,
            updated_at=now,
        )
    db.close()
    assert consumer.funds(anvil) == (DEPOSIT - 5000, 5000)
    again = NodeProcess(node.data_dir, env=stub_env(anvil), port=node.port, pod_port=node.pod_port)
    own_node.append(again)
    wait_for(lambda: consumer.funds(anvil) == (DEPOSIT, 0), 30, "the lock given back")
    (settled,) = wait_for(lambda: again.log_events("escrow settled"), 10, "the settlement logged")
    assert settled["status"] == "released" and "cut off" in settled["note"]
    assert claimed_events(anvil, workflow_id)[0]["args"]["amount"] == 0


def test_a_chain_other_than_configured_stops_the_node_with_a_clear_error(
    tmp_path: Path, anvil: DevChain
) -> None:
    env = {**stub_env(anvil), "C2D_CHAIN__CHAIN_ID": str(anvil.chain_id + 1)}
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        assert node.process.wait(timeout=60) == 1
    finally:
        node.kill()
    (error,) = wait_for(lambda: node.log_events("cannot use the configured chain"), 10, "the error logged")
    assert f"serves chain id {anvil.chain_id}, the config says {anvil.chain_id + 1}" in error["error"]


def test_an_in_process_dev_chain_comes_with_the_consumer_prepaid(tmp_path: Path) -> None:
    """Without anvil the dev chain lives in the node (no RPC for ``c2d escrow``): paying needs no setup."""
    env = {"C2D_CHAIN__DEV": "py-evm"}
    with running_node(tmp_path / "node", env=env) as node:
        (env_pb,) = wait_for(node.environments, 60, "environments")
        info = json.loads((node.data_dir / "devchain.json").read_text())
        assert info["backend"] == "py-evm" and info["rpc_url"] is None
        key = (node.data_dir / "dev-consumer.key").read_text().strip()
        (fees,) = env_pb.fees
        pay = compute_pb2.Payment(chain_id=fees.chain_id, token_address=fees.token_address)
        with Client(node.address, key) as client:
            started = client.start({"environment": env_pb.id, "stages": [stage(0, "true")]}, payment=pay)
            client.wait(started.workflow_id, timeout=60)
            paid = wait_payment(client, started.workflow_id, {P.PAYMENT_STATUS_CLAIMED})
    assert 0 < int(paid.claimed_amount) < int(started.quote.amount)


def test_a_node_without_gas_money_locks_nothing_and_says_so(tmp_path: Path, anvil: DevChain) -> None:
    with running_node(tmp_path / "node", env=stub_env(anvil)) as node:
        node.wait_environment(ENV)
        consumer = new_consumer(anvil, node_address(node))  # the node's own key was never funded
        wait_for(
            lambda: node.log_events(
                "the node's account has no gas money: paid starts will fail until it is funded"
            ),
            10,
            "the warning at start",
        )
        with Client(node.address, consumer.key) as client:
            with pytest.raises(C2DError) as err:
                client.start(two_stages(), payment=payment(anvil))
            assert err.value.code == "UNAVAILABLE" and "cannot pay the gas" in err.value.message
            assert client.status(all=True) == []
        (logged,) = wait_for(
            lambda: node.log_events("the node's account cannot pay gas: fund it"), 10, "the log"
        )
    assert logged["node"] == node_address(node)
    assert consumer.funds(anvil) == (DEPOSIT, 0)


def test_on_postgresql_sigkill_after_the_lock_claims_once(
    tmp_path: Path, anvil: DevChain, postgres_url: str
) -> None:
    env = {**stub_env(anvil), "C2D_STORAGE__DATABASE_URL": postgres_url}
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        node.wait_environment(ENV)
        fund_node(anvil, node.node_key())
        consumer = new_consumer(anvil, node_address(node))
        with Client(node.address, consumer.key) as client:
            started = client.start(two_stages(), payment=payment(anvil))
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)
        node = NodeProcess(node.data_dir, env=env, port=node.port, pod_port=node.pod_port)
        node.wait_listening()
        with Client(node.address, consumer.key) as client:
            jobs = client.wait(started.workflow_id, timeout=60)
            assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2
            claimed = assert_settled_once(anvil, client, started.workflow_id, consumer)
        assert claimed == per_minute(started.quote, 0) + per_minute(started.quote, 1)
        assert not (tmp_path / "node" / "node.db").exists()
    finally:
        node.kill()
