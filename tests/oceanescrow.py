"""Ocean Protocol's own Escrow on a dev chain, deployed from ``@oceanprotocol/contracts`` 2.6.0
(installed by ``npm ci`` in tests/oceanjs), for the tests of a node settling through it.

Ocean's Escrow takes its community fee through a factory router: Ocean's own FactoryRouter is
deployed with it (from the same package), so a claim pays the node the amount less the fee
for a token the router does not list (0.2%), and the fee goes to the collector.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address
from paidnode import DEPOSIT, Consumer

from c2d import auth
from c2d.chain.client import ChainClient
from c2d.chain.ocean import OceanEscrowClient
from host.chain.devchain import DevChain

ROOT = Path(__file__).resolve().parent.parent
OCEAN_CONTRACTS = ROOT / "tests" / "oceanjs" / "node_modules" / "@oceanprotocol" / "contracts"
ESCROW_ARTIFACT = "artifacts/contracts/escrow/Escrow.sol/Escrow.json"
ROUTER_ARTIFACT = "artifacts/contracts/pools/FactoryRouter.sol/FactoryRouter.json"
OPC_FEE = 2 * 10**15  # FactoryRouter's swapNonOceanFee: 0.2% of a claim, per 1e18


def artifact(path: str) -> dict[str, Any]:
    """An artifact of ``@oceanprotocol/contracts``; skips without the npm modules (fails in CI)."""
    file = OCEAN_CONTRACTS / path
    if not file.is_file():
        message = "@oceanprotocol/contracts is missing in tests/oceanjs: run bash scripts/setup-dev (npm ci)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run Ocean's escrow: {message}", pytrace=False)
        pytest.skip(message)
    return dict(json.loads(file.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class OceanEscrow:
    """Ocean's Escrow and router on ``chain`` (whose ``escrow_address`` is Ocean's)."""

    chain: DevChain
    router: str
    collector: str

    @property
    def address(self) -> str:
        return self.chain.escrow_address

    def client(self, private_key: str) -> OceanEscrowClient:
        return OceanEscrowClient(ChainClient(self.chain.w3, private_key), self.address)

    def fee(self, claimed: int) -> int:
        """Ocean's community fee on a claim of ``claimed``."""
        return claimed * OPC_FEE // 10**18

    def consumer(
        self, payee: str | None, *, deposit: int = DEPOSIT, max_amount: int = DEPOSIT, max_locks: int = 10
    ) -> Consumer:
        """A consumer with gas, test tokens, ``deposit`` in Ocean's escrow and (with a payee) its
        authorization."""
        key = auth.new_private_key()
        address = auth.address_of(key)
        self.chain.fund(address, tokens=deposit or 1)
        escrow = self.client(key)
        if deposit:
            escrow.deposit(self.chain.token_address, deposit)
        if payee:
            escrow.authorize(self.chain.token_address, payee, max_amount, 100_000, max_locks)
        return Consumer(key, address, escrow)


def deploy_ocean_escrow(chain: DevChain) -> OceanEscrow:
    """Ocean's FactoryRouter and Escrow, deployed by the chain's deployer."""
    deployer = ChainClient(chain.w3, chain.deployer_key)
    collector = to_checksum_address(auth.address_of(auth.new_private_key()))
    router = artifact(ROUTER_ARTIFACT)
    escrow = artifact(ESCROW_ARTIFACT)
    # The router lists one "Ocean" token: not the test token, which so pays the non-Ocean fee.
    ocean_token = to_checksum_address(auth.address_of(auth.new_private_key()))
    bpool_template = to_checksum_address(auth.address_of(auth.new_private_key()))
    router_address = deployer.deploy(
        router["abi"], router["bytecode"], deployer.address, ocean_token, bpool_template, collector, []
    )
    escrow_address = deployer.deploy(escrow["abi"], escrow["bytecode"], router_address, collector)
    return OceanEscrow(dataclasses.replace(chain, escrow_address=escrow_address), router_address, collector)


def ocean_env(ocean: OceanEscrow, base: dict[str, str]) -> dict[str, str]:
    """A node's C2D_* variables settling through Ocean's escrow instead."""
    return {
        **base,
        "C2D_CHAIN__ESCROW_ADDRESS": ocean.address,
        "C2D_CHAIN__ESCROW_KIND": "ocean",
    }
