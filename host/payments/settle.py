"""Settling escrow locks on chain, several per transaction: claims with ``claimLocks``, expired locks
with ``cancelExpiredLocks``.

The payment loop reads the node's live locks once (:meth:`Settler.live_locks`), decides per lock,
and hands this module the claims and the cancellations; each list goes out in transactions of at
most ``batch_size`` locks (1: one ``claimLock``/``cancelExpiredLock`` per lock, as a node without
batching does). A batch reverts as a whole when one of its locks cannot be settled (gone since the
look, refused): then its locks are sent one by one, each after a fresh look, so one bad lock never
holds the others back.

Nothing here stores anything: every lock gets a :data:`Result` and the caller records it. A lock
settled on chain whose result is lost (the node killed before recording it) is found again by the
caller's look at the chain: the lock is gone and its ``Claimed`` event names the transaction.

Runs on the payment loop's chain thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from web3.logs import DISCARD

from c2d.chain import errors as E
from c2d.chain.client import EscrowClient, Lock, LockClaim, hex0x, job_id_to_uint
from c2d.chain.errors import ChainError
from host.payments import states

log = structlog.get_logger()
T = TypeVar("T")

EXPIRED_AT_CLAIM = "the lock had expired; the escrow gave it back"
CANCELLED = "the lock had expired; the node cancelled it"


@dataclass(frozen=True)
class Outcome:
    """How one lock was settled, by which transaction."""

    status: str  # states.CLAIMED or states.RELEASED
    tx_hash: str
    amount: int
    note: str = ""


class Gone:
    """The lock was no longer there when looked at again: the caller learns from the chain's events how."""


GONE = Gone()
Result = Outcome | ChainError | Gone


@dataclass(frozen=True)
class LiveLocks:
    """The node's live locks and the chain's clock, read together before deciding what to send."""

    locks: dict[tuple[int, str], Lock]  # (job id, payer lower-case)
    block_time: int

    def get(self, job_id: int, payer: str) -> Lock | None:
        return self.locks.get((job_id_to_uint(job_id), payer.lower()))

    def expired(self, lock: Lock) -> bool:
        """Expired by the latest block: so also by any block that could include a cancellation."""
        return lock.expiry < self.block_time


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Settler:
    """Sends claims and cancellations for the node (the payee), ``batch_size`` locks per transaction."""

    def __init__(
        self,
        escrow: EscrowClient,
        *,
        batch_size: int,
        withdraw: bool,
        on_error: Callable[[ChainError], None] = lambda _exc: None,
    ) -> None:
        self.escrow = escrow
        self.batch_size = max(1, batch_size)
        self.withdraw = withdraw  # claim with claimLock(s)AndWithdraw when something is earned
        self._on_error = on_error  # failures answered here rather than raised (the node's metrics)

    def live_locks(self) -> LiveLocks:
        block_time = self.escrow.chain.block_time()  # first: a lock seen live is live at this time or later
        locks = self.escrow.get_locks(payee=self.escrow.chain.address)
        return LiveLocks({(lock.job_id, lock.payer.lower()): lock for lock in locks}, block_time)

    # -- claims --------------------------------------------------------------------------------

    def claim(self, claims: Sequence[LockClaim]) -> list[Result]:
        """Claims each lock (amount 0: releases it whole); one result per claim, in order."""
        return self._in_batches(claims, self._send_claims, self._claim_alone)

    def _send_claims(self, batch: Sequence[LockClaim]) -> list[Result]:
        """The one place claims leave the node: one transaction for the whole batch."""
        withdraw = self.withdraw and any(claim.amount > 0 for claim in batch)
        if len(batch) == 1:
            (c,) = batch
            send = self.escrow.claim_lock_and_withdraw if withdraw else self.escrow.claim_lock
            receipt = send(c.job_id, c.token, c.payer, c.amount, c.proof)
        else:
            receipt = self.escrow.claim_locks(batch, withdraw=withdraw)
        log.info("escrow claims mined", locks=len(batch), tx=hex0x(receipt["transactionHash"]))
        return self._outcomes(receipt, [(c.job_id, c.payer, c.amount) for c in batch])

    def _claim_alone(self, claim: LockClaim) -> Result:
        if self.escrow.lock_exists(claim.job_id, claim.token, claim.payer) is None:
            return GONE
        return self._send_claims([claim])[0]

    # -- cancellations -------------------------------------------------------------------------

    def cancel(self, locks: Sequence[Lock]) -> list[Result]:
        """Gives each expired lock back to its payer; one result per lock, in order."""
        return self._in_batches(locks, self._send_cancels, self._cancel_alone)

    def _send_cancels(self, batch: Sequence[Lock]) -> list[Result]:
        if len(batch) == 1:
            (lock,) = batch
            receipt = self.escrow.cancel_expired_lock(lock.job_id, lock.token, lock.payer, lock.payee)
        else:
            receipt = self.escrow.cancel_expired_locks(batch)
        log.info("expired escrow locks cancelled", locks=len(batch), tx=hex0x(receipt["transactionHash"]))
        return self._outcomes(receipt, [(lock.job_id, lock.payer, 0) for lock in batch], CANCELLED)

    def _cancel_alone(self, lock: Lock) -> Result:
        if self.escrow.lock_exists(lock.job_id, lock.token, lock.payer) is None:
            return GONE
        return self._send_cancels([lock])[0]

    # -- shared --------------------------------------------------------------------------------

    def _in_batches(
        self,
        items: Sequence[T],
        send: Callable[[Sequence[T]], list[Result]],
        alone: Callable[[T], Result],
    ) -> list[Result]:
        """``send`` per batch; a batch that reverts goes again one item at a time (``alone``).

        A failure that is not a revert (unreachable chain, no receipt in time) ends the run: this
        batch and the ones after it get that error, and the caller retries them later.
        """
        results: list[Result] = []
        for batch in chunks(items, self.batch_size):
            try:
                results.extend(send(batch))
                continue
            except ChainError as exc:
                self._on_error(exc)
                if exc.kind != E.REVERT:
                    return results + [exc] * (len(items) - len(results))
                if len(batch) == 1:  # nothing to split: this one is tried again later
                    results.append(exc)
                    continue
                log.warning(
                    "a batch reverted; sending its locks one by one", locks=len(batch), reason=exc.reason
                )
            results.extend(self._alone(batch, alone))
        return results

    def _alone(self, batch: Sequence[T], alone: Callable[[T], Result]) -> list[Result]:
        results: list[Result] = []
        for item in batch:
            try:
                results.append(alone(item))
            except ChainError as exc:
                self._on_error(exc)
                results.append(exc)
        return results

    def _outcomes(
        self, receipt: Any, locks: list[tuple[int, str, int]], cancelled: str = EXPIRED_AT_CLAIM
    ) -> list[Result]:
        """Each lock's end as the receipt's events tell it: ``Claimed`` (paid, or released with 0)
        or ``Canceled`` (expired: given back whole)."""
        tx = hex0x(receipt["transactionHash"])
        events = self.escrow.contract.events
        claimed = {
            (int(e["args"]["jobId"]), e["args"]["payer"].lower()): int(e["args"]["amount"])
            for e in events.Claimed().process_receipt(receipt, errors=DISCARD)
        }
        canceled = {
            (int(e["args"]["jobId"]), e["args"]["payer"].lower())
            for e in events.Canceled().process_receipt(receipt, errors=DISCARD)
        }
        results: list[Result] = []
        for job_id, payer, asked in locks:
            key = (job_id_to_uint(job_id), payer.lower())
            if key in claimed:
                amount = claimed[key]
                results.append(Outcome(states.CLAIMED if asked > 0 else states.RELEASED, tx, amount))
            elif key in canceled:
                results.append(Outcome(states.RELEASED, tx, 0, cancelled))
            else:  # not this transaction's doing: look at the chain again
                results.append(GONE)
        return results
