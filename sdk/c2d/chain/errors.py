"""Recognising what went wrong when talking to an EVM chain.

Different node software words the same failure differently (geth, anvil/foundry, hardhat,
ganache, besu, nethermind, openethereum, the in-process py-evm tester), and web3.py wraps them in
different exception types. :func:`classify` maps any of them to a :class:`ChainError` with a
stable ``kind``, a human message, the revert reason when there is one, and whether trying again
later can help (``retryable``).
"""

from __future__ import annotations

import errno
import re
import socket
from typing import Any

# kinds
REVERT = "revert"  # the contract refused: a require/revert, with its reason when known
INSUFFICIENT_FUNDS = "insufficient_funds"  # the sender cannot pay gas * price + value
NONCE_TOO_LOW = "nonce_too_low"  # a transaction with this nonce was already mined
ALREADY_KNOWN = "already_known"  # this very transaction is already in the node's pool
UNDERPRICED = "underpriced"  # replacement underpriced / fee too low for the pool
UNREACHABLE = "unreachable"  # connection refused/reset, DNS, RPC timeout, HTTP 5xx
RATE_LIMITED = "rate_limited"  # HTTP 429 / "too many requests"
RECEIPT_TIMEOUT = "receipt_timeout"  # sent, but no receipt within the wait
CHAIN_MISMATCH = "chain_mismatch"  # the RPC serves another chain than configured
OUT_OF_GAS = "out_of_gas"  # gas limit too low / intrinsic gas too low
UNKNOWN = "unknown"

_RETRYABLE = {UNREACHABLE, RATE_LIMITED, RECEIPT_TIMEOUT, NONCE_TOO_LOW, ALREADY_KNOWN, UNDERPRICED}


class ChainError(Exception):
    """A classified chain failure. ``kind`` is one of the module's kind constants."""

    def __init__(
        self,
        kind: str,
        message: str,
        retryable: bool | None = None,
        *,
        reason: str | None = None,
        tx_hash: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = (kind in _RETRYABLE) if retryable is None else retryable
        self.reason = reason
        self.tx_hash = tx_hash
        self.cause = cause

    def __repr__(self) -> str:
        return f"ChainError(kind={self.kind!r}, message={self.message!r}, retryable={self.retryable})"


# --- revert reasons, in each node's words -------------------------------------------------
_REVERT_PATTERNS = [
    # hardhat: "VM Exception while processing transaction: reverted with reason string 'X'"
    re.compile(r"reverted with reason string '(?P<r>.*)'", re.S),
    # hardhat custom errors / panics
    re.compile(r"reverted with (?P<r>(?:custom error|panic code) .*)", re.S),
    # geth / anvil / web3 ContractLogicError / eth-tester: "execution reverted: X"
    re.compile(r"execution reverted:\s*(?P<r>.*)", re.S),
    # ganache: "VM Exception while processing transaction: revert X"
    re.compile(r"VM Exception while processing transaction:\s*revert\s*(?P<r>.*)", re.S),
    # anvil (older) / revm: "EVM error: Revert(...)" or "reverted: X"
    re.compile(r"\breverted:\s*(?P<r>.*)", re.S),
]
_REVERT_MARKERS = (
    "execution reverted",
    "vm exception while processing transaction",
    "transaction reverted",
    "reverted with",
    "revert",
    "invalid opcode",
    "evm error",
)

_NONCE_TOO_LOW = (
    "nonce too low",
    "nonce is too low",
    "oldnonce",
    "invalid transaction nonce",  # py-evm
    "doesn't have the correct nonce",  # ganache
    "does not have the correct nonce",
    "nonce has already been used",
    "nonce too small",
)
_ALREADY_KNOWN = (
    "already known",
    "known transaction",
    "already imported",  # openethereum / ganache: "Transaction with the same hash was already imported"
    "alreadyknown",
    "transaction already exists",
)
_UNDERPRICED = (
    "replacement transaction underpriced",
    "transaction underpriced",
    "replacement fee too low",
    "feetoolow",
    "max fee per gas less than block base fee",
    "gas price too low",
    "fee cap less than block base fee",
)
_INSUFFICIENT = (
    "insufficient funds",
    "insufficientfunds",
    "doesn't have enough funds",  # hardhat / ganache
    "does not have enough funds",
    "cannot afford txn",  # py-evm
    "not have enough balance",  # py-evm: "Sender does not have enough balance to cover ..."
    "upfront cost exceeds account balance",  # besu
    "lackoffunds",
    "outoffunds",
)
_OUT_OF_GAS = ("intrinsic gas too low", "out of gas", "gas required exceeds allowance", "intrinsic gas")
_UNREACHABLE = (
    "connection refused",
    "connection reset",
    "connection aborted",
    "failed to establish a new connection",
    "max retries exceeded",
    "name or service not known",
    "temporary failure in name resolution",
    "nodename nor servname",
    "cannot connect",
    "could not connect",
    "read timed out",
    "timed out",
    "timeout",
    "remote end closed connection",
    "bad gateway",
    "service unavailable",
    "gateway time-out",
    "gateway timeout",
    "header not found",  # load-balanced RPC lagging behind: try again
    "eof occurred",
)
_RATE_LIMITED = ("too many requests", "rate limit", "exceeded the quota", "capacity exceeded")
# HTTP status codes, as whole words (never inside a hex hash or address)
_HTTP_UNAVAILABLE = re.compile(r"(?<![0-9a-fA-Fx])(?:502|503|504)(?![0-9a-fA-F])")
_HTTP_RATE_LIMITED = re.compile(r"(?<![0-9a-fA-Fx])429(?![0-9a-fA-F])")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost first."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _texts(exc: BaseException) -> list[str]:
    """Every string an exception carries: str(), args (dicts with message/data included)."""
    out: list[str] = []

    def add(v: Any) -> None:
        if v is None:
            return
        if isinstance(v, bytes):
            out.append(_decode_revert_data(v) or "")
        elif isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for key in ("message", "reason", "data", "error"):
                if key in v:
                    add(v[key])
        elif isinstance(v, list | tuple):
            for item in v:
                add(item)
        else:
            out.append(str(v))

    for e in _chain(exc):
        add(getattr(e, "message", None))
        add(getattr(e, "rpc_response", None))
        add(list(e.args))
        out.append(str(e))
    return [t for t in out if t]


_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


def _decode_revert_data(data: bytes | str | None) -> str | None:
    """Decodes ABI revert data (Error(string) / Panic(uint256)); None when it isn't."""
    if data is None:
        return None
    if isinstance(data, str):
        s = data[2:] if data.startswith("0x") else data
        if not re.fullmatch(r"[0-9a-fA-F]*", s) or len(s) % 2:
            return None
        data = bytes.fromhex(s)
    if data[:4] == _ERROR_SELECTOR and len(data) >= 68:
        try:
            length = int.from_bytes(data[36:68], "big")
            return data[68 : 68 + length].decode("utf-8", "replace")
        except (ValueError, OverflowError):
            return None
    if data[:4] == _PANIC_SELECTOR and len(data) >= 36:
        return f"panic code {int.from_bytes(data[4:36], 'big'):#x}"
    return None


def revert_reason(text: str) -> str | None:
    """The reason out of a node's revert message, or None when it names none."""
    for pat in _REVERT_PATTERNS:
        m = pat.search(text)
        if m:
            reason = m.group("r").strip().strip("'\"").strip()
            # drop trailing JSON-ish noise some nodes append
            reason = reason.split("\n", 1)[0].strip()
            return reason or None
    return None


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover
        requests = None  # type: ignore[assignment]
    if requests is not None and isinstance(
        exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
    ):
        return True
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout | socket.gaierror):
        return True
    if isinstance(exc, OSError) and exc.errno in {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.ECONNABORTED,
    }:
        return True
    name = type(exc).__name__
    return name in {
        "ProviderConnectionError",
        "RequestTimedOut",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ConnectTimeout",
        "ReadTimeout",
        "ConnectError",
        "PersistentConnectionError",
    }


def classify(exc: BaseException) -> ChainError:
    """Maps any exception raised while talking to a chain to a :class:`ChainError`."""
    if isinstance(exc, ChainError):
        return exc
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    texts = _texts(exc)
    blob = "\n".join(texts).lower()
    first = str(exc) or type(exc).__name__

    def make(kind: str, message: str, **kw: Any) -> ChainError:
        return ChainError(kind, message, cause=exc, **kw)

    # Receipt wait ran out (web3's TimeExhausted): sent, maybe mined later.
    if "TimeExhausted" in names:
        return make(RECEIPT_TIMEOUT, f"no receipt yet: {first}")

    # Contract reverts: typed first, then by wording.
    typed_revert = names & {
        "ContractLogicError",
        "ContractCustomError",
        "ContractPanicError",
        "TransactionFailed",  # eth-tester / py-evm
        "Revert",  # py-evm's eth.exceptions.Revert
        "OffchainLookup",
    }
    reason = None
    for e in chain:
        data = getattr(e, "data", None)
        if isinstance(data, bytes | str):
            reason = _decode_revert_data(data)
            if reason:
                break
    if reason is None:
        for t in texts:
            reason = revert_reason(t)
            if reason:
                break
    if typed_revert and reason is None:
        # eth-tester: TransactionFailed("the reason") or TransactionFailed(b"...")
        for e in chain:
            if type(e).__name__ in {"TransactionFailed", "Revert"} and e.args:
                arg = e.args[0]
                reason = _decode_revert_data(arg) if isinstance(arg, bytes) else str(arg).strip() or None
                if reason and reason.lower() in {"execution reverted", "revert", "reverted"}:
                    reason = None
                break

    # Pool/sender problems are recognised before the generic revert markers, since messages such
    # as "sender doesn't have enough funds" never name a revert.
    if not typed_revert:
        if any(s in blob for s in _NONCE_TOO_LOW):
            return make(NONCE_TOO_LOW, f"nonce too low: {first}")
        if any(s in blob for s in _ALREADY_KNOWN):
            return make(ALREADY_KNOWN, f"transaction already known: {first}")
        if any(s in blob for s in _UNDERPRICED):
            return make(UNDERPRICED, f"transaction underpriced: {first}")
        if any(s in blob for s in _INSUFFICIENT):
            return make(INSUFFICIENT_FUNDS, f"insufficient funds for gas: {first}")

    if typed_revert or reason is not None or any(m in blob for m in _REVERT_MARKERS):
        msg = f"execution reverted: {reason}" if reason else "execution reverted (no reason given)"
        return make(REVERT, msg, reason=reason)

    if any(s in blob for s in _OUT_OF_GAS):
        return make(OUT_OF_GAS, f"out of gas: {first}")

    if "TooManyRequests" in names or any(s in blob for s in _RATE_LIMITED) or _HTTP_RATE_LIMITED.search(blob):
        return make(RATE_LIMITED, f"rate limited by the RPC endpoint: {first}")

    if (
        any(_is_connection_error(e) for e in chain)
        or any(s in blob for s in _UNREACHABLE)
        or _HTTP_UNAVAILABLE.search(blob)
    ):
        return make(UNREACHABLE, f"chain unreachable: {first}")

    return make(UNKNOWN, first, retryable=False)
