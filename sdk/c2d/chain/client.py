"""The node's access to an EVM chain: signed transactions, nonces, gas, receipts, the escrow.

``ChainClient`` signs every transaction with the node's key (never an unlocked node account),
keeps the account's nonce under a lock (starting from the pending count and recovering from
"nonce too low"), prices gas with EIP-1559 when the chain has a base fee and a legacy gas price
otherwise, waits for receipts with a timeout and raises :class:`ChainError` on a reverted one.

``EscrowClient`` wraps the escrow contract (Ocean's Escrow interface) with typed methods.
Every failure surfaces as :class:`c2d.chain.errors.ChainError` (see ``classify``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.types import TxParams

from c2d.chain import errors as E
from c2d.chain.errors import ChainError, classify

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEFAULT_PRIORITY_FEE = 1_000_000_000  # 1 gwei, when the node has no eth_maxPriorityFeePerGas

ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "allowance",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "approve",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "transfer",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
]


# Optional ERC20 metadata: not every token has it, so it is asked for separately.
ERC20_METADATA_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "decimals",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "uint8"}],
    },
    {
        "type": "function",
        "name": "symbol",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "string"}],
    },
]


def hex0x(b: Any) -> str:
    """Bytes, HexBytes or hex text as 0x-prefixed hex (hexbytes 2 prints no 0x)."""
    if isinstance(b, str):
        return b if b.startswith("0x") else "0x" + b
    return "0x" + bytes(b).hex()


def connect(rpc_url: str, chain_id: int, *, timeout: float = 10.0) -> Web3:
    """A Web3 over HTTP JSON-RPC, checked to serve ``chain_id``.

    Raises ChainError(kind="unreachable") when nothing answers and ("chain_mismatch") when the
    endpoint serves another chain than configured.
    """
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        actual = w3.eth.chain_id
    except Exception as exc:
        raise classify(exc) from exc
    if int(actual) != int(chain_id):
        raise ChainError(
            E.CHAIN_MISMATCH,
            f"the RPC at {rpc_url} serves chain id {actual}, the config says {chain_id}",
            retryable=False,
        )
    return w3


def job_id_to_uint(job_id: str | int) -> int:
    """The escrow's uint256 jobId for a node job id: ints as they are, strings hashed (non-zero)."""
    if isinstance(job_id, int):
        if job_id <= 0 or job_id >= 2**256:
            raise ValueError(f"jobId out of range: {job_id}")
        return job_id
    n = int.from_bytes(keccak(text=job_id), "big")
    return n or 1


class ChainClient:
    """Sends transactions signed by one private key; thread-safe."""

    def __init__(
        self,
        w3: Web3,
        private_key: str | bytes,
        *,
        receipt_timeout: float = 120.0,
        poll_interval: float = 0.1,
        gas_margin: float = 1.25,
        max_nonce_retries: int = 5,
        confirmations: int = 0,
    ) -> None:
        self.w3 = w3
        self.confirmations = confirmations  # blocks on top of a receipt's before it counts
        self.account = Account.from_key(private_key)
        self.address: ChecksumAddress = self.account.address
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self.gas_margin = gas_margin
        self.max_nonce_retries = max_nonce_retries
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None
        self._eip1559: bool | None = None

    # --- reading ------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc(lambda: self.w3.eth.chain_id))
        return self._chain_id

    def _rpc(self, fn: Any) -> Any:
        try:
            return fn()
        except ChainError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    def call(self, fn: Any, block: Any = "latest") -> Any:
        """A view call (a bound ContractFunction), errors classified."""
        return self._rpc(lambda: fn.call({"from": self.address}, block_identifier=block))

    def eth_balance(self, address: str | None = None) -> int:
        who = to_checksum_address(address) if address else self.address
        return int(self._rpc(lambda: self.w3.eth.get_balance(who)))

    def block_time(self) -> int:
        """The latest block's timestamp: what the next block's is at least (the escrow's clock)."""
        return int(self._rpc(lambda: self.w3.eth.get_block("latest"))["timestamp"])

    def contract(self, address: str, abi: list[dict[str, Any]]) -> Any:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=abi)

    # --- fees ---------------------------------------------------------------------------
    def _fees(self) -> dict[str, int]:
        if self._eip1559 is None:
            block = self._rpc(lambda: self.w3.eth.get_block("latest"))
            self._eip1559 = block.get("baseFeePerGas") is not None
        if self._eip1559:
            block = self._rpc(lambda: self.w3.eth.get_block("latest"))
            base = int(block["baseFeePerGas"])
            try:
                tip = int(self.w3.eth.max_priority_fee)
            except Exception as exc:
                err = classify(exc)
                if err.kind in (E.UNREACHABLE, E.RATE_LIMITED):
                    raise err from exc
                tip = DEFAULT_PRIORITY_FEE
            return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
        return {"gasPrice": int(self._rpc(lambda: self.w3.eth.gas_price))}

    # --- nonce --------------------------------------------------------------------------
    def _pending_nonce(self) -> int:
        return int(self._rpc(lambda: self.w3.eth.get_transaction_count(self.address, "pending")))

    def reset_nonce(self) -> None:
        """Forget the cached nonce (next send asks the chain's pending count again)."""
        with self._lock:
            self._next_nonce = None

    # --- sending ------------------------------------------------------------------------
    def build(
        self,
        fn: Any = None,
        *,
        to: str | None = None,
        data: bytes | str = b"",
        value: int = 0,
        gas: int | None = None,
    ) -> dict[str, Any]:
        """A transaction dict (without nonce) for a bound ContractFunction or a raw call.

        Gas is estimated (a revert is raised here, with its reason, before anything is sent).
        """
        if fn is not None:
            # gas and gasPrice given so that web3 neither estimates nor prices: only to/data kept
            params = {"from": self.address, "value": value, "gas": 1, "gasPrice": 0}
            tx = self._rpc(lambda: fn.build_transaction({**params, "chainId": self.chain_id}))
            tx = {k: tx[k] for k in ("to", "data", "value") if k in tx}
        else:
            tx = {"data": hex0x(data) if data else "0x", "value": value}
            if to is not None:
                tx["to"] = to_checksum_address(to)
        tx["from"] = self.address
        tx["chainId"] = self.chain_id
        if gas is None:
            # tx holds exactly TxParams' keys; built as a plain dict because fn's part is dynamic.
            estimate = self._rpc(lambda: self.w3.eth.estimate_gas(cast(TxParams, dict(tx))))
            gas = int(int(estimate) * self.gas_margin) + 10_000
        tx["gas"] = gas
        tx.update(self._fees())
        return tx

    def send(self, tx: dict[str, Any]) -> str:
        """Assigns the nonce, signs and sends ``tx``; returns the transaction hash (0x...)."""
        attempts = 0
        with self._lock:
            while True:
                if self._next_nonce is None:
                    self._next_nonce = self._pending_nonce()
                nonce = self._next_nonce
                signed = self.account.sign_transaction({**tx, "nonce": nonce})
                tx_hash = hex0x(signed.hash)
                try:
                    self.w3.eth.send_raw_transaction(signed.raw_transaction)
                except Exception as exc:
                    err = classify(exc)
                    err.tx_hash = tx_hash
                    if err.kind == E.ALREADY_KNOWN:
                        # this exact transaction is already in the pool: it was sent
                        self._next_nonce = nonce + 1
                        return tx_hash
                    if err.kind in (E.NONCE_TOO_LOW, E.UNDERPRICED) and (attempts < self.max_nonce_retries):
                        attempts += 1
                        pending = self._pending_nonce()
                        self._next_nonce = max(pending, nonce + 1)
                        continue
                    # the nonce may or may not have been used: ask the chain next time
                    self._next_nonce = None
                    raise err from exc
                self._next_nonce = nonce + 1
                return tx_hash

    def wait(self, tx_hash: str, timeout: float | None = None) -> Any:
        """The receipt of ``tx_hash``; ChainError("receipt_timeout") when none comes in time,
        ChainError("revert", reason=...) when the transaction reverted."""
        timeout = self.receipt_timeout if timeout is None else timeout
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                HexStr(tx_hash), timeout=timeout, poll_latency=self.poll_interval
            )
        except Exception as exc:
            err = classify(exc)
            err.tx_hash = tx_hash
            raise err from exc
        if int(receipt["status"]) != 1:
            reason = self._replay_reason(tx_hash, receipt)
            msg = f"transaction {tx_hash} reverted" + (f": {reason}" if reason else "")
            raise ChainError(E.REVERT, msg, retryable=False, reason=reason, tx_hash=tx_hash)
        if self.confirmations:
            receipt = self._confirmed(tx_hash, receipt, time.monotonic() + timeout)
        return receipt

    def _confirmed(self, tx_hash: str, receipt: Any, deadline: float) -> Any:
        """The receipt once ``confirmations`` blocks sit on its block, and it is still there (no reorg)."""
        wanted = int(receipt["blockNumber"]) + self.confirmations
        while int(self._rpc(lambda: self.w3.eth.block_number)) < wanted:
            if time.monotonic() > deadline:
                raise ChainError(
                    E.RECEIPT_TIMEOUT,
                    f"transaction {tx_hash} has fewer than {self.confirmations} confirmations yet",
                    tx_hash=tx_hash,
                )
            time.sleep(self.poll_interval)
        try:
            return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except Exception as exc:  # reorganised away: it may come back in another block
            err = classify(exc)
            err.tx_hash = tx_hash
            raise err from exc

    def _replay_reason(self, tx_hash: str, receipt: Any) -> str | None:
        """Replays a reverted transaction as a call at its block to learn the reason."""
        try:
            tx = self.w3.eth.get_transaction(HexStr(tx_hash))
            call: TxParams = {
                "from": tx["from"],
                "to": tx["to"],
                "data": tx["input"],
                "value": tx["value"],
                "gas": tx["gas"],
            }
            self.w3.eth.call(call, block_identifier=receipt["blockNumber"])
        except Exception as exc:
            err = classify(exc)
            return err.reason if err.kind == E.REVERT else None
        return None

    def transact(
        self,
        fn: Any,
        *,
        value: int = 0,
        gas: int | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """Builds, signs, sends a ContractFunction call; the receipt (``wait``) or the hash."""
        tx_hash = self.send(self.build(fn, value=value, gas=gas))
        return self.wait(tx_hash, timeout) if wait else tx_hash

    def transfer_eth(self, to: str, value: int, *, wait: bool = True) -> Any:
        tx_hash = self.send(self.build(to=to, value=value, gas=21_000))
        return self.wait(tx_hash) if wait else tx_hash

    def deploy(
        self, abi: list[dict[str, Any]], bytecode: str, *args: Any, timeout: float | None = None
    ) -> str:
        """Deploys a contract; returns its checksummed address."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        data = self._rpc(lambda: factory.constructor(*args).data_in_transaction)
        receipt = self.wait(self.send(self.build(data=data)), timeout)
        return to_checksum_address(receipt["contractAddress"])


# --- escrow ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserFunds:
    available: int
    locked: int


@dataclass(frozen=True)
class Authorization:
    payee: str
    max_locked_amount: int
    current_locked_amount: int
    max_lock_seconds: int
    max_lock_counts: int
    current_locks: int


@dataclass(frozen=True)
class Lock:
    job_id: int
    payer: str
    payee: str
    amount: int
    expiry: int  # absolute unix timestamp
    token: str


@dataclass(frozen=True)
class LockClaim:
    """One entry of a batched claim: ``amount`` (0 releases the lock whole) with ``proof``."""

    job_id: int
    token: str
    payer: str
    amount: int
    proof: bytes


def _addr(a: str | None) -> str:
    return to_checksum_address(a) if a else ZERO_ADDRESS


class EscrowClient:
    """Typed calls to the escrow contract, sent by ``chain``'s key (the node as payee, or a
    consumer as payer)."""

    locks_need_payee = False  # getLocks filters by any of token, payer and payee

    def __init__(self, chain: ChainClient, escrow_address: str, abi: list[dict[str, Any]] | None = None):
        if abi is None:
            from c2d.chain import escrow_abi

            abi = escrow_abi()
        self.chain = chain
        self.address = to_checksum_address(escrow_address)
        self.contract = chain.contract(self.address, abi)

    # node (payee) side
    def create_lock(
        self, job_id: int, token: str, payer: str, amount: int, expiry_seconds: int, *, wait: bool = True
    ) -> Any:
        """Locks ``amount`` of the payer's funds for ``job_id``; expires ``expiry_seconds`` from
        the block's time (must be <= the payer's maxLockSeconds)."""
        fn = self.contract.functions.createLock(
            job_id_to_uint(job_id), _addr(token), _addr(payer), int(amount), int(expiry_seconds)
        )
        return self.chain.transact(fn, wait=wait)

    def claim_lock(
        self, job_id: int, token: str, payer: str, amount: int, proof: bytes | str, *, wait: bool = True
    ) -> Any:
        """Claims ``amount`` (<= the lock) with ``proof``; the rest goes back to the payer.
        Not idempotent by itself: check :meth:`lock_exists` first."""
        proof_b = proof.encode() if isinstance(proof, str) else bytes(proof)
        fn = self.contract.functions.claimLock(
            job_id_to_uint(job_id), _addr(token), _addr(payer), int(amount), proof_b
        )
        return self.chain.transact(fn, wait=wait)

    def claim_lock_and_withdraw(
        self, job_id: int, token: str, payer: str, amount: int, proof: bytes | str, *, wait: bool = True
    ) -> Any:
        proof_b = proof.encode() if isinstance(proof, str) else bytes(proof)
        fn = self.contract.functions.claimLockAndWithdraw(
            job_id_to_uint(job_id), _addr(token), _addr(payer), int(amount), proof_b
        )
        return self.chain.transact(fn, wait=wait)

    def claim_locks(self, claims: Sequence[LockClaim], *, withdraw: bool = False, wait: bool = True) -> Any:
        """Claims several locks in one transaction (``claimLocks``; ``withdraw``: ``claimLocksAndWithdraw``,
        which then withdraws the sender's available funds in each token). One claim that reverts
        reverts them all; like :meth:`claim_lock`, not idempotent by itself."""
        name = "claimLocksAndWithdraw" if withdraw else "claimLocks"
        fn = getattr(self.contract.functions, name)(
            [job_id_to_uint(c.job_id) for c in claims],
            [_addr(c.token) for c in claims],
            [_addr(c.payer) for c in claims],
            [int(c.amount) for c in claims],
            [bytes(c.proof) for c in claims],
        )
        return self.chain.transact(fn, wait=wait)

    def cancel_expired_locks(self, locks: Sequence[Lock], *, wait: bool = True) -> Any:
        """Gives expired locks back to their payers in one transaction; reverts unless every one of
        them is still there and expired at the block that includes it."""
        fn = self.contract.functions.cancelExpiredLocks(
            [job_id_to_uint(lock.job_id) for lock in locks],
            [_addr(lock.token) for lock in locks],
            [_addr(lock.payer) for lock in locks],
            [_addr(lock.payee) for lock in locks],
        )
        return self.chain.transact(fn, wait=wait)

    def cancel_expired_lock(
        self, job_id: int, token: str, payer: str, payee: str | None = None, *, wait: bool = True
    ) -> Any:
        fn = self.contract.functions.cancelExpiredLock(
            job_id_to_uint(job_id), _addr(token), _addr(payer), _addr(payee or self.chain.address)
        )
        return self.chain.transact(fn, wait=wait)

    def withdraw(self, tokens: Sequence[str], amounts: Sequence[int], *, wait: bool = True) -> Any:
        fn = self.contract.functions.withdraw([_addr(t) for t in tokens], [int(a) for a in amounts])
        return self.chain.transact(fn, wait=wait)

    def withdraw_earnings(self, token: str, amount: int | None = None) -> int:
        """Withdraws ``amount`` (default: all available) of the sender's escrow funds to its
        wallet; returns the amount withdrawn (0: nothing sent)."""
        if amount is None:
            amount = self.get_user_funds(self.chain.address, token).available
        if amount <= 0:
            return 0
        self.withdraw([token], [amount])
        return amount

    # payer side (consumers, the dev chain, tests)
    def deposit(self, token: str, amount: int, *, approve: bool = True) -> Any:
        if approve:
            erc20 = self.chain.contract(token, ERC20_ABI)
            allowance = self.chain.call(erc20.functions.allowance(self.chain.address, self.address))
            if allowance < amount:
                self.chain.transact(erc20.functions.approve(self.address, int(amount)))
        return self.chain.transact(self.contract.functions.deposit(_addr(token), int(amount)))

    def authorize(
        self, token: str, payee: str, max_locked_amount: int, max_lock_seconds: int, max_lock_counts: int
    ) -> Any:
        fn = self.contract.functions.authorize(
            _addr(token), _addr(payee), int(max_locked_amount), int(max_lock_seconds), int(max_lock_counts)
        )
        return self.chain.transact(fn)

    # views
    def get_user_funds(self, payer: str, token: str) -> UserFunds:
        r = self.chain.call(self.contract.functions.getUserFunds(_addr(payer), _addr(token)))
        return UserFunds(int(r[0]), int(r[1]))

    def get_user_tokens(self, user: str) -> list[str]:
        """The tokens ``user`` has available or locked funds in (checksummed)."""
        rows = self.chain.call(self.contract.functions.getUserTokens(_addr(user)))
        return [to_checksum_address(t) for t in rows]

    def get_authorization(self, token: str, payer: str, payee: str | None = None) -> Authorization | None:
        """The payer's authorization of ``payee`` (default: this client's address), or None."""
        rows = self.chain.call(
            self.contract.functions.getAuthorizations(
                _addr(token), _addr(payer), _addr(payee or self.chain.address)
            )
        )
        if not rows:
            return None
        r = rows[0]
        return Authorization(to_checksum_address(r[0]), *(int(x) for x in r[1:]))

    def get_locks(
        self, token: str | None = None, payer: str | None = None, payee: str | None = None
    ) -> list[Lock]:
        """Live locks; each filter left None matches any."""
        rows = self.chain.call(self.contract.functions.getLocks(_addr(token), _addr(payer), _addr(payee)))
        return [
            Lock(
                int(r[0]),
                to_checksum_address(r[1]),
                to_checksum_address(r[2]),
                int(r[3]),
                int(r[4]),
                to_checksum_address(r[5]),
            )
            for r in rows
        ]

    def lock_exists(self, job_id: int, token: str, payer: str, payee: str | None = None) -> Lock | None:
        """The live lock for ``job_id`` (payee default: this client), or None (never made,
        claimed or cancelled)."""
        jid = job_id_to_uint(job_id)
        for lock in self.get_locks(token, payer, payee or self.chain.address):
            if lock.job_id == jid:
                return lock
        return None

    def get_authorizations(self, token: str, payer: str, payee: str | None = None) -> list[Authorization]:
        """Every payee the payer authorized in ``token`` (or only ``payee``): what a consumer reviews."""
        rows = self.chain.call(
            self.contract.functions.getAuthorizations(_addr(token), _addr(payer), _addr(payee))
        )
        return [Authorization(to_checksum_address(r[0]), *(int(x) for x in r[1:])) for r in rows]

    def token_decimals(self, token: str) -> int | None:
        """The token's ERC20 ``decimals()``, or None when it has none (the function is optional)."""
        value = self._token_metadata(token, "decimals")
        return None if value is None else int(value)

    def token_symbol(self, token: str) -> str | None:
        """The token's ERC20 ``symbol()``, or None when it has none."""
        value = self._token_metadata(token, "symbol")
        return None if value is None else str(value)

    def _token_metadata(self, token: str, name: str) -> Any:
        erc20 = self.chain.contract(token, ERC20_METADATA_ABI)
        try:
            return self.chain.call(getattr(erc20.functions, name)())
        except ChainError as err:
            # a missing function reverts or returns nothing; a chain that is down is a real error
            if err.kind in (E.UNREACHABLE, E.RATE_LIMITED, E.CHAIN_MISMATCH):
                raise
            return None

    def balance_of(self, token: str, owner: str) -> int:
        """ERC20 balance of ``owner`` in ``token``."""
        erc20 = self.chain.contract(token, ERC20_ABI)
        return int(self.chain.call(erc20.functions.balanceOf(_addr(owner))))


__all__ = [
    "ERC20_ABI",
    "ERC20_METADATA_ABI",
    "ZERO_ADDRESS",
    "Authorization",
    "ChainClient",
    "EscrowClient",
    "Lock",
    "LockClaim",
    "UserFunds",
    "connect",
    "hex0x",
    "job_id_to_uint",
]
