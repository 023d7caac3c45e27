"""Whether a consumer can pay for a quote, and what exactly is missing when not.

Checked before anything is locked or stored, by reading the escrow. The lock
itself is checked again by the contract; :func:`lock_refusal` words its
revert reasons the same way for the rare race between the two.
"""

from __future__ import annotations

from c2d.chain.client import EscrowClient
from c2d.compute.v1 import compute_pb2
from c2d.units import TokenUnits
from host.errors import RequestError, precondition

HOW_TO_DEPOSIT = "c2d escrow deposit"
HOW_TO_AUTHORIZE = "c2d escrow authorize"


def payment_problem(escrow: EscrowClient, quote: compute_pb2.EscrowQuote, payer: str) -> str | None:
    """Why ``payer`` cannot have ``quote`` locked now, or None. Reads the chain (blocking)."""
    amount, seconds = int(quote.amount), int(quote.min_lock_seconds)
    token, payee = quote.token_address, quote.payee
    funds = escrow.get_user_funds(payer, token)
    if funds.available < amount:
        units = token_units(escrow, token)
        return (
            f"your escrow balance in token {token} is {units.both(funds.available)} available "
            f"({units.show(funds.locked)} locked); this workflow needs {units.both(amount)}: "
            f"deposit at least {units.both(amount - funds.available)} more ({HOW_TO_DEPOSIT})"
        )
    grant = escrow.get_authorization(token, payer, payee)
    if grant is None:
        return (
            f"you have not authorized node {payee} to lock your funds in token {token} "
            f"({HOW_TO_AUTHORIZE} --payee {payee}); this workflow needs a lock of {amount} for {seconds}s"
        )
    room = grant.max_locked_amount - grant.current_locked_amount
    if room < amount:
        units = token_units(escrow, token)
        return (
            f"your authorization of node {payee} allows {units.both(grant.max_locked_amount)} locked at once "
            f"and {units.show(grant.current_locked_amount)} is locked already; this workflow needs "
            f"{units.both(amount)} more (raise --max-amount with {HOW_TO_AUTHORIZE})"
        )
    if grant.max_lock_seconds < seconds:
        return (
            f"your authorization of node {payee} allows locks of at most {grant.max_lock_seconds}s; "
            f"this workflow needs {seconds}s (its max durations, queue time and claim margin; "
            f"raise --max-seconds with {HOW_TO_AUTHORIZE})"
        )
    if grant.current_locks >= grant.max_lock_counts:
        return (
            f"your authorization of node {payee} allows {grant.max_lock_counts} locks at once and all are in "
            f"use (raise --max-locks with {HOW_TO_AUTHORIZE}, or wait for a workflow to end)"
        )
    return None


def token_units(escrow: EscrowClient, token: str) -> TokenUnits:
    """How to word ``token``'s amounts: its ERC-20 decimals and symbol, read when a refusal needs
    them (a token without ``decimals()`` is worded in base units)."""
    return TokenUnits(escrow.token_decimals(token), escrow.token_symbol(token) or "")


_REVERTS = {
    "Payer does not have enough funds": "your escrow balance is too low for this workflow ({how})",
    "No auth found": "you have not authorized this node to lock your funds ({how})",
    "Expiry too high": "your authorization does not allow locks this long ({how})",
    "Exceeds maxLockedAmount": "your authorization does not allow this much to be locked ({how})",
    "Exceeds maxLockCounts": "your authorization allows no more locks at once ({how})",
    # Ocean's Escrow (its spelling): the payer named is the node itself
    "Payeer cannot be payee": "the node cannot be paid from its own escrow funds: pay with another account",
}


def lock_refusal(reason: str | None) -> RequestError:
    """The escrow refused the lock: say why in the consumer's terms. Nothing was locked."""
    for revert, message in _REVERTS.items():
        if reason and revert in reason:
            how = HOW_TO_DEPOSIT if "balance" in message else HOW_TO_AUTHORIZE
            return precondition("the escrow refused the lock: " + message.format(how=how))
    return precondition(f"the escrow refused the lock: {reason or 'reverted without a reason'}")
