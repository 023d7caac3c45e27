"""``c2d escrow deposit|authorize|balance|withdraw``: the consumer's funds in the node's escrow.

The escrow, token and chain come from the node's environments (``GetEnvironments`` fees) unless
named with ``--escrow``/``--token``/``--chain-id``; the RPC from ``--rpc`` or ``$C2D_RPC_URL``.
Transactions are signed with the consumer's key (``--key-file``/``$C2D_KEY_FILE``), the same key
that signs node calls: the node locks funds of the address that starts the workflow.

web3 is imported only when one of these commands runs (``c2d-sdk[chain]``), so the rest of the
CLI starts fast and works without it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from c2d.chain import errors as E
from c2d.chain.errors import ChainError
from c2d.cli.context import Context
from c2d.cli.errors import ChainFailure, UsageError
from c2d.cli.payment import accepted, choose, offers, parse_amount, when_unix
from c2d.client import C2DError
from c2d.common.v1 import common_pb2
from c2d.units import TokenUnits

if TYPE_CHECKING:
    from web3 import Web3

    from c2d.chain.client import EscrowClient

RPC_ENV = "C2D_RPC_URL"
INSTALL_HINT = "the escrow commands need web3: pip install 'c2d-sdk[chain]'"
DEFAULT_DECIMALS = 18
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
# What a consumer most likely means when no limits are given: one day, ten workflows at once.
DEFAULT_MAX_SECONDS = 86_400
DEFAULT_MAX_LOCKS = 10


def chain_command(handler: Callable[[Context], int]) -> Callable[[Context], int]:
    """Turns a chain failure into one ``error:`` line (exit 4) instead of a traceback."""

    @functools.wraps(handler)
    def run(ctx: Context) -> int:
        try:
            return handler(ctx)
        except ChainError as err:
            raise ChainFailure(explain(err, rpc_url(ctx) or "")) from None

    return run


def explain(err: ChainError, rpc: str) -> str:
    """A chain failure in one line that says what to do about it."""
    text = (err.message or err.kind).splitlines()[0]
    if err.kind == E.UNREACHABLE:
        return f"cannot reach the chain at {rpc} ({_cause(text)}): check --rpc or ${RPC_ENV}"
    if err.kind == E.RATE_LIMITED:
        return f"the RPC at {rpc} is rate limiting: try again later"
    if err.kind == E.REVERT:
        return f"refused on chain: {err.reason or 'the transaction reverted without a reason'}"
    if err.kind == E.INSUFFICIENT_FUNDS:
        return "your account has not enough of the chain's native coin (ETH) to pay for gas"
    if err.kind == E.RECEIPT_TIMEOUT:
        return f"transaction {err.tx_hash or ''} was sent but not mined in time: see c2d escrow balance"
    return text


def _cause(text: str) -> str:
    low = text.lower()
    for words in ("connection refused", "timed out", "name or service not known", "connection reset"):
        if words in low:
            return words
    return text[:120]


def rpc_url(ctx: Context) -> str | None:
    return getattr(ctx.args, "rpc", None) or os.environ.get(RPC_ENV) or None


def checked_address(value: str | None, option: str) -> str | None:
    if value is not None and not ADDRESS.fullmatch(value):
        raise UsageError(f"{option} {value!r} is not an address (0x and 40 hex digits)")
    return value


# ------------------------------------------------------------ which escrow


@dataclass
class Target:
    """The escrow and token to use, and what the node says about them (when it was asked)."""

    rpc_url: str
    chain_id: int | None
    token: str
    escrow: str
    symbol: str = ""
    decimals: int = 0
    environments: list[common_pb2.Environment] | None = None  # the node's, when it was asked


def node_environments(ctx: Context) -> list[common_pb2.Environment]:
    try:
        return ctx.client(signed=False).environments()
    except C2DError as exc:
        raise C2DError(
            exc.code,
            f"{exc.message} (asking the node which escrow it uses; or name it: --escrow and --token)",
        ) from None


def resolve_target(ctx: Context) -> Target:
    """The named escrow and token, or the one (chain, token) the node accepts; else ask to choose."""
    args = ctx.args
    rpc = rpc_url(ctx)
    if not rpc:
        raise UsageError(f"no chain RPC: pass --rpc URL or set {RPC_ENV}")
    token = checked_address(args.token, "--token")
    escrow = checked_address(args.escrow, "--escrow")
    if token and escrow:
        return Target(rpc, args.chain_id, token, escrow)
    envs = node_environments(ctx)
    available = offers(envs)
    fitting = choose(available, args.chain_id, token, escrow)
    if len(fitting) == 1:
        offer = fitting[0]
        return Target(rpc, offer.chain_id, offer.token, offer.escrow, offer.symbol, offer.decimals, envs)
    if not available:
        raise UsageError(
            f"the node {ctx.node} takes no payments (no fees): name them with --escrow and --token"
        )
    if not fitting:
        raise UsageError(f"the node accepts none of that; it accepts: {accepted(available)}")
    raise UsageError(
        f"the node accepts several; choose with --chain-id, --token (and --escrow): {accepted(fitting)}"
    )


# ------------------------------------------------------------ the chain


class Session:
    """The consumer's escrow on one chain: connected, with the token's decimals and symbol known."""

    def __init__(self, ctx: Context, target: Target) -> None:
        chain_client, escrow_client = chain_classes()
        self.ctx = ctx
        self.target = target
        w3 = connect_rpc(target.rpc_url, target.chain_id, ctx.args.timeout)
        self.chain_id = int(w3.eth.chain_id) if target.chain_id is None else target.chain_id
        self.escrow: EscrowClient = escrow_client(chain_client(w3, ctx.private_key()), target.escrow)
        self.me: str = self.escrow.chain.address
        self.token: str = w3.to_checksum_address(target.token)
        self.decimals = self._decimals()
        self.symbol = target.symbol or self.escrow.token_symbol(self.token) or ""

    def _decimals(self) -> int:
        decimals = self.escrow.token_decimals(self.token)
        if decimals is not None:
            return decimals
        fallback = self.target.decimals or DEFAULT_DECIMALS
        self.ctx.out.warn(
            f"token {self.token} has no decimals(): amounts use {fallback} decimals "
            "(pass --base-units to give base units)"
        )
        return fallback

    def amount(self, text: str) -> int:
        return parse_amount(text, self.decimals, bool(getattr(self.ctx.args, "base_units", False)))

    def money(self, amount: int) -> str:
        return self.units.show(amount)

    @property
    def units(self) -> TokenUnits:
        return TokenUnits(self.decimals, self.symbol, base=bool(getattr(self.ctx.args, "base_units", False)))

    def header(self) -> dict[str, Any]:
        return {
            "account": self.me,
            "chain_id": self.chain_id,
            "escrow": self.escrow.address,
            "token": self.token,
            "symbol": self.symbol,
            "decimals": self.decimals,
        }


def chain_classes() -> tuple[Any, Any]:
    try:
        from c2d.chain.client import ChainClient
        from c2d.chain.ocean import open_escrow
    except ImportError as exc:
        raise UsageError(f"{INSTALL_HINT} ({exc})") from None
    return ChainClient, open_escrow  # this project's escrow or Ocean's, whichever is there


def connect_rpc(rpc: str, chain_id: int | None, timeout: float) -> Web3:
    """Web3 on ``rpc``; a clear failure when it serves another chain than ``chain_id``."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout}))
    try:
        actual = int(w3.eth.chain_id)
    except Exception as exc:
        raise E.classify(exc) from exc
    if chain_id is not None and actual != int(chain_id):
        raise ChainFailure(
            f"chain mismatch: the RPC at {rpc} serves chain {actual}, the escrow is on chain {chain_id} "
            "(check --rpc, --chain-id)"
        )
    return w3


def session(ctx: Context) -> Session:
    ctx.private_key()  # a missing key fails before anything is asked of the node or the chain
    return Session(ctx, resolve_target(ctx))


def tx_hash(receipt: Any) -> str:
    value = receipt["transactionHash"]
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


# ------------------------------------------------------------ commands


@chain_command
def cmd_deposit(ctx: Context) -> int:
    s = session(ctx)
    amount = s.amount(ctx.args.amount)
    if amount == 0:
        raise UsageError("deposit a positive amount")
    wallet = s.escrow.balance_of(s.token, s.me)
    if wallet < amount:
        raise ChainFailure(
            f"not enough tokens: {s.me} holds {s.money(wallet)} in its wallet, the deposit needs {s.money(amount)}"
        )
    receipt = s.escrow.deposit(s.token, amount)
    funds = s.escrow.get_user_funds(s.me, s.token)
    doc = {**s.header(), "deposited": str(amount), "transaction": tx_hash(receipt)}
    doc |= {"available": str(funds.available), "locked": str(funds.locked)}
    ctx.out.result(
        doc,
        f"deposited {s.money(amount)} into escrow {s.escrow.address} (transaction {tx_hash(receipt)})\n"
        f"escrow: {s.money(funds.available)} available, {s.money(funds.locked)} locked",
    )
    return 0


@chain_command
def cmd_withdraw(ctx: Context) -> int:
    s = session(ctx)
    funds = s.escrow.get_user_funds(s.me, s.token)
    amount = funds.available if ctx.args.amount == "all" else s.amount(ctx.args.amount)
    if amount == 0:
        raise UsageError("nothing to withdraw" if ctx.args.amount == "all" else "withdraw a positive amount")
    try:
        receipt = s.escrow.withdraw([s.token], [amount])
    except ChainError as err:
        if err.kind != E.REVERT:
            raise
        raise ChainFailure(
            f"the escrow refused to withdraw {s.money(amount)}: {err.reason or 'reverted'} "
            f"({s.money(funds.available)} available, {s.money(funds.locked)} locked)"
        ) from None
    after = s.escrow.get_user_funds(s.me, s.token)
    wallet = s.escrow.balance_of(s.token, s.me)
    doc = {**s.header(), "withdrawn": str(amount), "transaction": tx_hash(receipt)}
    doc |= {"available": str(after.available), "locked": str(after.locked), "wallet": str(wallet)}
    ctx.out.result(
        doc,
        f"withdrew {s.money(amount)} to {s.me} (transaction {tx_hash(receipt)})\n"
        f"escrow: {s.money(after.available)} available, {s.money(after.locked)} locked; "
        f"wallet {s.money(wallet)}",
    )
    return 0


@chain_command
def cmd_authorize(ctx: Context) -> int:
    args = ctx.args
    s = session(ctx)
    payee = checked_address(args.payee, "--payee") or node_address(ctx, s)
    max_amount = s.amount(args.max_amount)
    receipt = s.escrow.authorize(s.token, payee, max_amount, args.max_seconds, args.max_locks)
    doc = {**s.header(), "payee": payee, "max_locked_amount": str(max_amount)}
    doc |= {"max_lock_seconds": args.max_seconds, "max_lock_counts": args.max_locks}
    doc["transaction"] = tx_hash(receipt)
    ctx.out.result(
        doc,
        f"authorized {payee} to lock up to {s.money(max_amount)} in at most {args.max_locks} locks "
        f"of up to {args.max_seconds}s each (transaction {tx_hash(receipt)})",
    )
    return 0


@chain_command
def cmd_balance(ctx: Context) -> int:
    s = session(ctx)
    payee = checked_address(ctx.args.payee, "--payee")
    wallet = s.escrow.balance_of(s.token, s.me)
    funds = s.escrow.get_user_funds(s.me, s.token)
    auths = s.escrow.get_authorizations(s.token, s.me, payee)
    if payee or not s.escrow.locks_need_payee:
        locks = s.escrow.get_locks(s.token, s.me, payee)
    else:  # Ocean's escrow lists locks per payee: the payer's are those of the payees it authorized
        locks = [lock for a in auths for lock in s.escrow.get_locks(s.token, s.me, a.payee)]
    if ctx.out.json_mode:
        ctx.out.json(
            {
                **s.header(),
                "wallet": str(wallet),
                "available": str(funds.available),
                "locked": str(funds.locked),
                "authorizations": [_auth_json(a) for a in auths],
                "locks": [_lock_json(lock) for lock in locks],
            }
        )
        return 0
    out = ctx.out
    out.line(f"account: {s.me} on chain {s.chain_id}")
    out.line(f"token: {s.symbol or '-'} {s.token} ({s.decimals} decimals)")
    out.line(f"wallet: {s.money(wallet)}")
    out.line(
        f"escrow {s.escrow.address}: {s.money(funds.available)} available, {s.money(funds.locked)} locked"
    )
    rows = [
        [
            a.payee,
            s.money(a.max_locked_amount),
            s.money(a.current_locked_amount),
            a.max_lock_seconds,
            a.current_locks,
            a.max_lock_counts,
        ]
        for a in auths
    ]
    out.line()
    out.table(
        ("payee", "max locked", "locked now", "max seconds", "locks", "max locks"), rows, "authorizations"
    )
    if not auths:
        out.line("no authorization: c2d escrow authorize --max-amount AMOUNT")
    if locks:
        out.line()
        lock_rows = [
            [lock.job_id, lock.payee, s.money(lock.amount), when_unix(lock.expiry)] for lock in locks
        ]
        out.table(("lock id", "payee", "amount", "expires"), lock_rows, "live locks")
    return 0


def _auth_json(a: Any) -> dict[str, Any]:
    return {
        "payee": a.payee,
        "max_locked_amount": str(a.max_locked_amount),
        "current_locked_amount": str(a.current_locked_amount),
        "max_lock_seconds": a.max_lock_seconds,
        "max_lock_counts": a.max_lock_counts,
        "current_locks": a.current_locks,
    }


def _lock_json(lock: Any) -> dict[str, Any]:
    return {
        "lock_id": str(lock.job_id),
        "payee": lock.payee,
        "amount": str(lock.amount),
        "expiry": lock.expiry,
        "token": lock.token,
    }


# ------------------------------------------------------------ the node's address


def node_address(ctx: Context, s: Session) -> str:
    """The node's payee address, as its environments' fees name it; ``--payee`` skips asking."""
    env = _env_for(ctx, s)
    payees = {fees.payee_address for fees in env.fees if fees.payee_address}
    if len(payees) != 1 or not ADDRESS.fullmatch(next(iter(payees))):
        raise UsageError("the node's environments name no payee address: pass --payee ADDRESS")
    return payees.pop()


def _env_for(ctx: Context, s: Session) -> common_pb2.Environment:
    envs = s.target.environments if s.target.environments is not None else node_environments(ctx)
    fitting = choose(offers(envs), s.chain_id, s.token, s.target.escrow)
    names = {name for offer in fitting for name in offer.environments}
    for env in envs:
        if env.id in names:
            return env
    raise UsageError(
        f"the node takes no {s.token} on chain {s.chain_id} at escrow {s.target.escrow}, "
        "so it cannot name its address: pass --payee ADDRESS"
    )
