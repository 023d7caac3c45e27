"""Payments at scale: claims in batches, expired locks cancelled by the node, and the operator's earnings.

Real parts: the escrow as committed on py-evm in process (the settler on its own) and on anvil
over JSON-RPC (the node as a process, SIGKILLed where it matters), the stub engine, the SDK and
the ``c2d`` command line. Claim transactions are counted from the escrow's ``Claimed`` events
grouped by transaction hash, so a claim made twice, or one transaction per workflow, shows.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from paidnode import (
    DEPOSIT,
    ENV,
    Consumer,
    Settling,
    assert_each_claimed_once,
    events_by_tx,
    fund_node,
    new_consumer,
    node_env,
    payment,
    rpc,
    stage,
    wait_payment,
)

from c2d import auth
from c2d.chain.client import LockClaim, job_id_to_uint
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.chain.devchain import DevChain, start_dev_chain
from host.payments import states
from host.payments.settle import CANCELLED, GONE, Outcome, Settler
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
P = compute_pb2
SETTLED = {P.PAYMENT_STATUS_CLAIMED, P.PAYMENT_STATUS_RELEASED}
BATCH = 20


# -- the settler on its own (py-evm) ----------------------------------------------------------


@pytest.fixture(scope="module")
def pyevm() -> Iterator[DevChain]:
    with start_dev_chain("py-evm") as chain:
        yield chain


def locked(
    chain: DevChain, node_key: str, consumer: Consumer, job_ids: list[int], seconds: int = 10_000
) -> None:
    escrow = chain.escrow(node_key)
    for job_id in job_ids:
        escrow.create_lock(job_id, chain.token_address, consumer.address, 100, seconds)


def test_a_batch_with_a_lock_that_cannot_be_claimed_still_claims_the_others(pyevm: DevChain) -> None:
    node_key = auth.new_private_key()
    fund_node(pyevm, node_key)
    consumer = new_consumer(pyevm, auth.address_of(node_key))
    jobs = [1001, 1002, 1003, 1004]
    locked(pyevm, node_key, consumer, jobs)
    settler = Settler(pyevm.escrow(node_key), batch_size=BATCH, withdraw=False)
    claims = [LockClaim(j, pyevm.token_address, consumer.address, 40, b"proof") for j in jobs]
    # 9999 was never locked (as a lock already settled behind the node's back): the batch reverts
    bad = LockClaim(9999, pyevm.token_address, consumer.address, 40, b"proof")
    results = settler.claim([*claims[:2], bad, *claims[2:]])
    assert results[2] is GONE
    good = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, Outcome) and r.status == states.CLAIMED and r.amount == 40 for r in good), (
        results
    )
    assert sorted(j for js in events_by_tx(pyevm, "Claimed", jobs).values() for j in js) == jobs
    assert consumer.funds(pyevm) == (DEPOSIT - 4 * 40, 0)


def test_claims_go_out_batch_size_per_transaction(pyevm: DevChain) -> None:
    node_key = auth.new_private_key()
    fund_node(pyevm, node_key)
    consumer = new_consumer(pyevm, auth.address_of(node_key), max_locks=50)
    jobs = list(range(2001, 2046))  # 45 locks: 20 + 20 + 5
    locked(pyevm, node_key, consumer, jobs)
    settler = Settler(pyevm.escrow(node_key), batch_size=BATCH, withdraw=True)
    results = settler.claim([LockClaim(j, pyevm.token_address, consumer.address, 10, b"") for j in jobs])
    assert all(isinstance(r, Outcome) and r.status == states.CLAIMED for r in results)
    txs = events_by_tx(pyevm, "Claimed", jobs)
    assert sorted(len(js) for js in txs.values()) == [5, 20, 20]
    assert {r.tx_hash for r in results if isinstance(r, Outcome)} == set(txs)
    # claimLocksAndWithdraw: the earnings are in the node's wallet, none left in the escrow
    escrow = pyevm.escrow(node_key)
    assert escrow.balance_of(pyevm.token_address, escrow.chain.address) == 45 * 10
    assert escrow.get_user_funds(escrow.chain.address, pyevm.token_address).available == 0


def test_expired_locks_are_cancelled_in_one_transaction(pyevm: DevChain) -> None:
    node_key = auth.new_private_key()
    fund_node(pyevm, node_key)
    consumer = new_consumer(pyevm, auth.address_of(node_key))
    jobs = [3001, 3002, 3003]
    locked(pyevm, node_key, consumer, jobs, seconds=5)
    settler = Settler(pyevm.escrow(node_key), batch_size=BATCH, withdraw=False)
    live = settler.live_locks()
    assert not any(live.expired(lock) for lock in live.locks.values())
    pyevm.advance_time(60)
    live = settler.live_locks()
    expired = [lock for lock in live.locks.values() if live.expired(lock)]
    assert sorted(lock.job_id for lock in expired) == jobs
    results = settler.cancel(expired)
    assert all(
        isinstance(r, Outcome) and r.status == states.RELEASED and r.note == CANCELLED for r in results
    )
    assert len(events_by_tx(pyevm, "Canceled", jobs)) == 1
    assert consumer.funds(pyevm) == (DEPOSIT, 0)
    # cancelled behind the node's back meanwhile: found gone, nothing sent
    locked(pyevm, node_key, consumer, [3004, 3005], seconds=5)
    pyevm.advance_time(60)
    live = settler.live_locks()
    stale = [lock for lock in live.locks.values() if live.expired(lock)]
    pyevm.escrow(consumer.key).cancel_expired_lock(
        3004, pyevm.token_address, consumer.address, auth.address_of(node_key)
    )
    results = settler.cancel(stale)
    by_job = dict(zip([lock.job_id for lock in stale], results, strict=True))
    assert by_job[3004] is GONE
    assert isinstance(by_job[3005], Outcome) and by_job[3005].status == states.RELEASED


# -- the node on anvil --------------------------------------------------------------------------


@pytest.fixture
def own_node(tmp_path: Path, anvil: DevChain) -> Iterator[list[NodeProcess]]:
    """A node of the test's own, to kill; the list holds its current incarnation."""
    node = NodeProcess(tmp_path / "node", env=node_env(anvil))
    holder = [node]
    try:  # killed however the test ends, its start included
        node.wait_environment(ENV)
        fund_node(anvil, node.node_key())
        yield holder
    finally:
        holder[-1].kill()


def pending_claims(chain: DevChain, node: str) -> list[tuple[str, set[int]]]:
    """The node's transactions waiting in anvil's pool, with the lock ids each one claims."""
    contract = chain.escrow(chain.deployer_key).contract
    pending = rpc(chain, "txpool_content")["result"]["pending"]
    found = []
    for sender, txs in pending.items():
        if sender.lower() != node.lower():
            continue
        for tx in txs.values():
            _fn, args = contract.decode_function_input(tx["input"])
            ids = args["jobId"] if isinstance(args["jobId"], list) else [args["jobId"]]
            found.append((tx["hash"], {int(i) for i in ids}))
    return found


@pytest.mark.load
def test_fifty_workflows_settling_at_once_are_claimed_in_few_transactions(
    own_node: list[NodeProcess], anvil: DevChain
) -> None:
    settling = Settling(own_node[0], anvil, 50)
    try:
        settling.release_while_not_mining()
        settling.mine_again()
        paid = settling.payments(own_node[0])
        txs = assert_each_claimed_once(anvil, settling, paid)
    finally:
        settling.close()
    # the claim in flight when the chain stopped mining, then all the others, BATCH per transaction
    assert len(txs) <= 1 + -(-49 // BATCH), {tx: len(js) for tx, js in txs.items()}
    assert max(len(js) for js in txs.values()) == BATCH
    batches = own_node[0].log_events("escrow claims mined")
    assert max(b["locks"] for b in batches) == BATCH


@pytest.mark.parametrize("mined", [True, False], ids=["batch-mined-while-down", "batch-dropped"])
def test_sigkill_after_a_batch_was_sent_claims_each_once(
    own_node: list[NodeProcess], anvil: DevChain, mined: bool
) -> None:
    node = own_node[0]
    address = auth.address_of(node.node_key())
    settling = Settling(node, anvil, 5)
    try:
        ours = set(settling.lock_ids)
        settling.release_while_not_mining()
        while True:  # the first claim transaction that holds several of the five
            ((tx, ids),) = wait_for(lambda: pending_claims(anvil, address), 60, "a claim in the pool")
            if len(ids & ours) >= 2:
                break
            rpc(anvil, "evm_mine")
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)
        rpc(anvil, "evm_mine" if mined else "anvil_dropTransaction", *([] if mined else [tx]))
        settling.mine_again()
        again = NodeProcess(node.data_dir, env=node_env(anvil), port=node.port, pod_port=node.pod_port)
        own_node.append(again)
        again.wait_listening()
        paid = settling.payments(again)
        txs = assert_each_claimed_once(anvil, settling, paid)
    finally:
        settling.close()
    recovered = {
        e["workflow_id"]
        for e in again.log_events("escrow settled")
        if e["note"] == "claimed before a restart"
    }
    in_batch = {s.workflow_id for _, s in settling.started if job_id_to_uint(s.workflow_id) in ids}
    # mined while the node was down: found on chain; dropped: claimed again after the restart
    assert recovered == (in_batch if mined else set())
    if mined:
        assert tx in txs and set(txs[tx]) == ids & ours


def stored_payments(
    node: NodeProcess,
    chain: DevChain,
    consumer: Consumer,
    payments: list[tuple[str, str, int]],
    *,
    seconds: int = 10_000,
) -> None:
    """Locks of 1000 made by the (stopped) node, and their payment rows as the node stores them:
    (workflow id, status, amount to claim when ``claiming``)."""
    import peewee

    from host.store import models

    node_address = auth.address_of(node.node_key())
    for workflow_id, _, _ in payments:
        chain.escrow(node.node_key()).create_lock(
            workflow_id, chain.token_address, consumer.address, 1000, seconds
        )
    db = peewee.SqliteDatabase(str(node.data_dir / "node.db"))
    with db.bind_ctx([models.Payment]):
        now = time.time()
        for workflow_id, status, amount in payments:
            claiming = status == states.CLAIMING
            models.Payment.create(
                workflow_id=workflow_id,
                status=status,
                chain_id=chain.chain_id,
                escrow=chain.escrow_address,
                token=chain.token_address.lower(),
                payer=consumer.address.lower(),
                payee=node_address.lower(),
                lock_id=str(job_id_to_uint(workflow_id)),
                amount="1000",
                quote={"min_lock_seconds": seconds, "breakdown": []},
                expiry=now + seconds - 60,
                claim_amount=str(amount) if claiming else "",
                digest="0x" + "ab" * 32 if claiming else "",
                created_at=now,
                updated_at=now,
            )
    db.close()


def test_a_batch_the_escrow_refuses_is_claimed_one_by_one_by_the_node(
    own_node: list[NodeProcess], anvil: DevChain
) -> None:
    """One ``claiming`` row asks more than its lock holds (a lock the escrow will not pay): the
    batch of four reverts, the node claims the other three one by one and retries only that one."""
    node = own_node[0]
    consumer = new_consumer(anvil, auth.address_of(node.node_key()))
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=10)
    good = ["batch-good-1", "batch-good-2", "batch-good-3"]
    payments = [(w, states.CLAIMING, 300) for w in good] + [("batch-bad", states.CLAIMING, 1001)]
    stored_payments(node, anvil, consumer, payments)
    again = NodeProcess(node.data_dir, env=node_env(anvil), port=node.port, pod_port=node.pod_port)
    own_node.append(again)
    settled = wait_for(
        lambda: (lambda e: e if len(e) == 3 else None)(again.log_events("escrow settled")),
        60,
        "three claimed",
    )
    assert {e["workflow_id"]: e["status"] for e in settled} == dict.fromkeys(good, "claimed")
    (fallback,) = again.log_events("a batch reverted; sending its locks one by one")
    assert fallback["locks"] == 4 and "Amount too high" in (fallback["reason"] or "")
    failed = wait_for(lambda: again.log_events("payment step failed; retrying"), 30, "the bad one retried")
    assert {e["workflow_id"] for e in failed} == {"batch-bad"}
    txs = events_by_tx(anvil, "Claimed", [*good, "batch-bad"])
    assert sorted(len(ids) for ids in txs.values()) == [1, 1, 1]  # one by one, the bad one never
    assert consumer.funds(anvil) == (DEPOSIT - 3 * 300 - 1000, 1000)


def test_expired_locks_are_cancelled_by_the_node_and_their_rows_released(
    own_node: list[NodeProcess], anvil: DevChain
) -> None:
    """Locks the node can no longer claim (the node was down past their expiry): cancelled in one
    transaction, whatever their row's state; an expired lock no row owns goes back too."""
    node = own_node[0]
    consumer = new_consumer(anvil, auth.address_of(node.node_key()))
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(timeout=10)
    rows = {
        "expired-claiming": states.CLAIMING,
        "expired-locked": states.LOCKED,
        "expired-locking": states.LOCKING,
    }
    anvil.escrow(node.node_key()).create_lock(
        "expired-nobody", anvil.token_address, consumer.address, 1000, 5
    )
    stored_payments(node, anvil, consumer, [(w, status, 400) for w, status in rows.items()], seconds=5)
    anvil.advance_time(3600)
    assert consumer.funds(anvil) == (DEPOSIT - 4000, 4000)
    again = NodeProcess(node.data_dir, env=node_env(anvil), port=node.port, pod_port=node.pod_port)
    own_node.append(again)
    wait_for(lambda: consumer.funds(anvil) == (DEPOSIT, 0), 60, "the expired locks given back")
    settled = wait_for(
        lambda: (lambda e: e if len(e) == 3 else None)(again.log_events("escrow settled")),
        30,
        "three rows settled",
    )
    assert {e["workflow_id"]: e["status"] for e in settled} == dict.fromkeys(rows, "released")
    assert all(CANCELLED in e["note"] for e in settled)
    ids = [job_id_to_uint(w) for w in [*rows, "expired-nobody"]]
    cancels = events_by_tx(anvil, "Canceled", ids)
    assert sorted(len(js) for js in cancels.values()) == [1, 3]  # the rows' batch; the sweep's
    assert events_by_tx(anvil, "Claimed", ids) == {}
    assert len({e["tx"] for e in settled}) == 1


# -- the operator's earnings: c2d admin earnings|withdraw -----------------------------------------


def c2d(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from c2d.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_operator_sees_and_withdraws_the_nodes_earnings(
    tmp_path: Path, anvil: DevChain, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from c2d.units import format_units

    for name in ("C2D_NODE", "C2D_KEY_FILE", "C2D_RPC_URL"):
        monkeypatch.delenv(name, raising=False)
    env = {**node_env(anvil), "C2D_CHAIN__WITHDRAW_EARNINGS": "false"}  # earnings stay in the escrow
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_environment(ENV)
        payee = anvil.w3.to_checksum_address(fund_node(anvil, node.node_key()))
        consumer = new_consumer(anvil, payee)
        with Client(node.address, consumer.key) as client:
            started = client.start({"environment": ENV, "stages": [stage(0, "true")]}, payment=payment(anvil))
            paid = wait_payment(client, started.workflow_id, {P.PAYMENT_STATUS_CLAIMED})
        earned = int(paid.claimed_amount)
        escrow = anvil.escrow(node.node_key())
        wallet_before = escrow.balance_of(anvil.token_address, payee)
        key = ["--node", node.address, "--key-file", str(node.data_dir / "node_key")]
        chain = ["--rpc", str(anvil.rpc_url)]

        code, out, err = c2d(capsys, *key, "admin", "earnings", *chain, "--json")
        assert code == 0, err
        (row,) = json.loads(out)["tokens"]
        assert (row["token"], row["symbol"], row["decimals"]) == (anvil.token_address, "C2DT", 18)
        assert int(row["available"]) == earned
        code, out, err = c2d(capsys, *key, "admin", "earnings", *chain)
        assert code == 0 and f"{format_units(earned, 18)} C2DT" in out, out

        third = earned // 3
        code, out, err = c2d(capsys, *key, "admin", "withdraw", format_units(third, 18), *chain)
        assert code == 0, err
        tx = out.split("(transaction ")[1].split(")")[0]
        assert anvil.w3.eth.get_transaction_receipt(tx)["status"] == 1
        assert f"withdrew {format_units(third, 18)} C2DT to {payee}" in out
        assert escrow.get_user_funds(payee, anvil.token_address).available == earned - third

        code, out, err = c2d(capsys, *key, "admin", "withdraw", str(earned), "--base-units", *chain)
        assert code == 4 and "not" in err and "Traceback" not in err  # more than is left
        code, out, err = c2d(capsys, *key, "admin", "withdraw", "--all", *chain, "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert (int(doc["withdrawn"]), int(doc["available"])) == (earned - third, 0)
        assert escrow.balance_of(anvil.token_address, payee) == wallet_before + earned
        code, _, err = c2d(capsys, *key, "admin", "withdraw", "--all", *chain)
        assert code == 2 and "nothing to withdraw" in err

        # someone else's key, no amount, an unreachable chain: one line each, no traceback
        stranger = tmp_path / "stranger.key"
        stranger.write_text(auth.new_private_key() + "\n")
        code, _, err = c2d(
            capsys, "--node", node.address, "--key-file", str(stranger), "admin", "earnings", *chain
        )
        assert code == 2 and "is not the node's" in err
        code, _, err = c2d(capsys, *key, "admin", "withdraw", *chain)
        assert code == 2 and "AMOUNT or --all" in err
        code, _, err = c2d(capsys, *key, "admin", "earnings", "--rpc", "http://127.0.0.1:1")
        assert code == 4 and "cannot reach the chain" in err and err.count("\n") == 1
