"""The ERC-721 test contract (contracts/TestAccessToken.sol) on a dev chain: deploy, mint, transfer."""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_checksum_address

from c2d import auth
from c2d.chain import load_artifact
from c2d.chain.client import ChainClient
from host.chain.devchain import ETHER, DevChain


@dataclass
class AccessToken:
    """A deployed TestAccessToken; the chain's deployer owns it (and alone mints)."""

    chain: DevChain
    address: str

    def _contract(self, key: str) -> tuple[ChainClient, object]:
        client = ChainClient(self.chain.w3, key)
        return client, client.contract(self.address, load_artifact("TestAccessToken")["abi"])

    def mint(self, to: str, token_id: int) -> None:
        client, token = self._contract(self.chain.deployer_key)
        client.transact(token.functions.mint(to_checksum_address(to), token_id))  # type: ignore[attr-defined]

    def transfer(self, holder_key: str, to: str, token_id: int) -> None:
        """The holder (who needs gas: :meth:`DevChain.fund`) moves its token to ``to``."""
        client, token = self._contract(holder_key)
        transfer = token.functions.transferFrom(client.address, to_checksum_address(to), token_id)  # type: ignore[attr-defined]
        client.transact(transfer)

    def balance(self, holder: str) -> int:
        _, token = self._contract(self.chain.deployer_key)
        return int(token.functions.balanceOf(to_checksum_address(holder)).call())  # type: ignore[attr-defined]


def deploy_access_token(chain: DevChain) -> AccessToken:
    artifact = load_artifact("TestAccessToken")
    client = ChainClient(chain.w3, chain.deployer_key)
    return AccessToken(chain, client.deploy(artifact["abi"], artifact["bytecode"], "C2D Access", "C2DA"))


def funded_key(chain: DevChain) -> tuple[str, str]:
    """A new key with gas money: (private key, lower-case address)."""
    key = auth.new_private_key()
    address = auth.address_of(key)
    chain.fund(address, wei=ETHER)
    return key, address.lower()
