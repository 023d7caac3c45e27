"""Who may start jobs in an environment's tier: the operator's allow list and ERC-721 access lists.

Each tier (free, paid) of an environment may be restricted (:class:`host.envterms.AccessTerms`):
a consumer on its allow list may start there, and so may one holding a token of any of its
access lists (``balanceOf(consumer) > 0`` on the node's chain). A tier with neither is open.

Checked when a consumer starts (and when a signed caller asks for a quote), before anything
is stored or locked. Token balances are read on a worker thread, never on the event loop, and
kept for a few seconds (``[chain] access_cache_seconds``) so a burst of starts costs one read
per consumer and contract; concurrent starts wait for the same read. A read that fails is not
kept and never grants: the start is refused UNAVAILABLE, saying the chain could not be read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from c2d.chain.errors import UNREACHABLE, ChainError, classify
from host.envterms import AccessList, AccessTerms, EnvironmentTerms
from host.errors import RequestError, denied, unavailable
from host.metrics import NodeMetrics

DEFAULT_CACHE_SECONDS = 10.0
MAX_CACHED = 10_000  # (contract, consumer) balances kept; past it the expired ones go, then all

ERC721_BALANCE_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]

Holds = Callable[[str, str], bool]  # (contract, consumer) -> holds a token; blocking, raises ChainError


def chain_holds(w3: Any) -> Holds:
    """Whether a consumer holds a token of an ERC-721 contract, read with ``w3`` (blocking)."""
    from eth_utils import to_checksum_address

    def holds(contract: str, consumer: str) -> bool:
        try:
            token = w3.eth.contract(address=to_checksum_address(contract), abi=ERC721_BALANCE_ABI)
            return int(token.functions.balanceOf(to_checksum_address(consumer)).call()) > 0
        except Exception as exc:  # any failure to read is a failure, never a "no"
            raise classify(exc) from exc

    return holds


class EnvironmentAccess:
    """The tiers' restrictions of every environment, checked against the allow lists and the chain."""

    def __init__(
        self,
        terms: Mapping[str, EnvironmentTerms],
        holds: Holds | None,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        metrics: NodeMetrics | None = None,
    ) -> None:
        """``holds``: reads a token balance (:func:`chain_holds`); None when the node has no chain
        (the config is refused at load if an access list needs one)."""
        self.terms = terms
        self._holds = holds
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._metrics = metrics
        self._cache: dict[tuple[str, str], tuple[bool, float]] = {}  # -> (holds, read at)
        self._reading: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def admit(self, env_ids: Iterable[str], consumer: str, *, free: bool) -> None:
        """Raises PERMISSION_DENIED (or UNAVAILABLE) unless ``consumer`` may start in the tier of
        every environment named."""
        for env_id in sorted(set(env_ids)):
            refusal = await self.refusal(env_id, consumer, free=free)
            if refusal is not None:
                raise refusal

    async def refusal(self, env_id: str, consumer: str, *, free: bool) -> RequestError | None:
        """Why ``consumer`` (lower case) may not start in the tier of ``env_id``, or None."""
        access = self.terms.get(env_id, EnvironmentTerms()).access(free)
        if not access.restricted or consumer in access.allow:
            return None
        unread: list[str] = []
        for listed in access.access_lists:
            try:
                if await self._holder(listed, consumer):
                    return None
            except ChainError as exc:
                unread.append(f"{listed.address}: {exc.message}")
        tier = "free" if free else "paid"
        if unread:
            return unavailable(
                f"environment {env_id!r}: the {tier} tier is for holders of an access token, and the "
                f"chain could not be read to check yours ({'; '.join(unread)}); try again"
            )
        return denied(f"environment {env_id!r}: the {tier} tier is restricted; to use it, {_grants(access)}")

    async def _holder(self, listed: AccessList, consumer: str) -> bool:
        """The balance check, from the cache when read less than ``cache_seconds`` ago."""
        key = (listed.address, consumer)
        cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[1] < self.cache_seconds:
            return cached[0]
        reading = self._reading.get(key)
        if reading is None:  # the first of concurrent starts reads; the others wait for its answer
            reading = asyncio.ensure_future(self._read(key))
            self._reading[key] = reading
            reading.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(reading)

    def _done(self, key: tuple[str, str], reading: asyncio.Future[bool]) -> None:
        self._reading.pop(key, None)
        if not reading.cancelled():
            reading.exception()  # retrieved: every waiter may have gone (their calls cancelled)

    async def _read(self, key: tuple[str, str]) -> bool:
        if self._holds is None:
            raise ChainError(UNREACHABLE, "the node has no chain to read access lists on")
        read_at = self._clock()
        try:
            holds = await asyncio.get_running_loop().run_in_executor(self._executor, self._holds, *key)
        except ChainError as exc:
            if self._metrics is not None:
                self._metrics.chain_error(exc.kind)
            raise
        self._keep(key, holds, read_at)
        return holds

    def _keep(self, key: tuple[str, str], holds: bool, read_at: float) -> None:
        if len(self._cache) >= MAX_CACHED:
            now = self._clock()
            self._cache = {k: v for k, v in self._cache.items() if now - v[1] < self.cache_seconds}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[key] = (holds, read_at)


def _grants(access: AccessTerms) -> str:
    """What would let a consumer in, in their words (the allow list's addresses are not named)."""
    ways = []
    by_chain: dict[int, list[str]] = {}
    for listed in access.access_lists:
        by_chain.setdefault(listed.chain_id, []).append(listed.address)
    for chain_id, contracts in sorted(by_chain.items()):
        ways.append(f"hold a token of {' or '.join(contracts)} on chain {chain_id}")
    if access.allow:
        ways.append("be on the environment's allow list (ask the node's operator)")
    return ", or ".join(ways)
