"""Paying for workflows through the escrow: lock before anything runs, claim once everything has ended.

Every step is written down before it is sent, and every send is preceded by
a look at the chain, so a node killed at any moment settles each lock exactly
once on restart:

- **lock**: a ``locking`` row is stored, then the lock is sent and its receipt
  awaited; only then are the workflow and its stages stored, in the same
  transaction that marks the row ``locked``. A refused lock stores nothing
  billable. A row left ``locking`` (node killed, chain silent) is resolved by the
  loop: a lock that exists is released whole, none means ``lock_failed``.
- **claim**: when the workflow has ended, its records (:mod:`host.payments.records`)
  are signed and stored with status ``claiming`` before the claim is sent. A
  claim is only sent while the lock still exists; a lock that is gone was
  claimed (the ``Claimed`` event says by which transaction) or cancelled.
  The escrow deletes a lock when it is claimed, so a claim can never be paid twice.
  The locks ready in one pass are claimed together, ``claim_batch_size`` per
  transaction (:mod:`host.payments.settle`).
- **expiry**: a lock the chain says has expired can no longer be claimed; the node
  cancels it (``cancelExpiredLocks``) and its row ends ``released``.
- **unreachable chain**: the step is retried with backoff; a workflow still running
  close to its lock's expiry is stopped so that what ran can be claimed in time.
- **sweep**: live locks naming this node that no open payment owns are released.

Chain calls block, so they run on one worker thread (which also keeps an
in-process py-evm chain single-threaded); the database is touched only on the database
thread (:mod:`host.store.payments` through :func:`host.store.runner.run`), one unit per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from eth_utils import to_checksum_address
from google.protobuf import json_format

from c2d import billing
from c2d.chain import errors as E
from c2d.chain.client import EscrowClient, Lock, LockClaim, hex0x, job_id_to_uint
from c2d.chain.errors import ChainError
from c2d.chain.ocean import detect_escrow_kind
from c2d.compute.v1 import compute_pb2
from host import pricing
from host.errors import precondition, unavailable
from host.metrics import NodeMetrics
from host.orchestrator.validation import StagePlan
from host.payments import states
from host.payments.gate import lock_refusal, payment_problem
from host.payments.records import build_records
from host.payments.settle import GONE, LiveLocks, Outcome, Result, Settler
from host.store import payments as rows
from host.store import runner
from host.store.models import Payment

log = structlog.get_logger()
T = TypeVar("T")

POLL_SECONDS = 1.0
ESCROW_NAMES = {"c2d": "this project's Escrow (contracts/Escrow.sol)", "ocean": "Ocean Protocol's Escrow"}


@dataclass(frozen=True)
class PaymentSettings:
    """The ``[chain]`` settings the payment loop needs (see host.config)."""

    chain_id: int
    tokens: tuple[str, ...]
    claim_margin_seconds: int
    retry_max_seconds: float
    withdraw_earnings: bool
    sweep_interval_seconds: float
    receipt_timeout_seconds: float
    claim_batch_size: int = 20  # locks claimed (or cancelled) per transaction; 1: one each
    escrow_kind: str = "c2d"  # which escrow contract it is ([chain] escrow_kind), checked on chain


def check_escrow_kind(escrow: EscrowClient, configured: str) -> None:
    """Raises CHAIN_MISMATCH unless the contract at the escrow's address is of the ``configured``
    kind: read with the other contract's calls, its locks would be misread. Reads the chain."""
    kind = detect_escrow_kind(escrow.chain, escrow.address)
    if kind != configured:
        raise ChainError(
            E.CHAIN_MISMATCH,
            f"the escrow at {escrow.address} is {ESCROW_NAMES[kind]}, the node's config says "
            f'escrow_kind = "{configured}" (set [chain] escrow_kind = "{kind}")',
            retryable=False,
        )


def _settled_text(outcome: Outcome, note: str) -> str:
    """How a payment settled, for its stages' histories (amounts in the token's base units)."""
    if outcome.status == states.CLAIMED:
        text = f"payment settled: {outcome.amount} claimed from the escrow lock, the rest went back"
    else:
        text = "payment settled: nothing claimed, the escrow lock went back to the payer"
    return f"{text} ({note})" if note else text


class Payments:
    """The node's escrow payments: one lock per paid workflow, settled by the loop in :meth:`run`."""

    def __init__(
        self,
        escrow: EscrowClient,
        settings: PaymentSettings,
        *,
        signing_key: str,
        stop_workflow: Callable[[str, str], Awaitable[Any]],
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.escrow = escrow
        self.metrics = metrics or NodeMetrics()
        self._signing_key = signing_key
        self.settings = settings
        self.node = escrow.chain.address.lower()
        self._stop_workflow = stop_workflow
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")
        self._settler = Settler(
            escrow,
            batch_size=settings.claim_batch_size,
            withdraw=settings.withdraw_earnings,
            on_error=lambda exc: self.metrics.chain_error(exc.kind),
        )
        self._locking: set[str] = set()  # workflows whose StartCompute is locking right now
        # Workflows whose StartCompute ended since the current pass read its rows: their rows as read
        # may still say ``locking`` while the start has made them ``locked``.
        self._started_in_pass: set[str] = set()
        self._stopping: set[str] = set()
        self._wake = asyncio.Event()
        self._next_sweep = 0.0
        self._chain_checked = False

    async def _chain(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the chain thread; every chain call of the node goes through here (its failures counted)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except ChainError as exc:
            self.metrics.chain_error(exc.kind)
            raise

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- quoting and locking -----------------------------------------------------

    def quote(self, plans: list[StagePlan], payment: compute_pb2.Payment) -> compute_pb2.EscrowQuote:
        """The workflow's price in the consumer's token, if this node takes it on this chain."""
        if payment.chain_id and payment.chain_id != self.settings.chain_id:
            raise precondition(
                f"this node settles payments on chain {self.settings.chain_id}, not {payment.chain_id}"
            )
        token = payment.token_address.lower()
        if self.settings.tokens and token not in self.settings.tokens:
            raise precondition(
                f"this node takes no payment in token {payment.token_address}; it takes "
                + ", ".join(self.settings.tokens)
            )
        # Each stage may wait its queue limit before it runs: the lock outlives all of them.
        margin = sum(plan.max_queue_seconds for plan in plans) + self.settings.claim_margin_seconds
        quote = pricing.quote(plans, payment, self.node, margin)
        quote.escrow_address = self.escrow.address  # the one the node locks in, whatever the fees say
        return quote

    async def start(
        self,
        owner: str,
        quote: compute_pb2.EscrowQuote,
        submit: Callable[[str, Callable[[], object]], Awaitable[str]],
        workflow_id: str,
    ) -> Payment:
        """Checks the payer, locks ``quote`` and only then stores the workflow (``submit``)."""
        if int(quote.amount) <= 0:
            raise precondition("this workflow costs nothing here: start it with FreeStartCompute")
        problem = await self._guarded(lambda: payment_problem(self.escrow, quote, owner))
        if problem:
            raise precondition(problem)
        row = await runner.run(self._store_intent, owner, quote, workflow_id)
        bound = log.bind(workflow_id=workflow_id, payer=owner)
        self._locking.add(workflow_id)
        try:
            lock = await self._lock(row, bound)
            # The workflow and its LOCKED payment in one transaction (on the database thread).
            await submit(workflow_id, lambda: self._update(row, status=states.LOCKED, **lock))
        finally:
            self._locking.discard(workflow_id)
            self._started_in_pass.add(workflow_id)
        self.metrics.payment("locked")
        bound.info("escrow locked", amount=row.amount, tx=lock["lock_tx"])
        return row  # as stored: the unit that stored the workflow updated it (``_update``)

    async def _guarded(self, fn: Callable[[], T]) -> T:
        """A chain read for a consumer's request: an unreachable chain is UNAVAILABLE, not INTERNAL."""
        try:
            return await self._chain(self._checked, fn)
        except ChainError as exc:
            if exc.kind == E.CHAIN_MISMATCH:  # the operator's to fix: trying again will not help
                raise unavailable(f"paid compute is off on this node: {exc.message}") from None
            raise unavailable(
                f"the node cannot reach its chain right now ({exc.message}); try again"
            ) from None

    def _store_intent(self, owner: str, quote: compute_pb2.EscrowQuote, workflow_id: str) -> Payment:
        """On the database thread: the ``locking`` row, before the lock is sent."""
        now = time.time()
        return rows.create(
            workflow_id=workflow_id,
            status=states.LOCKING,
            chain_id=quote.chain_id,
            escrow=self.escrow.address,
            token=quote.token_address.lower(),
            payer=owner,
            payee=self.node,
            lock_id=str(job_id_to_uint(workflow_id)),
            amount=quote.amount,
            quote=json_format.MessageToDict(
                quote, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            ),
            created_at=now,
            updated_at=now,
        )

    async def _lock(self, row: Payment, bound: Any) -> dict[str, Any]:
        seconds = int(row.quote["min_lock_seconds"])
        try:
            return await self._chain(
                self._lock_sync, row.lock_id, row.token, row.payer, int(row.amount), seconds
            )
        except ChainError as exc:
            if exc.kind == E.REVERT:  # refused: nothing is locked
                self.metrics.payment("lock_failed")
                await self._save(row, status=states.LOCK_FAILED, last_error=exc.message)
                bound.info("escrow refused the lock", reason=exc.reason)
                raise lock_refusal(exc.reason) from None
            if exc.kind == E.INSUFFICIENT_FUNDS:  # the chain would not take the node's transaction
                self.metrics.payment("lock_failed")
                await self._save(row, status=states.LOCK_FAILED, last_error=exc.message)
                bound.error("the node's account cannot pay gas: fund it", node=self.node, error=exc.message)
                raise unavailable(
                    "the node cannot pay the gas for your escrow lock right now (its operator must fund "
                    "its account); nothing was locked"
                ) from None
            # Sent or not, we cannot tell: the loop looks for the lock and gives it back.
            await self._save(row, last_error=exc.message)
            bound.warning("escrow lock unconfirmed", error=exc.message)
            raise unavailable(
                "the chain did not confirm the escrow lock; nothing will run, and a lock made anyway "
                f"is released to you ({exc.message})"
            ) from None

    def _lock_sync(self, lock_id: str, token: str, payer: str, amount: int, seconds: int) -> dict[str, Any]:
        sent = time.time()
        receipt = self.escrow.create_lock(int(lock_id), token, payer, amount, seconds)
        return {
            "lock_tx": hex0x(receipt["transactionHash"]),
            "lock_block": int(receipt["blockNumber"]),
            # By this node's clock, from before the lock's block: never later than the chain's expiry.
            "expiry": sent + seconds,
        }

    def _checked(self, fn: Callable[[], T]) -> T:
        """``fn`` on the chain thread, once the RPC is known to serve the configured chain."""
        self._check_chain()
        return fn()

    def _check_chain(self) -> None:
        if self._chain_checked:
            return
        actual = self.escrow.chain.chain_id
        if actual != self.settings.chain_id:
            raise ChainError(
                E.CHAIN_MISMATCH,
                f"the RPC serves chain {actual}, the node's config says {self.settings.chain_id}",
                retryable=False,
            )
        check_escrow_kind(self.escrow, self.settings.escrow_kind)
        self._chain_checked = True

    @staticmethod
    def _update(row: Payment, **fields: Any) -> None:
        """On the database thread (a unit, or inside one): writes ``fields`` and keeps ``row`` current."""
        fields["updated_at"] = time.time()
        rows.update(row.workflow_id, fields)
        for name, value in fields.items():
            setattr(row, name, value)

    @staticmethod
    def _record_settled(row: Payment, fields: dict[str, Any], message: str) -> None:
        """On the database thread: the settled row and its stages' closing history, in one transaction."""
        now = time.time()
        rows.settle(row.workflow_id, {**fields, "updated_at": now}, message, now)
        for name, value in fields.items():
            setattr(row, name, value)

    async def _save(self, row: Payment, **fields: Any) -> None:
        """:meth:`_update` as a unit of its own."""
        await runner.run(self._update, row, **fields)

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Settles payments until cancelled: on every wake-up, and at least once a second."""
        await self._warn_without_gas()
        await self._warn_misconfigured()
        while True:
            try:
                await self._pass()
            except Exception:
                log.exception("payment pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def _warn_without_gas(self) -> None:
        """Every lock and claim costs the node gas: an empty account is the operator's to fix."""
        try:
            balance = await self._chain(self.escrow.chain.eth_balance)
        except ChainError as exc:
            log.warning("could not read the node's gas balance", error=exc.message)
            return
        if balance == 0:
            log.warning(
                "the node's account has no gas money: paid starts will fail until it is funded",
                node=self.node,
            )

    async def _warn_misconfigured(self) -> None:
        """A chain or escrow other than the config names is the operator's to fix: said at start."""
        try:
            await self._chain(self._check_chain)
        except ChainError as exc:
            if exc.kind == E.CHAIN_MISMATCH:
                log.error("paid compute is off until the chain settings are fixed", error=exc.message)

    async def _pass(self) -> None:
        now = time.time()
        self._started_in_pass = set()
        ready = []
        for row in await runner.run(rows.due, states.OPEN, now):
            if row.workflow_id in self._locking:
                continue
            if row.status == states.LOCKED and not await self._ready_to_claim(row, now):
                continue
            ready.append(row)
        if ready:
            await self._settle(ready, now)
        if now >= self._next_sweep:
            try:
                await self._sweep()
                self._next_sweep = now + self.settings.sweep_interval_seconds
            except ChainError as exc:
                log.warning("could not look for abandoned escrow locks", error=exc.message)
                self._next_sweep = now + self.settings.retry_max_seconds

    async def _retry_later(self, row: Payment, exc: ChainError) -> None:
        delay = min(self.settings.retry_max_seconds, 0.5 * 2 ** min(row.attempts, 10))
        await self._save(
            row, attempts=row.attempts + 1, next_attempt_at=time.time() + delay, last_error=exc.message
        )
        log.warning(
            "payment step failed; retrying",
            workflow_id=row.workflow_id,
            status=row.status,
            error=exc.message,
            retry_in=round(delay, 1),
        )

    async def _ready_to_claim(self, row: Payment, now: float) -> bool:
        """Once the workflow has ended: its records signed and stored, the row ``claiming``."""
        workflow = await runner.run(rows.workflow_state, row.workflow_id)
        if workflow.running:
            await self._stop_before_expiry(row, now)
            return False
        data = build_records(row, workflow.stages, now)
        records = billing.canonical(data)
        await self._save(
            row,
            status=states.CLAIMING,
            records=records,
            signature=billing.sign_records(self._signing_key, records),
            digest=billing.digest(records),
            claim_amount=data["claimed_amount"],
            attempts=0,
        )
        log.info("claiming", workflow_id=row.workflow_id, amount=data["claimed_amount"], locked=row.amount)
        return True

    async def _stop_before_expiry(self, row: Payment, now: float) -> None:
        deadline = (row.expiry or float("inf")) - self.settings.claim_margin_seconds / 2
        if now < deadline or row.workflow_id in self._stopping:
            return
        self._stopping.add(row.workflow_id)
        log.warning("stopping a workflow whose escrow lock expires soon", workflow_id=row.workflow_id)
        await self._stop_workflow(row.workflow_id, "its escrow lock expires soon")

    # -- settling: one look at the chain, then claims and cancellations in batches ---------------

    async def _settle(self, ready: list[Payment], now: float) -> None:
        """Settles the ``claiming`` rows and the cut-off ``locking`` ones, as the chain finds their locks.

        Lock gone: claimed before (a restart) or cancelled; expired: cancelled now; live: claimed
        (a cut-off start's lock: released with a zero claim).
        """
        try:
            live: LiveLocks = await self._chain(self._checked, self._settler.live_locks)
        except ChainError as exc:
            for row in ready:
                await self._retry_later(row, exc)
            return
        gone: list[Payment] = []
        expired: list[tuple[Payment, Lock]] = []
        claims: list[tuple[Payment, LockClaim]] = []
        for row in ready:
            if row.status == states.LOCKING and not self._cut_off(row):
                continue  # its start is under way or has just stored it: not cut off
            lock = live.get(int(row.lock_id), row.payer)
            if lock is None:
                if row.status == states.LOCKING:
                    await self._lock_not_found(row, now)
                else:
                    gone.append(row)
            elif live.expired(lock):
                expired.append((row, lock))
            else:
                claims.append((row, self._claim_of(row)))
        if expired:
            cancelled = await self._chain(self._settler.cancel, [lock for _, lock in expired])
            for (row, _), result in zip(expired, cancelled, strict=True):
                await self._conclude(row, result)
        if claims:
            # Every claim of the node leaves through here (the rows are ``claiming`` already).
            claimed = await self._chain(self._settler.claim, [claim for _, claim in claims])
            for (row, _), result in zip(claims, claimed, strict=True):
                await self._conclude(row, result)
        for row in gone:
            await self._conclude(row, GONE)

    def _cut_off(self, row: Payment) -> bool:
        """Whether a ``locking`` row (as this pass read it) lost its start: no StartCompute is locking
        it, and none has finished since the pass read it (then the row is ``locked`` already, and
        releasing its lock would leave a running workflow unpaid)."""
        return row.workflow_id not in self._locking and row.workflow_id not in self._started_in_pass

    @staticmethod
    def _claim_of(row: Payment) -> LockClaim:
        """What settling the row's lock claims: its records' amount and digest, or nothing for a cut-off start."""
        if row.status == states.LOCKING:
            return LockClaim(int(row.lock_id), row.token, row.payer, 0, b"")
        proof = bytes.fromhex(row.digest.removeprefix("0x"))
        return LockClaim(int(row.lock_id), row.token, row.payer, int(row.claim_amount or 0), proof)

    async def _lock_not_found(self, row: Payment, now: float) -> None:
        """A ``locking`` row without a lock: never made (or not mined yet: look again later)."""
        if now - row.created_at > self.settings.receipt_timeout_seconds:
            self.metrics.payment("lock_failed")
            await self._save(row, status=states.LOCK_FAILED)
            log.info("escrow lock never made", workflow_id=row.workflow_id)
        else:
            await self._save(row, next_attempt_at=now + POLL_SECONDS)

    async def _conclude(self, row: Payment, result: Result) -> None:
        """Records what became of the row's lock; a failure is tried again later, a lock gone is looked up."""
        if isinstance(result, ChainError):
            await self._retry_later(row, result)
            return
        if not isinstance(result, Outcome):
            try:
                result = await self._chain(self._settled_elsewhere, row)
            except ChainError as exc:
                await self._retry_later(row, exc)
                return
        note = "its start was cut off before the workflow was stored" if row.status == states.LOCKING else ""
        await self._finish(row, result, note)

    async def _finish(self, row: Payment, outcome: Outcome, note: str = "") -> None:
        note = " and ".join(part for part in (note, outcome.note) if part)
        self.metrics.payment(outcome.status)
        fields = {
            "status": outcome.status,
            "claim_tx": outcome.tx_hash,
            "claim_amount": str(outcome.amount),
            "last_error": note,
        }
        await runner.run(self._record_settled, row, fields, _settled_text(outcome, note))
        log.info(
            "escrow settled",
            workflow_id=row.workflow_id,
            status=outcome.status,
            claimed=outcome.amount,
            locked=row.amount,
            tx=outcome.tx_hash,
            note=note,
        )

    # -- on the chain thread -----------------------------------------------------

    def _settled_elsewhere(self, row: Payment) -> Outcome:
        event = self._claimed_event(row)
        if event is not None:
            amount = int(event["args"]["amount"])
            status = states.CLAIMED if amount > 0 else states.RELEASED
            return Outcome(status, hex0x(event["transactionHash"]), amount, "claimed before a restart")
        return Outcome(states.RELEASED, "", 0, "the lock was gone: expired and cancelled")

    def _claimed_event(self, row: Payment) -> Any:
        events = self.escrow.contract.events.Claimed.get_logs(
            from_block=row.lock_block or 0,
            argument_filters={"payee": self.escrow.chain.address, "payer": to_checksum_address(row.payer)},
        )
        return next((e for e in events if int(e["args"]["jobId"]) == int(row.lock_id)), None)

    # -- abandoned locks -----------------------------------------------------------

    async def _sweep(self) -> None:
        """Gives back live locks naming this node that no open payment owns (e.g. a lost database):
        expired ones cancelled, the others released with a zero claim, in batches."""
        live = await self._chain(self._checked, self._settler.live_locks)
        locks = list(live.locks.values())
        owned = await runner.run(rows.statuses_by_lock, [str(lock.job_id) for lock in locks])
        abandoned = [lock for lock in locks if _abandoned(owned.get(str(lock.job_id)))]
        for lock in abandoned:
            log.warning(
                "releasing an escrow lock no workflow owns", lock_id=str(lock.job_id), payer=lock.payer
            )
        expired = [lock for lock in abandoned if live.expired(lock)]
        releases = [
            LockClaim(lk.job_id, lk.token, lk.payer, 0, b"") for lk in abandoned if not live.expired(lk)
        ]
        results = await self._chain(self._settler.cancel, expired) if expired else []
        results += await self._chain(self._settler.claim, releases) if releases else []
        for result in results:
            if isinstance(result, Outcome):
                self.metrics.payment(result.status)
            elif isinstance(result, ChainError):
                log.warning("could not give back an abandoned escrow lock", error=result.message)


def _abandoned(status: str | None) -> bool:
    """A lock no payment row owns, or whose row has ended: no workflow will ever claim it."""
    return status is None or status in states.SETTLED
