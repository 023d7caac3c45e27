"""Finding a node's claim on chain: the escrow's ``Claimed`` events, and whether one matches a proof.

A consumer checks a payment proof off chain with :func:`c2d.billing.check_proof`; this module
closes the loop: the node must also have claimed exactly the records' amount for the records'
lock, from the records' payer, with the records' digest as the proof. ``Claimed`` has ``payee``
and ``payer`` indexed, so the logs are filtered on those by the RPC and matched on the rest here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_typing import HexStr
from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from c2d.billing import ExpectedClaim
from c2d.chain import escrow_abi
from c2d.chain.errors import classify


@dataclass(frozen=True)
class ClaimedEvent:
    """One ``Claimed`` log of the escrow."""

    tx_hash: str
    block_number: int
    escrow: str
    payee: str
    payer: str
    job_id: int
    token: str
    amount: int
    proof: bytes


def _event(log: Any) -> ClaimedEvent:
    args = log["args"]
    tx = log["transactionHash"]
    return ClaimedEvent(
        tx_hash=tx if isinstance(tx, str) else "0x" + bytes(tx).hex(),
        block_number=int(log["blockNumber"]),
        escrow=to_checksum_address(log["address"]),
        payee=to_checksum_address(args["payee"]),
        payer=to_checksum_address(args["payer"]),
        job_id=int(args["jobId"]),
        token=to_checksum_address(args["token"]),
        amount=int(args["amount"]),
        proof=bytes(args["proof"]),
    )


def claimed_events(
    w3: Web3,
    escrow_address: str,
    *,
    payee: str | None = None,
    payer: str | None = None,
    from_block: int = 0,
    tx_hash: str | None = None,
) -> list[ClaimedEvent]:
    """``Claimed`` events of the escrow for ``payee``/``payer`` (None: any).

    With ``tx_hash`` only that transaction's receipt is read (one call, no block range that a
    public RPC might refuse); otherwise the logs from ``from_block`` to the latest block.
    """
    escrow = w3.eth.contract(address=to_checksum_address(escrow_address), abi=escrow_abi())
    try:
        if tx_hash:
            receipt = w3.eth.get_transaction_receipt(HexStr(tx_hash))
            logs = [
                log
                for log in escrow.events.Claimed().process_receipt(receipt, errors=DISCARD)
                if to_checksum_address(log["address"]) == escrow.address
            ]
        else:
            filters = {
                key: to_checksum_address(value)
                for key, value in (("payee", payee), ("payer", payer))
                if value
            }
            logs = escrow.events.Claimed().get_logs(
                argument_filters=filters, from_block=from_block, to_block="latest"
            )
    except Exception as exc:
        raise classify(exc) from exc
    events = [_event(log) for log in logs]
    return [
        e
        for e in events
        if (not payee or e.payee == to_checksum_address(payee))
        and (not payer or e.payer == to_checksum_address(payer))
    ]


def match_claim(expected: ExpectedClaim, events: list[ClaimedEvent]) -> tuple[ClaimedEvent | None, list[str]]:
    """The event that is exactly the expected claim, or None and what is wrong with the near misses."""
    lock = [
        e
        for e in events
        if e.job_id == expected.job_id
        and e.payee == to_checksum_address(expected.payee)
        and e.payer == to_checksum_address(expected.payer)
        and e.escrow == to_checksum_address(expected.escrow)
    ]
    for event in lock:
        if _differences(expected, event) == []:
            return event, []
    if not lock:
        return None, [
            f"no Claimed event at escrow {expected.escrow} for lock {expected.job_id} "
            f"(payee {expected.payee}, payer {expected.payer})"
        ]
    return None, [f"the claim in {e.tx_hash} {d}" for e in lock for d in _differences(expected, e)]


def _differences(expected: ExpectedClaim, event: ClaimedEvent) -> list[str]:
    found = []
    if event.token != to_checksum_address(expected.token):
        found.append(f"is in token {event.token}, the records say {expected.token}")
    if event.amount != expected.amount:
        found.append(f"claims {event.amount}, the records say {expected.amount}")
    if event.proof != expected.proof:
        found.append(f"carries proof 0x{event.proof.hex()}, not the records' digest 0x{expected.proof.hex()}")
    return found


def block_of(w3: Web3, tx_hash: str) -> int | None:
    """The block a transaction was mined in, or None when the chain does not know it."""
    try:
        receipt = w3.eth.get_transaction_receipt(HexStr(tx_hash))
    except Exception as exc:
        err = classify(exc)
        if err.kind in ("unreachable", "rate_limited"):
            raise err from exc
        return None
    return int(receipt["blockNumber"])


__all__ = ["ClaimedEvent", "block_of", "claimed_events", "match_claim"]
