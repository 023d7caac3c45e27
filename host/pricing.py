"""What a workflow costs: the sum over stages of granted amount * price per unit-minute * minutes.

Prices are per resource unit per minute in the token's smallest unit; a
stage is priced on its maximum duration (what the escrow must lock), rounded
up to whole minutes, and every cost is rounded up to a whole base unit so the
node never locks less than it may claim.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

from c2d.billing import line_cost
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.quoting import quoted
from host.errors import invalid, precondition
from host.orchestrator.validation import StagePlan

# Time the escrow lock must outlive the work: claims are made after every stage has ended.
CLAIM_MARGIN_SECONDS = 3600


def chain_fees(env: common_pb2.Environment, payment: compute_pb2.Payment) -> common_pb2.ChainFees:
    """The environment's fees in the consumer's chain and token, or a refusal listing what it accepts."""
    for fees in env.fees:
        if fees.chain_id == payment.chain_id and fees.token_address.lower() == payment.token_address.lower():
            return fees
    accepted = (
        ", ".join(f"{f.token_symbol or f.token_address} on chain {f.chain_id}" for f in env.fees) or "nothing"
    )
    token = quoted(payment.token_address) if payment.token_address else "(no token)"
    raise precondition(
        f"environment {env.id!r} takes no payment in {token} on chain "
        f"{payment.chain_id}; it accepts {accepted}"
    )


def price(value: str, where: str) -> Decimal:
    """A price as a Decimal: finite first (a Decimal NaN raises on comparison), then not negative."""
    try:
        amount = Decimal(value or "0")
    except InvalidOperation:
        raise invalid(f"{where}: price {quoted(value)} is not a number") from None
    if not amount.is_finite() or (amount.is_signed() and amount != 0):
        raise invalid(f"{where}: price {quoted(value)} must be a non-negative number")
    return amount


def _amount(value: float, where: str) -> float:
    """A granted amount to price: finite and not negative, asked positively so that a NaN fails."""
    if not (math.isfinite(value) and value >= 0):
        raise invalid(f"{where}: amount {value} is not a finite non-negative number")
    return value


def quote_stage(plan: StagePlan, fees: common_pb2.ChainFees) -> list[compute_pb2.PriceLine]:
    minutes = max(1, math.ceil(plan.max_duration_seconds / 60))
    # validation keeps max_duration at or above the minimum, so the floor never passes the cap
    min_minutes = min(math.ceil(plan.environment.min_job_duration_seconds / 60), minutes)
    prices = {p.resource_id: p.price_per_unit_minute for p in fees.prices}
    lines = []
    for grant in plan.resources:
        unit_price = price(prices.get(grant["id"], "0"), f"fees of {plan.environment.id!r} for {grant['id']}")
        amount = _amount(grant["amount"], f"stage {plan.index} {grant['id']}")
        cost = line_cost(amount, str(unit_price), minutes)
        lines.append(
            compute_pb2.PriceLine(
                stage_index=plan.index,
                resource_id=grant["id"],
                amount=grant["amount"],
                minutes=minutes,
                price_per_unit_minute=str(unit_price),
                cost=str(cost),
                min_minutes=min_minutes,
            )
        )
    return lines


def quote(
    plans: list[StagePlan],
    payment: compute_pb2.Payment,
    payee: str,
    margin_seconds: int = CLAIM_MARGIN_SECONDS,
) -> compute_pb2.EscrowQuote:
    """The amount to lock for the whole workflow, with one price line per stage and resource.

    The lock must outlive the run by ``margin_seconds``: the time stages may queue plus the
    time to claim.
    """
    if not payment.chain_id or not payment.token_address:
        raise invalid("payment needs chain_id and token_address")
    breakdown: list[compute_pb2.PriceLine] = []
    escrow = ""
    for plan in plans:
        fees = chain_fees(plan.environment, payment)
        escrow = escrow or fees.escrow_address
        breakdown += quote_stage(plan, fees)
    total = sum((Decimal(line.cost) for line in breakdown), Decimal(0))
    return compute_pb2.EscrowQuote(
        chain_id=payment.chain_id,
        escrow_address=escrow,
        payee=payee,
        token_address=payment.token_address,
        amount=str(total),
        min_lock_seconds=sum(p.max_duration_seconds for p in plans) + margin_seconds,
        breakdown=breakdown,
    )
