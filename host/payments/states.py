"""The payment states stored in ``Payment.status``, and what consumers see of them.

locking -> locked -> claiming -> claimed, with two other ends: lock_failed (nothing was
locked, or a lock the node could not use was given back) and released (the lock went back
to the payer whole: nothing ran, or it expired before the claim).
"""

from __future__ import annotations

from c2d.compute.v1 import compute_pb2
from host.store.models import Payment

LOCKING = "locking"
LOCKED = "locked"
LOCK_FAILED = "lock_failed"
CLAIMING = "claiming"
CLAIMED = "claimed"
RELEASED = "released"

# Rows the payment loop still has work on.
OPEN = (LOCKING, LOCKED, CLAIMING)
# Ends where the node holds no lock any more.
SETTLED = (LOCK_FAILED, CLAIMED, RELEASED)

_WIRE = {
    LOCKING: compute_pb2.PAYMENT_STATUS_LOCKING,
    LOCKED: compute_pb2.PAYMENT_STATUS_LOCKED,
    LOCK_FAILED: compute_pb2.PAYMENT_STATUS_LOCK_FAILED,
    CLAIMING: compute_pb2.PAYMENT_STATUS_CLAIMING,
    CLAIMED: compute_pb2.PAYMENT_STATUS_CLAIMED,
    RELEASED: compute_pb2.PAYMENT_STATUS_RELEASED,
}

FREE = compute_pb2.PaymentState(status=compute_pb2.PAYMENT_STATUS_FREE)


def payment_state(row: Payment | None) -> compute_pb2.PaymentState:
    """The consumer's view of a payment (a free workflow has no row)."""
    if row is None:
        return FREE
    return compute_pb2.PaymentState(
        status=_WIRE[row.status],
        chain_id=row.chain_id,
        token_address=row.token,
        escrow_address=row.escrow,
        locked_amount=row.amount if row.status != LOCK_FAILED else "0",
        claimed_amount=row.claim_amount if row.status in (CLAIMED, RELEASED) else "",
        lock_id=row.lock_id,
        lock_transaction=row.lock_tx,
        claim_transaction=row.claim_tx,
        proof_digest=row.digest,
    )
