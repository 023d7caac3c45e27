"""Ocean Protocol's own Escrow contract (``@oceanprotocol/contracts``), behind :class:`EscrowClient`'s calls.

Ocean's Escrow and this project's (``contracts/Escrow.sol``) take the same transactions with the
same arguments and emit the same events, so locking, claiming (one or a batch) and cancelling go
through :class:`EscrowClient` unchanged. What differs is read here:

- ``getLocks`` requires the payee, returns locks without it (``jobId, payer, amount, expiry,
  token``), and matches its token and payer filters with *or*: this adapter asks for all of the
  payee's locks and filters them itself.
- ``cancelExpiredLock`` does nothing (no revert) when no expired lock matches; the settler
  learns that from the receipt having no ``Canceled`` event, as with a batch.
- a claim pays the payee the amount less Ocean's community fee (the contract's factory router
  says how much, per token); the ``Claimed`` event and the payer's refund are the whole amount.

The ABI is the one of ``@oceanprotocol/contracts`` 2.6.0 (``artifacts/OceanEscrow.abi.json``).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from eth_utils import to_checksum_address

from c2d.chain import ARTIFACTS_DIR, ESCROW_KINDS
from c2d.chain import errors as E
from c2d.chain.client import ZERO_ADDRESS, ChainClient, EscrowClient, Lock
from c2d.chain.errors import ChainError

OCEAN_ABI_FILE = "OceanEscrow.abi.json"
# Ocean's Escrow names the router of its community fee; this project's has no such function.
_FACTORY_ROUTER_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "factoryRouter",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "address"}],
    }
]


@cache
def ocean_escrow_abi() -> list[dict[str, Any]]:
    return json.loads((ARTIFACTS_DIR / OCEAN_ABI_FILE).read_text(encoding="utf-8"))["abi"]


class OceanEscrowClient(EscrowClient):
    """:class:`EscrowClient` over Ocean's Escrow: the same calls, its ``getLocks`` read its way."""

    locks_need_payee = True  # getLocks lists one payee's locks: a payer's are read per payee

    def __init__(self, chain: ChainClient, escrow_address: str) -> None:
        super().__init__(chain, escrow_address, ocean_escrow_abi())

    def get_locks(
        self, token: str | None = None, payer: str | None = None, payee: str | None = None
    ) -> list[Lock]:
        """Live locks of ``payee`` (default: this client; Ocean's escrow lists locks per payee only),
        of ``token`` and ``payer`` when given."""
        who = to_checksum_address(payee or self.chain.address)
        rows = self.chain.call(self.contract.functions.getLocks(ZERO_ADDRESS, ZERO_ADDRESS, who))
        locks = [
            Lock(int(r[0]), to_checksum_address(r[1]), who, int(r[2]), int(r[3]), to_checksum_address(r[4]))
            for r in rows
        ]
        return [
            lock
            for lock in locks
            if (token is None or lock.token.lower() == token.lower())
            and (payer is None or lock.payer.lower() == payer.lower())
        ]


def detect_escrow_kind(chain: ChainClient, escrow_address: str) -> str:
    """ "ocean" when the escrow at ``escrow_address`` is Ocean's (it answers ``factoryRouter()``),
    else "c2d". A chain that cannot be reached is an error, not an answer."""
    probe = chain.contract(escrow_address, _FACTORY_ROUTER_ABI)
    try:
        chain.call(probe.functions.factoryRouter())
    except ChainError as err:
        if err.kind in (E.UNREACHABLE, E.RATE_LIMITED, E.CHAIN_MISMATCH):
            raise
        return "c2d"
    return "ocean"


def open_escrow(chain: ChainClient, escrow_address: str) -> EscrowClient:
    """The client for whichever escrow is at ``escrow_address`` (:func:`detect_escrow_kind`): for a
    consumer's tools, which learn the escrow's address but not its kind."""
    return escrow_client(detect_escrow_kind(chain, escrow_address), chain, escrow_address)


def escrow_client(kind: str, chain: ChainClient, escrow_address: str) -> EscrowClient:
    """The client for an escrow of ``kind`` (one of :data:`c2d.chain.ESCROW_KINDS`)."""
    if kind == "ocean":
        return OceanEscrowClient(chain, escrow_address)
    if kind == "c2d":
        return EscrowClient(chain, escrow_address)
    raise ValueError(f"escrow kind must be one of {', '.join(ESCROW_KINDS)}, got {kind!r}")


__all__ = [
    "OceanEscrowClient",
    "detect_escrow_kind",
    "escrow_client",
    "ocean_escrow_abi",
    "open_escrow",
]
