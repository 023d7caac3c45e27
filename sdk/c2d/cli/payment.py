"""What the node accepts as payment, token amounts as people write them, and quotes and locks as text.

Shared by ``init``/``start`` (which chain and token to pay with) and the ``escrow`` commands
(which escrow to deposit into). Nothing here talks to a chain, so web3 is never imported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from c2d.cli.errors import UsageError
from c2d.cli.output import Output
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.units import EXACT, TokenUnits


@dataclass
class Offer:
    """One way to pay the node: a token on a chain, through an escrow, in some environments."""

    chain_id: int
    token: str  # lower-case address
    escrow: str  # lower-case address
    symbol: str = ""
    decimals: int = 0  # as the node advertises it; 0 when it does not say
    environments: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str]:
        return self.chain_id, self.token

    def describe(self) -> str:
        name = f"{self.symbol} ({self.token})" if self.symbol else self.token
        return f"{name} on chain {self.chain_id} via escrow {self.escrow}"


def offers(envs: Iterable[common_pb2.Environment], env_ids: set[str] | None = None) -> list[Offer]:
    """Every (chain, token, escrow) the environments accept; with ``env_ids``, only those that
    every one of those environments accepts (a workflow pays once, in one token)."""
    found: dict[tuple[int, str, str], Offer] = {}
    per_env: dict[str, set[tuple[int, str, str]]] = {}
    for env in envs:
        if env_ids is not None and env.id not in env_ids:
            continue
        for fees in env.fees:
            key = (int(fees.chain_id), fees.token_address.lower(), fees.escrow_address.lower())
            offer = found.setdefault(
                key, Offer(key[0], key[1], key[2], fees.token_symbol, fees.token_decimals)
            )
            offer.environments.append(env.id)
            per_env.setdefault(env.id, set()).add(key)
    if env_ids:
        common = set.intersection(*(per_env.get(env_id, set()) for env_id in env_ids))
        return [offer for key, offer in found.items() if key in common]
    return list(found.values())


def choose(
    candidates: list[Offer], chain_id: int | None, token: str | None, escrow: str | None = None
) -> list[Offer]:
    """The offers that fit what the user named (None: anything)."""
    return [
        offer
        for offer in candidates
        if (not chain_id or offer.chain_id == chain_id)
        and (not token or offer.token == token.lower())
        and (not escrow or offer.escrow == escrow.lower())
    ]


def accepted(candidates: list[Offer]) -> str:
    """The node's offers as one line, for an error that asks the user to choose."""
    return "; ".join(offer.describe() for offer in candidates) or "nothing (no environment has fees)"


def workflow_env_ids(workflow: compute_pb2.Workflow) -> set[str]:
    return {stage.environment_id or workflow.environment_id for stage in workflow.stages} - {""}


# ------------------------------------------------------------ amounts


def parse_amount(text: str, decimals: int, base_units: bool = False) -> int:
    """``1.5`` in token units (x 10^decimals), or a whole number of base units with ``base_units``."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise UsageError(f"amount {text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise UsageError(f"amount {text!r} must be a non-negative number")
    scaled = value if base_units else EXACT.scaleb(value, decimals)
    if scaled != scaled.to_integral_value():
        unit = "base units are whole" if base_units else f"the token has {decimals} decimals"
        raise UsageError(f"amount {text!r} is finer than the token allows: {unit}")
    amount = int(scaled)
    if amount >= 2**256:
        raise UsageError(f"amount {text!r} is too large")
    return amount


# ------------------------------------------------------------ quotes and locks


def print_quote(out: Output, quote: compute_pb2.EscrowQuote, units: TokenUnits) -> None:
    """The price lines, the total and what the escrow must allow (as ``c2d init`` shows them)."""
    rows = [
        [
            line.stage_index,
            line.resource_id,
            f"{line.amount:g}",
            line.minutes,
            units.show(line.price_per_unit_minute),
            units.show(line.cost),
        ]
        for line in quote.breakdown
    ]
    out.table(("stage", "resource", "amount", "minutes", "price/unit/min", "cost"), rows)
    out.line(f"total: {units.show(quote.amount)} (token {quote.token_address} on chain {quote.chain_id})")
    out.line(f"escrow: {quote.escrow_address}, payee {quote.payee}, lock >= {quote.min_lock_seconds}s")


def payment_status(state: compute_pb2.PaymentState) -> str:
    return (
        compute_pb2.PaymentStatus.Name(state.status).removeprefix("PAYMENT_STATUS_").lower().replace("_", " ")
    )


def print_lock(out: Output, state: compute_pb2.PaymentState, units: TokenUnits) -> None:
    """The escrow lock a paid start made (what the consumer's funds are now held by)."""
    out.line(
        f"payment: {payment_status(state)}, locked {units.show(state.locked_amount or 0)} "
        f"(token {state.token_address})"
    )
    if state.lock_id:
        out.line(f"lock id: {state.lock_id}")
    if state.lock_transaction:
        out.line(f"lock transaction: {state.lock_transaction}")


def when_unix(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def jsonable(value: Any) -> Any:
    """Big integers as decimal strings (JSON readers lose precision above 2^53)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
