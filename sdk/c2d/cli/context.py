"""What every command needs: the parsed arguments, the output, a client and the key."""

from __future__ import annotations

import argparse
import os

from c2d.cli.errors import UsageError
from c2d.cli.keys import KEY_FILE_ENV, read_key
from c2d.cli.output import Output
from c2d.client import Client

NODE_ENV = "C2D_NODE"
DEFAULT_NODE = "127.0.0.1:8470"


class Context:
    """Built once per invocation; the client is opened on first use so that `key new` needs no node."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.node: str = args.node or os.environ.get(NODE_ENV) or DEFAULT_NODE
        self.out = Output(json_mode=bool(getattr(args, "json", False)))
        self._client: Client | None = None

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

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
