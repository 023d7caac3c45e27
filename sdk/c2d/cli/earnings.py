"""``c2d admin earnings|withdraw``: what the node has earned in its escrow, and moving it to its wallet.

A claim credits the node (the payee) in the escrow. With ``withdraw_earnings = true`` (the node's
default) every claim also moves the node's funds to its wallet; with ``false`` they stay in the
escrow until the operator withdraws them here. Only the payee can withdraw its funds, so these
commands sign with the node key (``--key-file .c2d/node_key``), on the chain the node settles on.

The escrow and chain come from the node's environments (their fees) unless named with
``--escrow``/``--chain-id``; the RPC from ``--rpc`` or ``$C2D_RPC_URL``. Amounts are shown in
token units (``c2d.units.TokenUnits``): the token's ``decimals()`` on chain, else what the node's
fees say, else base units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from c2d.chain import errors as E
from c2d.chain.errors import ChainError
from c2d.cli.context import Context
from c2d.cli.errors import ChainFailure, UsageError
from c2d.cli.escrow import (
    RPC_ENV,
    chain_classes,
    chain_command,
    checked_address,
    connect_rpc,
    node_environments,
    rpc_url,
    tx_hash,
)
from c2d.cli.payment import Offer, accepted, choose, offers, parse_amount
from c2d.client import C2DError
from c2d.common.v1 import common_pb2
from c2d.units import TokenUnits

if TYPE_CHECKING:
    from c2d.chain.client import EscrowClient

NODE_KEY_HINT = "sign with the node key: --key-file <data_dir>/node_key"


@dataclass
class Token:
    """One token the node earns or may earn in, and how to show its amounts."""

    address: str  # checksummed
    units: TokenUnits

    @property
    def symbol(self) -> str:
        return self.units.symbol


@dataclass
class NodeEscrow:
    """The node's escrow on its chain, reached with the node key."""

    escrow: EscrowClient
    chain_id: int
    payee: str  # the node's address (the key's, checked against what the node advertises)
    advertised: dict[str, Offer] = field(default_factory=dict)  # token lower -> the node's fees

    def token(self, address: str, base_units: bool) -> Token:
        """``address`` with its decimals and symbol: the token's own, else the node's fees'."""
        offer = self.advertised.get(address.lower())
        decimals = self.escrow.token_decimals(address)
        if decimals is None and offer is not None and offer.decimals:
            decimals = offer.decimals
        symbol = self.escrow.token_symbol(address) or (offer.symbol if offer else "")
        return Token(
            self.escrow.chain.w3.to_checksum_address(address), TokenUnits(decimals, symbol, base_units)
        )

    def tokens(self, only: str | None, base_units: bool) -> list[Token]:
        """``only``, or every token the node holds funds in or takes: what ``earnings`` lists."""
        if only:
            return [self.token(only, base_units)]
        held = [t.lower() for t in self.escrow.get_user_tokens(self.payee)]
        names = list(dict.fromkeys([*held, *sorted(self.advertised)]))
        return [self.token(name, base_units) for name in names]

    def header(self) -> dict[str, Any]:
        return {"account": self.payee, "chain_id": self.chain_id, "escrow": self.escrow.address}


def open_node_escrow(ctx: Context) -> NodeEscrow:
    """The node's escrow, signing as the key file's account, which must be the node's."""
    args = ctx.args
    rpc = rpc_url(ctx)
    if not rpc:
        raise UsageError(f"no chain RPC: pass --rpc URL or set {RPC_ENV}")
    key = ctx.private_key()
    escrow_address = checked_address(args.escrow, "--escrow")
    checked_address(args.token, "--token")
    # Named in full, the escrow needs no node; otherwise the node's fees name it.
    envs = None if escrow_address and args.chain_id else node_environments(ctx)
    fitting = choose(offers(envs or []), args.chain_id, None, escrow_address)
    escrows = {(offer.chain_id, offer.escrow) for offer in fitting}
    if not escrow_address:
        if not escrows:
            raise UsageError(
                f"the node {ctx.node} names no escrow (no environment has fees): pass --escrow and --chain-id"
            )
        if len(escrows) > 1:
            raise UsageError(
                f"the node pays through several escrows; choose with --escrow: {accepted(fitting)}"
            )
    chain_id, escrow_address = next(iter(escrows)) if not escrow_address else (args.chain_id, escrow_address)
    chain_client, escrow_client = chain_classes()
    w3 = connect_rpc(rpc, chain_id, args.timeout)
    escrow: EscrowClient = escrow_client(chain_client(w3, key), escrow_address)
    me = escrow.chain.address
    _check_node_key(envs if envs is not None else _environments_if_up(ctx), me)
    return NodeEscrow(
        escrow,
        int(w3.eth.chain_id) if chain_id is None else int(chain_id),
        me,
        {offer.token: offer for offer in fitting},
    )


def _environments_if_up(ctx: Context) -> list[common_pb2.Environment]:
    """The node's environments, or none when it does not answer: withdrawing needs only the chain."""
    try:
        return node_environments(ctx)
    except C2DError:
        return []


def _check_node_key(envs: list[common_pb2.Environment], me: str) -> None:
    """Earnings are the node's: a key that is not the node's would show (or withdraw) someone else's."""
    payees = {fees.payee_address.lower() for env in envs for fees in env.fees if fees.payee_address}
    if payees and me.lower() not in payees:
        raise UsageError(
            f"the key file's account {me} is not the node's ({', '.join(sorted(payees))}): {NODE_KEY_HINT}"
        )


@chain_command
def cmd_earnings(ctx: Context) -> int:
    node = open_node_escrow(ctx)
    base = bool(getattr(ctx.args, "base_units", False))
    rows = []
    for token in node.tokens(ctx.args.token, base):
        funds = node.escrow.get_user_funds(node.payee, token.address)
        wallet = node.escrow.balance_of(token.address, node.payee)
        rows.append((token, funds.available, wallet))
    if ctx.out.json_mode:
        ctx.out.json(
            {
                **node.header(),
                "tokens": [
                    {
                        "token": token.address,
                        "symbol": token.symbol,
                        "decimals": token.units.decimals,
                        "available": str(available),
                        "wallet": str(wallet),
                    }
                    for token, available, wallet in rows
                ],
            }
        )
        return 0
    ctx.out.line(f"node {node.payee} on chain {node.chain_id}, escrow {node.escrow.address}")
    ctx.out.table(
        ("token", "symbol", "available in escrow", "wallet"),
        [[t.address, t.symbol or "-", t.units.show(a), t.units.show(w)] for t, a, w in rows],
    )
    if not rows:
        ctx.out.line("no earnings yet")
    return 0


@chain_command
def cmd_withdraw(ctx: Context) -> int:
    args = ctx.args
    if (args.amount is None) == (not args.all):
        raise UsageError("say how much to withdraw: an AMOUNT or --all")
    node = open_node_escrow(ctx)
    base = bool(getattr(args, "base_units", False))
    token = _withdraw_token(node, args.token, base)
    funds = node.escrow.get_user_funds(node.payee, token.address)
    amount = funds.available if args.all else _amount(args.amount, token, base)
    if amount == 0:
        raise UsageError(
            "nothing to withdraw: no earnings available" if args.all else "withdraw a positive amount"
        )
    show = token.units.show
    if amount > funds.available:
        raise ChainFailure(
            f"the node has {show(funds.available)} available in the escrow, not {show(amount)}"
        )
    try:
        receipt = node.escrow.withdraw([token.address], [amount])
    except ChainError as err:
        if err.kind != E.REVERT:
            raise
        raise ChainFailure(
            f"the escrow refused to withdraw {show(amount)}: {err.reason or 'reverted'} "
            f"({show(funds.available)} available)"
        ) from None
    after = node.escrow.get_user_funds(node.payee, token.address)
    wallet = node.escrow.balance_of(token.address, node.payee)
    doc = {**node.header(), "token": token.address, "symbol": token.symbol, "decimals": token.units.decimals}
    doc |= {"withdrawn": str(amount), "transaction": tx_hash(receipt)}
    doc |= {"available": str(after.available), "wallet": str(wallet)}
    ctx.out.result(
        doc,
        f"withdrew {show(amount)} to {node.payee} (transaction {tx_hash(receipt)})\n"
        f"escrow: {show(after.available)} available; wallet {show(wallet)}",
    )
    return 0


def _withdraw_token(node: NodeEscrow, named: str | None, base: bool) -> Token:
    """``--token``, or the one token the node has earnings in (else it must be named)."""
    if named:
        return node.token(named, base)
    held = [t for t in node.tokens(None, base) if node.escrow.get_user_funds(node.payee, t.address).available]
    if len(held) == 1:
        return held[0]
    if not held:
        raise UsageError("nothing to withdraw: the node has no earnings available in the escrow")
    raise UsageError(
        "the node has earnings in several tokens; choose with --token: "
        + ", ".join(f"{t.symbol or '-'} {t.address}" for t in held)
    )


def _amount(text: str, token: Token, base: bool) -> int:
    if token.units.decimals is None and not base:
        raise UsageError(f"token {token.address} has no decimals(): give the amount with --base-units")
    return parse_amount(text, token.units.decimals or 0, base)
