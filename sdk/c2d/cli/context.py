"""What every command needs: the parsed arguments, the output, a client and the key."""

from __future__ import annotations

import argparse
import os

from c2d.cli.errors import UsageError
from c2d.cli.keys import KEY_FILE_ENV, read_key
from c2d.cli.output import Output
from c2d.client import C2DError, Client
from c2d.units import TokenUnits

NODE_ENV = "C2D_NODE"
DEFAULT_NODE = "127.0.0.1:8470"


class Context:
    """Built once per invocation; the client is opened on first use so that `key new` needs no node."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node: str = args.node or os.environ.get(NODE_ENV) or DEFAULT_NODE
        self.out = Output(json_mode=bool(getattr(args, "json", False)))
        self._client: Client | None = None
        self._tokens: dict[tuple[int, str], TokenUnits] | None = None

    def key_file(self) -> str | None:
        return self.args.key_file or os.environ.get(KEY_FILE_ENV) or None

    def private_key(self) -> str:
        path = self.key_file()
        if not path:
            raise UsageError(f"this command signs its request: pass --key-file or set {KEY_FILE_ENV}")
        return read_key(path)

    def client(self, signed: bool = True, identify: bool = False) -> Client:
        """The node's client. Unsigned calls need no key, so a broken key file cannot stop `c2d envs`;
        ``identify`` uses a configured key anyway, to tell the node who asks (InitializeCompute).
        """
        if self._client is None:
            key = self.private_key() if signed or (identify and self.key_file()) else None
            self._client = Client(self.node, key, timeout=self.args.timeout)
        return self._client

    def node_public_key(self) -> bytes:
        """The node's public key, from a client of its own: asking must not fix whether the
        command's client signs."""
        with Client(self.node, None, timeout=self.args.timeout) as client:
            return client.node_public_key()

    def units(self, chain_id: int, token: str) -> TokenUnits:
        """How to show amounts of ``token``: in token units with the decimals and symbol the node's
        environments advertise for it (asked once), or base units with ``--base-units`` or when the
        node does not say."""
        if getattr(self.args, "base_units", False):
            return TokenUnits(base=True)
        if self._tokens is None:
            try:
                environments = self.client(signed=False).environments()
            except C2DError:  # only for showing amounts: base units say exactly what they are
                environments = []
            self._tokens = {
                (int(fees.chain_id), fees.token_address.lower()): TokenUnits(
                    fees.token_decimals, fees.token_symbol
                )
                for env in environments
                for fees in env.fees
                if fees.token_decimals or fees.token_symbol
            }
        return self._tokens.get((int(chain_id), token.lower()), TokenUnits())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
