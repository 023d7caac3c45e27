"""The escrow contract (contracts/Escrow.sol) on an in-process py-evm chain.

Deploys the committed artifacts (sdk/c2d/chain/artifacts), so these tests need no Node; the
staleness test recompiles with solc-js and fails when the artifacts do not match the sources.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

web3 = pytest.importorskip("web3")
eth_tester_exceptions = pytest.importorskip("eth_tester.exceptions")

from web3 import Web3  # noqa: E402
from web3.exceptions import ContractLogicError  # noqa: E402
from web3.logs import DISCARD  # noqa: E402

from c2d.chain import load_artifact  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ZERO = "0x0000000000000000000000000000000000000000"
E18 = 10**18
HOUR = 3600


@contextlib.contextmanager
def reverts(reason: str):
    """The transaction reverts with `reason` (py-evm raises TransactionFailed, RPC nodes ContractLogicError)."""
    with pytest.raises((eth_tester_exceptions.TransactionFailed, ContractLogicError)) as info:
        yield
    assert reason in str(info.value), f"expected revert {reason!r}, got {info.value!r}"


class Chain:
    def __init__(self) -> None:
        self.w3 = Web3(Web3.EthereumTesterProvider())
        accounts = self.w3.eth.accounts
        self.deployer, self.payer, self.payee, self.other, self.payer2, self.payee2 = accounts[:6]
        self.escrow = self.deploy("Escrow")
        self.token = self.deploy("TestToken", "Test Token", "TST")
        self.token2 = self.deploy("TestToken", "Other Token", "OTH")

    def deploy(self, name: str, *args):
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self.wait(factory.constructor(*args).transact({"from": self.deployer}))
        return self.w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])

    def wait(self, tx_hash):
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt.status == 1
        return receipt

    def tx(self, fn, sender):
        return self.wait(fn.transact({"from": sender}))

    def events(self, receipt, name: str) -> list:
        return [
            dict(e.args) for e in getattr(self.escrow.events, name)().process_receipt(receipt, errors=DISCARD)
        ]

    def now(self) -> int:
        return self.w3.eth.get_block("latest").timestamp

    def time_travel(self, seconds: int) -> None:
        self.w3.testing.timeTravel(self.now() + seconds)
        self.w3.testing.mine()

    # --- shortcuts
    def fund(self, payer, amount, token=None):
        token = token or self.token
        self.tx(token.functions.mint(payer, amount), self.deployer)
        self.tx(token.functions.approve(self.escrow.address, amount), payer)
        return self.tx(self.escrow.functions.deposit(token.address, amount), payer)

    def authorize(self, payer, payee, max_amount=100 * E18, max_seconds=HOUR, max_count=10, token=None):
        token = token or self.token
        fn = self.escrow.functions.authorize(token.address, payee, max_amount, max_seconds, max_count)
        return self.tx(fn, payer)

    def lock(self, job_id, amount, expiry=HOUR, payer=None, payee=None, token=None):
        token, payer, payee = token or self.token, payer or self.payer, payee or self.payee
        fn = self.escrow.functions.createLock(job_id, token.address, payer, amount, expiry)
        return self.tx(fn, payee)

    def funds(self, payer, token=None) -> tuple[int, int]:
        return tuple(self.escrow.functions.getUserFunds(payer, (token or self.token).address).call())

    def balance(self, who, token=None) -> int:
        return (token or self.token).functions.balanceOf(who).call()


@pytest.fixture(scope="module")
def module_chain() -> Chain:
    return Chain()


@pytest.fixture
def chain(module_chain: Chain):
    """Each test starts from the freshly deployed contracts."""
    snapshot = module_chain.w3.testing.snapshot()
    yield module_chain
    module_chain.w3.testing.revert(snapshot)


# ---------------------------------------------------------------- deposit / withdraw


def test_deposit_withdraw_and_funds_getters(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    assert chain.escrow.functions.getUserTokens(chain.payer).call() == []
    receipt = chain.fund(chain.payer, 10 * E18)
    assert chain.events(receipt, "Deposit") == [
        {"payer": chain.payer, "token": tok.address, "amount": 10 * E18}
    ]
    assert chain.funds(chain.payer) == (10 * E18, 0)
    assert tuple(esc.functions.getFunds(tok.address).call({"from": chain.payer})) == (10 * E18, 0)
    assert tuple(esc.functions.getFunds(tok.address).call({"from": chain.other})) == (0, 0)
    assert esc.functions.getUserTokens(chain.payer).call() == [tok.address]
    assert chain.balance(esc.address) == 10 * E18

    with reverts("Insufficient available funds"):
        chain.tx(esc.functions.withdraw([tok.address], [10 * E18 + 1]), chain.payer)
    with reverts("Insufficient available funds"):  # the whole batch reverts
        chain.tx(esc.functions.withdraw([tok.address, tok.address], [E18, 10 * E18]), chain.payer)
    with reverts("Invalid input"):
        chain.tx(esc.functions.withdraw([tok.address], []), chain.payer)
    assert chain.funds(chain.payer) == (10 * E18, 0)

    receipt = chain.tx(esc.functions.withdraw([tok.address], [3 * E18]), chain.payer)
    assert chain.events(receipt, "Withdraw") == [
        {"payer": chain.payer, "token": tok.address, "amount": 3 * E18}
    ]
    assert chain.funds(chain.payer) == (7 * E18, 0)
    assert chain.balance(chain.payer) == 3 * E18
    chain.tx(esc.functions.withdraw([tok.address], [7 * E18]), chain.payer)
    assert chain.funds(chain.payer) == (0, 0)
    assert chain.balance(chain.payer) == 10 * E18
    assert esc.functions.getUserTokens(chain.payer).call() == []


def test_deposit_reverts_and_deposit_multiple(chain: Chain) -> None:
    esc, tok, tok2 = chain.escrow, chain.token, chain.token2
    with reverts("Invalid token"):
        chain.tx(esc.functions.deposit(ZERO, 1), chain.payer)
    with reverts("Invalid amount"):
        chain.tx(esc.functions.deposit(tok.address, 0), chain.payer)
    with reverts("Token is not a contract"):
        chain.tx(esc.functions.deposit(chain.other, 1), chain.payer)
    chain.tx(tok.functions.mint(chain.payer, 5), chain.deployer)
    with reverts("Token transfer failed"):  # no allowance
        chain.tx(esc.functions.deposit(tok.address, 5), chain.payer)

    chain.tx(tok.functions.approve(esc.address, 5), chain.payer)
    chain.tx(tok2.functions.mint(chain.payer, 7), chain.deployer)
    chain.tx(tok2.functions.approve(esc.address, 7), chain.payer)
    with reverts("Invalid input"):
        chain.tx(esc.functions.depositMultiple([tok.address, tok2.address], [5]), chain.payer)
    receipt = chain.tx(esc.functions.depositMultiple([tok.address, tok2.address], [5, 7]), chain.payer)
    assert [(e["token"], e["amount"]) for e in chain.events(receipt, "Deposit")] == [
        (tok.address, 5),
        (tok2.address, 7),
    ]
    assert chain.funds(chain.payer, tok) == (5, 0)
    assert chain.funds(chain.payer, tok2) == (7, 0)
    assert sorted(esc.functions.getUserTokens(chain.payer).call()) == sorted([tok.address, tok2.address])


# ---------------------------------------------------------------- authorize


def _auths(chain: Chain, payer, payee=ZERO, token=None) -> list[tuple]:
    token = token or chain.token
    return [tuple(a) for a in chain.escrow.functions.getAuthorizations(token.address, payer, payee).call()]


def test_authorize_and_get_authorizations(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    receipt = chain.authorize(chain.payer, chain.payee, 50, 60, 2)
    assert chain.events(receipt, "Auth") == [
        {
            "payer": chain.payer,
            "payee": chain.payee,
            "maxLockedAmount": 50,
            "maxLockSeconds": 60,
            "maxLockCounts": 2,
        }
    ]
    # (payee, maxLockedAmount, currentLockedAmount, maxLockSeconds, maxLockCounts, currentLocks)
    assert _auths(chain, chain.payer) == [(chain.payee, 50, 0, 60, 2, 0)]
    chain.authorize(chain.payer, chain.payee, 70, 80, 3)  # updates in place
    chain.authorize(chain.payer, chain.payee2, 1, 2, 3)
    assert _auths(chain, chain.payer) == [(chain.payee, 70, 0, 80, 3, 0), (chain.payee2, 1, 0, 2, 3, 0)]
    assert _auths(chain, chain.payer, chain.payee2) == [(chain.payee2, 1, 0, 2, 3, 0)]
    assert _auths(chain, chain.payer, chain.other) == []
    assert _auths(chain, chain.payer2) == []
    assert _auths(chain, chain.payer, token=chain.token2) == []

    with reverts("Invalid token"):
        chain.tx(esc.functions.authorize(ZERO, chain.payee, 1, 1, 1), chain.payer)
    with reverts("Invalid payee"):
        chain.tx(esc.functions.authorize(tok.address, ZERO, 1, 1, 1), chain.payer)
    with reverts("Invalid payer"):
        esc.functions.getAuthorizations(tok.address, ZERO, ZERO).call()
    with reverts("Invalid token"):
        esc.functions.getAuthorizations(ZERO, chain.payer, ZERO).call()

    fn = esc.functions.authorizeMultiple(
        [tok.address, chain.token2.address], [chain.payee, chain.payee], [5, 6], [7, 8], [9, 10]
    )
    receipt = chain.tx(fn, chain.payer2)
    assert len(chain.events(receipt, "Auth")) == 2
    assert _auths(chain, chain.payer2) == [(chain.payee, 5, 0, 7, 9, 0)]
    assert _auths(chain, chain.payer2, token=chain.token2) == [(chain.payee, 6, 0, 8, 10, 0)]
    with reverts("Invalid input"):
        chain.tx(esc.functions.authorizeMultiple([tok.address], [chain.payee], [1], [1], []), chain.payer)


# ---------------------------------------------------------------- locks


def test_create_lock_moves_funds_to_locked(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee, 5 * E18, HOUR, 2)
    receipt = chain.lock(1, 3 * E18, expiry=600)
    assert chain.events(receipt, "Lock") == [
        {
            "payer": chain.payer,
            "payee": chain.payee,
            "jobId": 1,
            "amount": 3 * E18,
            "expiry": 600,
            "token": tok.address,
        }
    ]
    block_time = chain.w3.eth.get_block(receipt.blockNumber).timestamp
    assert chain.funds(chain.payer) == (7 * E18, 3 * E18)
    assert _auths(chain, chain.payer) == [(chain.payee, 5 * E18, 3 * E18, HOUR, 2, 1)]
    locks = [tuple(x) for x in esc.functions.getLocks(ZERO, ZERO, ZERO).call()]
    # (jobId, payer, payee, amount, expiry, token)
    assert locks == [(1, chain.payer, chain.payee, 3 * E18, block_time + 600, tok.address)]
    # locked funds cannot be withdrawn: available = deposited - locked
    with reverts("Insufficient available funds"):
        chain.tx(esc.functions.withdraw([tok.address], [7 * E18 + 1]), chain.payer)
    chain.tx(esc.functions.withdraw([tok.address], [7 * E18]), chain.payer)
    assert chain.funds(chain.payer) == (0, 3 * E18)
    assert esc.functions.getUserTokens(chain.payer).call() == [tok.address]  # still holds locked funds


def test_create_lock_reverts(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)

    with reverts("No auth found"):
        chain.lock(1, E18)
    chain.authorize(chain.payer, chain.payee, 4 * E18, HOUR, 2)
    with reverts("No auth found"):  # authorized for another payee
        chain.lock(1, E18, payee=chain.payee2)
    with reverts("No auth found"):  # authorized for another token
        chain.lock(1, E18, token=chain.token2)
    with reverts("Exceeds maxLockedAmount"):
        chain.lock(1, 4 * E18 + 1)
    with reverts("Expiry too high"):
        chain.lock(1, E18, expiry=HOUR + 1)
    with reverts("Invalid amount"):
        chain.lock(1, 0)
    with reverts("Invalid jobId"):
        chain.lock(0, E18)
    with reverts("Invalid payer"):
        chain.tx(esc.functions.createLock(1, tok.address, ZERO, E18, 60), chain.payee)
    with reverts("Invalid token"):
        chain.tx(esc.functions.createLock(1, ZERO, chain.payer, E18, 60), chain.payee)

    chain.lock(1, 3 * E18, expiry=HOUR)
    with reverts("JobId already exists"):
        chain.lock(1, E18)
    with reverts("Exceeds maxLockedAmount"):  # counts what is already locked
        chain.lock(2, E18 + 1)
    chain.lock(2, E18)
    chain.authorize(chain.payer, chain.payee, 100 * E18, HOUR, 2)
    with reverts("Exceeds maxLockCounts"):
        chain.lock(3, E18)
    chain.authorize(chain.payer, chain.payee, 100 * E18, HOUR, 10)
    assert chain.funds(chain.payer) == (6 * E18, 4 * E18)
    with reverts("Payer does not have enough funds"):
        chain.lock(3, 6 * E18 + 1)
    chain.lock(3, 6 * E18)
    assert chain.funds(chain.payer) == (0, 10 * E18)


def test_create_locks_batch(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee)
    fn = esc.functions.createLocks([1, 2], [tok.address] * 2, [chain.payer] * 2, [E18, 2 * E18], [60, 120])
    receipt = chain.tx(fn, chain.payee)
    assert [e["jobId"] for e in chain.events(receipt, "Lock")] == [1, 2]
    assert chain.funds(chain.payer) == (7 * E18, 3 * E18)
    with reverts("Invalid input"):
        chain.tx(esc.functions.createLocks([3], [tok.address], [chain.payer], [E18], []), chain.payee)
    with reverts("JobId already exists"):  # all or nothing
        fn = esc.functions.createLocks([3, 1], [tok.address] * 2, [chain.payer] * 2, [E18, E18], [60, 60])
        chain.tx(fn, chain.payee)
    assert chain.funds(chain.payer) == (7 * E18, 3 * E18)


# ---------------------------------------------------------------- claims


def test_claim_pays_payee_and_releases_the_rest(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee, 5 * E18, HOUR, 1)
    chain.lock(7, 4 * E18)

    with reverts("Amount too high"):
        chain.tx(esc.functions.claimLock(7, tok.address, chain.payer, 4 * E18 + 1, b""), chain.payee)
    with reverts("Lock not found"):  # only the payee that locked can claim
        chain.tx(esc.functions.claimLock(7, tok.address, chain.payer, E18, b""), chain.other)
    with reverts("Lock not found"):  # the payer cannot either
        chain.tx(esc.functions.claimLock(7, tok.address, chain.payer, E18, b""), chain.payer)
    with reverts("Lock not found"):
        chain.tx(esc.functions.claimLock(7, chain.token2.address, chain.payer, E18, b""), chain.payee)
    with reverts("Lock not found"):
        chain.tx(esc.functions.claimLock(8, tok.address, chain.payer, E18, b""), chain.payee)
    with reverts("Invalid jobId"):
        chain.tx(esc.functions.claimLock(0, tok.address, chain.payer, E18, b""), chain.payee)
    with reverts("Invalid payer"):
        chain.tx(esc.functions.claimLock(7, tok.address, ZERO, E18, b""), chain.payee)
    with reverts("Invalid token"):
        chain.tx(esc.functions.claimLock(7, ZERO, chain.payer, E18, b""), chain.payee)

    proof = bytes.fromhex("ab" * 32)
    amount = 1_234_567_890_123_456_789
    receipt = chain.tx(esc.functions.claimLock(7, tok.address, chain.payer, amount, proof), chain.payee)
    assert chain.events(receipt, "Claimed") == [
        {
            "payee": chain.payee,
            "jobId": 7,
            "token": tok.address,
            "payer": chain.payer,
            "amount": amount,
            "proof": proof,
        }
    ]
    assert chain.funds(chain.payer) == (10 * E18 - amount, 0)
    assert chain.funds(chain.payee) == (amount, 0)
    assert chain.balance(esc.address) == 10 * E18  # nothing left the contract yet
    assert _auths(chain, chain.payer) == [(chain.payee, 5 * E18, 0, HOUR, 1, 0)]
    assert esc.functions.getLocks(ZERO, ZERO, ZERO).call() == []
    assert esc.functions.getUserTokens(chain.payee).call() == [tok.address]

    with reverts("Lock not found"):  # double claim
        chain.tx(esc.functions.claimLock(7, tok.address, chain.payer, 1, proof), chain.payee)
    chain.lock(7, E18)  # the count and amount are free again; the jobId can be reused once claimed

    chain.tx(esc.functions.withdraw([tok.address], [amount]), chain.payee)
    assert chain.balance(chain.payee) == amount
    assert chain.funds(chain.payee) == (0, 0)
    assert esc.functions.getUserTokens(chain.payee).call() == []


def test_claim_zero_releases_everything(chain: Chain) -> None:
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee)
    chain.lock(1, 4 * E18)
    chain.tx(chain.escrow.functions.claimLock(1, chain.token.address, chain.payer, 0, b""), chain.payee)
    assert chain.funds(chain.payer) == (10 * E18, 0)
    assert chain.funds(chain.payee) == (0, 0)


def test_claim_lock_and_withdraw(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee)
    chain.lock(1, 4 * E18)
    receipt = chain.tx(
        esc.functions.claimLockAndWithdraw(1, tok.address, chain.payer, 3 * E18, b"p"), chain.payee
    )
    assert len(chain.events(receipt, "Claimed")) == 1
    assert chain.events(receipt, "Withdraw") == [
        {"payer": chain.payee, "token": tok.address, "amount": 3 * E18}
    ]
    assert chain.balance(chain.payee) == 3 * E18
    assert chain.funds(chain.payee) == (0, 0)
    assert chain.funds(chain.payer) == (7 * E18, 0)
    assert chain.balance(esc.address) == 7 * E18
    with reverts("Lock not found"):
        chain.tx(esc.functions.claimLockAndWithdraw(1, tok.address, chain.payer, 1, b"p"), chain.payee)


def test_claim_locks_batches(chain: Chain) -> None:
    esc, tok, tok2 = chain.escrow, chain.token, chain.token2
    chain.fund(chain.payer, 10 * E18)
    chain.fund(chain.payer2, 10 * E18, token=tok2)
    chain.authorize(chain.payer, chain.payee)
    chain.authorize(chain.payer2, chain.payee, token=tok2)
    chain.lock(1, 2 * E18)
    chain.lock(2, 2 * E18)
    chain.lock(3, 5 * E18, payer=chain.payer2, token=tok2)
    chain.lock(4, 5 * E18, payer=chain.payer2, token=tok2)

    with reverts("Invalid input"):
        chain.tx(
            esc.functions.claimLocks([1, 2], [tok.address] * 2, [chain.payer] * 2, [1, 1], [b""]), chain.payee
        )
    with reverts("Amount too high"):  # all or nothing
        fn = esc.functions.claimLocks(
            [1, 2], [tok.address] * 2, [chain.payer] * 2, [1, 2 * E18 + 1], [b"", b""]
        )
        chain.tx(fn, chain.payee)
    fn = esc.functions.claimLocks([1, 2], [tok.address] * 2, [chain.payer] * 2, [E18, 2 * E18], [b"a", b"b"])
    receipt = chain.tx(fn, chain.payee)
    assert [(e["jobId"], e["amount"], e["proof"]) for e in chain.events(receipt, "Claimed")] == [
        (1, E18, b"a"),
        (2, 2 * E18, b"b"),
    ]
    assert chain.funds(chain.payer) == (7 * E18, 0)
    assert chain.funds(chain.payee) == (3 * E18, 0)

    with reverts("Invalid input"):
        fn = esc.functions.claimLocksAndWithdraw([3], [tok2.address], [chain.payer2], [1], [b"", b""])
        chain.tx(fn, chain.payee)
    fn = esc.functions.claimLocksAndWithdraw(
        [3, 4], [tok2.address] * 2, [chain.payer2] * 2, [E18, 0], [b"c", b"d"]
    )
    receipt = chain.tx(fn, chain.payee)
    assert len(chain.events(receipt, "Claimed")) == 2
    assert chain.events(receipt, "Withdraw") == [{"payer": chain.payee, "token": tok2.address, "amount": E18}]
    assert chain.balance(chain.payee, tok2) == E18
    assert chain.funds(chain.payer2, tok2) == (9 * E18, 0)
    assert chain.funds(chain.payee) == (3 * E18, 0)  # the other token stays in the escrow


# ---------------------------------------------------------------- expiry


def test_cancel_expired_lock(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee, max_count=3)
    chain.lock(1, 4 * E18, expiry=100)
    with reverts("No expired lock"):
        chain.tx(esc.functions.cancelExpiredLock(1, tok.address, chain.payer, chain.payee), chain.other)
    chain.time_travel(101)
    with reverts("No expired lock"):  # filters that match nothing
        chain.tx(esc.functions.cancelExpiredLock(2, ZERO, ZERO, ZERO), chain.other)
    receipt = chain.tx(esc.functions.cancelExpiredLock(1, tok.address, chain.payer, chain.payee), chain.other)
    assert chain.events(receipt, "Canceled") == [
        {"payee": chain.payee, "jobId": 1, "token": tok.address, "payer": chain.payer, "amount": 4 * E18}
    ]
    assert chain.funds(chain.payer) == (10 * E18, 0)
    assert _auths(chain, chain.payer)[0][2:] == (0, HOUR, 3, 0)
    assert esc.functions.getLocks(ZERO, ZERO, ZERO).call() == []
    with reverts("Lock not found"):
        chain.tx(esc.functions.claimLock(1, tok.address, chain.payer, E18, b""), chain.payee)


def test_cancel_expired_locks_with_wildcards(chain: Chain) -> None:
    esc = chain.escrow
    chain.fund(chain.payer, 10 * E18)
    chain.fund(chain.payer2, 10 * E18)
    chain.authorize(chain.payer, chain.payee)
    chain.authorize(chain.payer2, chain.payee)
    chain.lock(1, E18, expiry=100)
    chain.lock(2, E18, expiry=100)
    chain.lock(3, E18, expiry=100, payer=chain.payer2)
    chain.lock(4, E18, expiry=HOUR)  # not expired
    chain.time_travel(101)
    with reverts("Invalid input"):
        chain.tx(esc.functions.cancelExpiredLocks([0], [ZERO], [ZERO], []), chain.other)
    with reverts("No expired lock"):  # the second entry matches nothing left
        fn = esc.functions.cancelExpiredLocks([0, 1], [ZERO, ZERO], [chain.payer, ZERO], [ZERO, ZERO])
        chain.tx(fn, chain.other)
    fn = esc.functions.cancelExpiredLocks([0, 3], [ZERO, ZERO], [chain.payer, ZERO], [ZERO, chain.payee])
    receipt = chain.tx(fn, chain.other)
    assert sorted(e["jobId"] for e in chain.events(receipt, "Canceled")) == [1, 2, 3]
    assert chain.funds(chain.payer) == (9 * E18, E18)
    assert chain.funds(chain.payer2) == (10 * E18, 0)
    assert [x[0] for x in esc.functions.getLocks(ZERO, ZERO, ZERO).call()] == [4]
    assert _auths(chain, chain.payer)[0][2] == E18 and _auths(chain, chain.payer)[0][5] == 1


def test_claim_after_expiry_cancels_instead(chain: Chain) -> None:
    esc, tok = chain.escrow, chain.token
    chain.fund(chain.payer, 10 * E18)
    chain.authorize(chain.payer, chain.payee)
    chain.lock(1, 4 * E18, expiry=100)
    chain.time_travel(101)
    receipt = chain.tx(esc.functions.claimLock(1, tok.address, chain.payer, 3 * E18, b"late"), chain.payee)
    assert chain.events(receipt, "Claimed") == []
    assert [e["amount"] for e in chain.events(receipt, "Canceled")] == [4 * E18]
    assert chain.funds(chain.payer) == (10 * E18, 0)
    assert chain.funds(chain.payee) == (0, 0)


# ---------------------------------------------------------------- getLocks filtering


def test_get_locks_ands_its_filters(chain: Chain) -> None:
    esc = chain.escrow
    payers, payees, tokens = (
        [chain.payer, chain.payer2],
        [chain.payee, chain.payee2],
        [chain.token, chain.token2],
    )
    expected = []
    job = 0
    for payer, token in itertools.product(payers, tokens):
        chain.fund(payer, 10 * E18, token=token)
        for payee in payees:
            chain.authorize(payer, payee, token=token)
            job += 1
            chain.lock(job, job, payer=payer, payee=payee, token=token)
            expected.append((job, payer, payee, token.address))

    def locks(token, payer, payee):
        return sorted((x[0], x[1], x[2], x[5]) for x in esc.functions.getLocks(token, payer, payee).call())

    for token, payer, payee in itertools.product(
        [ZERO, *(t.address for t in tokens)], [ZERO, *payers], [ZERO, *payees]
    ):
        want = sorted(
            e
            for e in expected
            if (token == ZERO or e[3] == token)
            and (payer == ZERO or e[1] == payer)
            and (payee == ZERO or e[2] == payee)
        )
        assert locks(token, payer, payee) == want, (token, payer, payee)
    assert locks(ZERO, chain.other, ZERO) == []


# ---------------------------------------------------------------- test token


def test_test_token(chain: Chain) -> None:
    tok = chain.token
    assert (tok.functions.name().call(), tok.functions.symbol().call(), tok.functions.decimals().call()) == (
        "Test Token",
        "TST",
        18,
    )
    chain.tx(tok.functions.mint(chain.payer, 5), chain.other)
    assert tok.functions.totalSupply().call() == 5
    with reverts("exceeds balance"):
        chain.tx(tok.functions.transfer(chain.other, 6), chain.payer)
    with reverts("insufficient allowance"):
        chain.tx(tok.functions.transferFrom(chain.payer, chain.other, 1), chain.other)
    chain.tx(tok.functions.approve(chain.other, 2), chain.payer)
    chain.tx(tok.functions.transferFrom(chain.payer, chain.other, 2), chain.other)
    assert tok.functions.allowance(chain.payer, chain.other).call() == 0
    assert chain.balance(chain.other) == 2


# ---------------------------------------------------------------- artifacts


def test_artifacts_are_up_to_date() -> None:
    """The committed ABI and bytecode match contracts/*.sol (recompiled with solc-js)."""
    problem = None
    if not (ROOT / "node_modules" / "solc").is_dir():
        problem = "node_modules/solc is missing; run bash scripts/setup-dev (npm ci)"
    else:
        try:
            subprocess.run(["node", "--version"], capture_output=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            problem = "node is not installed"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must check the contract artifacts: {problem}", pytrace=False)
        pytest.skip(problem)
    result = subprocess.run(
        [sys.executable, "scripts/compile_contracts.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
