"""Chain access: ChainClient / EscrowClient / classify / the dev chain, on py-evm in process and on
anvil over JSON-RPC (anvil required under CI, skipped locally when its binary is missing)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import c2d.chain as hc
from c2d.chain import errors as E
from c2d.chain.client import ChainClient, EscrowClient, connect, job_id_to_uint
from c2d.chain.errors import ChainError, classify
from host.chain.devchain import ETHER, DevAccount, find_anvil, free_port, start_dev_chain

IN_CI = bool(os.environ.get("CI"))


def _require_artifacts() -> None:
    if not (hc.ARTIFACTS_DIR / "Escrow.json").exists():
        if IN_CI:
            pytest.fail("sdk/c2d/chain/artifacts/Escrow.json is missing")
        pytest.skip("escrow artifacts not built yet")


@pytest.fixture(params=["py-evm", "anvil"])
def dev(request):
    _require_artifacts()
    if request.param == "anvil" and find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil binary missing: npm install (devDependency @foundry-rs/anvil)")
        pytest.skip("anvil not installed (npm install)")
    chain = start_dev_chain(prefer=request.param)
    assert chain.backend == request.param
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def node(dev):
    """The node (payee): a fresh funded key with its EscrowClient."""
    acct = DevAccount.from_label("node-under-test")
    dev.fund(acct.address)
    return dev.escrow(acct.private_key)


def test_dev_chain_accounts(dev):
    assert dev.chain_id == (31337 if dev.backend == "anvil" else dev.w3.eth.chain_id)
    assert (dev.rpc_url is None) == (dev.backend == "py-evm")
    consumer = dev.escrow(dev.consumer.private_key)
    assert consumer.balance_of(dev.token_address, dev.consumer.address) == 1_000 * ETHER
    assert dev.w3.eth.get_balance(dev.consumer.address) > 0
    assert dev.w3.eth.get_code(dev.escrow_address) not in (b"", None)


def test_deposit_authorize_lock_claim_exact_balances(dev, node):
    token = dev.token_address
    payer = dev.consumer.address
    consumer = dev.escrow(dev.consumer.private_key)
    start_wallet = consumer.balance_of(token, payer)

    consumer.deposit(token, 100)
    assert consumer.get_user_funds(payer, token).available == 100
    assert consumer.balance_of(token, payer) == start_wallet - 100
    assert consumer.balance_of(token, dev.escrow_address) == 100

    consumer.authorize(token, node.chain.address, 80, 3600, 2)
    auth = node.get_authorization(token, payer)
    assert auth is not None
    assert (auth.max_locked_amount, auth.max_lock_seconds, auth.max_lock_counts) == (80, 3600, 2)
    assert auth.current_locked_amount == 0 and auth.current_locks == 0

    job = "workflow-1"
    assert node.lock_exists(job, token, payer) is None
    receipt = node.create_lock(job, token, payer, 60, 600)
    assert receipt["status"] == 1
    lock = node.lock_exists(job, token, payer)
    assert lock is not None
    assert (lock.job_id, lock.amount, lock.payee) == (job_id_to_uint(job), 60, node.chain.address)
    assert consumer.get_user_funds(payer, token) == hc.client.UserFunds(available=40, locked=60)
    assert node.get_authorization(token, payer).current_locked_amount == 60

    node.claim_lock(job, token, payer, 25, b"proof-digest")
    assert node.lock_exists(job, token, payer) is None
    assert node.get_locks(token=token, payer=payer) == []
    assert consumer.get_user_funds(payer, token) == hc.client.UserFunds(available=75, locked=0)
    assert node.get_user_funds(node.chain.address, token).available == 25

    assert node.withdraw_earnings(token) == 25
    assert node.balance_of(token, node.chain.address) == 25
    assert node.get_user_funds(node.chain.address, token).available == 0
    assert node.withdraw_earnings(token) == 0
    assert consumer.balance_of(token, dev.escrow_address) == 75


def test_expired_lock_cancelled(dev, node):
    token, payer = dev.token_address, dev.consumer.address
    consumer = dev.escrow(dev.consumer.private_key)
    consumer.deposit(token, 10)
    consumer.authorize(token, node.chain.address, 10, 100, 1)
    node.create_lock(7, token, payer, 10, 50)
    dev.advance_time(120)
    node.cancel_expired_lock(7, token, payer)
    assert node.lock_exists(7, token, payer) is None
    assert consumer.get_user_funds(payer, token) == hc.client.UserFunds(available=10, locked=0)


def test_revert_classified_with_reason(dev, node):
    token, payer = dev.token_address, dev.consumer.address
    # no authorization: createLock reverts, caught at gas estimation, nothing sent
    with pytest.raises(ChainError) as info:
        node.create_lock(1, token, payer, 5, 60)
    assert info.value.kind == E.REVERT
    assert info.value.reason == "No auth found"
    assert not info.value.retryable
    assert node.lock_exists(1, token, payer) is None

    consumer = dev.escrow(dev.consumer.private_key)
    with pytest.raises(ChainError) as info:
        consumer.withdraw([token], [1])
    assert info.value.reason == "Insufficient available funds"


def test_reverted_receipt_raises_with_reason(dev, node):
    """A transaction sent with a fixed gas limit (no estimation) that reverts on chain."""
    if dev.backend == "py-evm":
        pytest.skip("eth-tester refuses a reverting transaction at send time (covered above)")
    token, payer = dev.token_address, dev.consumer.address
    fn = node.contract.functions.createLock(1, token, payer, 5, 60)
    with pytest.raises(ChainError) as info:
        node.chain.transact(fn, gas=200_000)
    assert info.value.kind == E.REVERT
    assert info.value.reason == "No auth found"
    assert info.value.tx_hash


def test_connection_refused_is_retryable():
    port = free_port()
    with pytest.raises(ChainError) as info:
        connect(f"http://127.0.0.1:{port}", 31337, timeout=2)
    assert info.value.kind == E.UNREACHABLE
    assert info.value.retryable


def test_chain_id_mismatch(dev):
    if dev.rpc_url is None:
        pytest.skip("in process: no RPC URL")
    assert connect(dev.rpc_url, 31337).eth.chain_id == 31337
    with pytest.raises(ChainError) as info:
        connect(dev.rpc_url, 1)
    assert info.value.kind == E.CHAIN_MISMATCH and not info.value.retryable


def test_nonces_across_quick_transactions(dev):
    acct = DevAccount.from_label("nonce-test")
    dev.fund(acct.address)
    client = ChainClient(dev.w3, acct.private_key)
    other = DevAccount.from_label("nonce-sink").address
    hashes = [client.transfer_eth(other, 1000 + i, wait=False) for i in range(5)]
    assert len(set(hashes)) == 5
    receipts = [client.wait(h) for h in hashes]
    assert all(r["status"] == 1 for r in receipts)
    assert dev.w3.eth.get_transaction_count(acct.address) == 5
    assert dev.w3.eth.get_balance(other) == sum(1000 + i for i in range(5))

    # another sender with the same key used nonces behind our back: the cached nonce is stale
    twin = ChainClient(dev.w3, acct.private_key)
    twin.transfer_eth(other, 1)
    twin.transfer_eth(other, 1)
    client.transfer_eth(other, 1)  # "nonce too low" recovered by asking the chain again
    assert dev.w3.eth.get_transaction_count(acct.address) == 8


def test_confirmations_wait_for_blocks_on_top(dev):
    """With confirmations, a receipt counts only once that many blocks sit on its block."""
    acct = DevAccount.from_label("confirmations")
    dev.fund(acct.address)
    client = ChainClient(dev.w3, acct.private_key, confirmations=2, poll_interval=0.02)
    sink = DevAccount.from_label("confirmations-sink").address
    tx_hash = client.transfer_eth(sink, 1, wait=False)
    waiter = ThreadPoolExecutor(1).submit(client.wait, tx_hash, 30)
    time.sleep(0.5)
    assert not waiter.done(), "returned before any block was built on the receipt's"
    mined = dev.w3.eth.get_transaction_receipt(tx_hash)["blockNumber"]
    for _ in range(2):
        dev.w3.provider.make_request("evm_mine", [])
    receipt = waiter.result(timeout=10)
    assert receipt["blockNumber"] == mined and dev.w3.eth.block_number >= mined + 2
    with pytest.raises(ChainError) as info:  # a block that never comes is a timeout, retried later
        ChainClient(dev.w3, acct.private_key, confirmations=50, poll_interval=0.02).wait(tx_hash, 0.3)
    assert info.value.kind == E.RECEIPT_TIMEOUT and info.value.retryable


def test_escrow_client_defaults_to_artifact_abi(dev):
    client = EscrowClient(ChainClient(dev.w3, dev.consumer.private_key), dev.escrow_address)
    funds = client.get_user_funds(dev.consumer.address, dev.token_address)
    assert funds.available == 0 and funds.locked == 0


# --- classify, on the words of each node software -------------------------------------------
class _RPCError(Exception):
    """Stands for web3's Web3RPCError: args[0] is the JSON-RPC error object."""


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (_RPCError({"code": 3, "message": "execution reverted: No auth found"}), E.REVERT, "No auth found"),
        (
            _RPCError(
                "VM Exception while processing transaction: reverted with reason string 'Amount too high'"
            ),
            E.REVERT,
            "Amount too high",
        ),
        (
            _RPCError("VM Exception while processing transaction: revert Lock not found"),
            E.REVERT,
            "Lock not found",
        ),
        (
            _RPCError({"code": -32000, "message": "nonce too low: next nonce 5, tx nonce 3"}),
            E.NONCE_TOO_LOW,
            None,
        ),
        (_RPCError("Nonce too low. Expected nonce to be 5 but got 3."), E.NONCE_TOO_LOW, None),
        (_RPCError("the tx doesn't have the correct nonce. account has nonce of: 5"), E.NONCE_TOO_LOW, None),
        (_RPCError({"code": -32000, "message": "already known"}), E.ALREADY_KNOWN, None),
        (_RPCError("Known transaction: 0xabc"), E.ALREADY_KNOWN, None),
        (_RPCError({"code": -32000, "message": "replacement transaction underpriced"}), E.UNDERPRICED, None),
        (
            _RPCError(
                {"code": -32000, "message": "insufficient funds for gas * price + value: have 0 want 1"}
            ),
            E.INSUFFICIENT_FUNDS,
            None,
        ),
        (
            _RPCError("sender doesn't have enough funds to send tx. The max upfront cost is: 1"),
            E.INSUFFICIENT_FUNDS,
            None,
        ),
        (ConnectionRefusedError(111, "Connection refused"), E.UNREACHABLE, None),
        (TimeoutError("timed out"), E.UNREACHABLE, None),
        (_RPCError("503 Server Error: Service Unavailable"), E.UNREACHABLE, None),
        (_RPCError("429 Client Error: Too Many Requests"), E.RATE_LIMITED, None),
        (_RPCError("something odd about 0xab503cd429"), E.UNKNOWN, None),
    ],
)
def test_classify_node_wordings(exc, kind, reason):
    err = classify(exc)
    assert err.kind == kind, err
    assert err.reason == reason
    assert err.retryable == (
        kind in {E.NONCE_TOO_LOW, E.ALREADY_KNOWN, E.UNDERPRICED, E.UNREACHABLE, E.RATE_LIMITED}
    )


def test_classify_web3_and_tester_types():
    from eth_tester.exceptions import TransactionFailed
    from web3.exceptions import ContractLogicError, TimeExhausted

    err = classify(TransactionFailed("execution reverted: Invalid amount"))
    assert (err.kind, err.reason) == (E.REVERT, "Invalid amount")
    err = classify(ContractLogicError("execution reverted: Expiry too high", data="0x"))
    assert (err.kind, err.reason) == (E.REVERT, "Expiry too high")
    data = (
        "0x08c379a0"
        + (32).to_bytes(32, "big").hex()
        + (3).to_bytes(32, "big").hex()
        + b"abc".hex().ljust(64, "0")
    )
    err = classify(ContractLogicError("execution reverted", data=data))
    assert (err.kind, err.reason) == (E.REVERT, "abc")
    err = classify(TimeExhausted("not in chain after 1 seconds"))
    assert err.kind == E.RECEIPT_TIMEOUT and err.retryable
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify(outer).kind == E.UNREACHABLE


def test_job_id_to_uint():
    assert job_id_to_uint(5) == 5
    assert job_id_to_uint("abc") == job_id_to_uint("abc") > 0
    with pytest.raises(ValueError):
        job_id_to_uint(0)
