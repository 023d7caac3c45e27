"""Which chain the node settles on: the configured RPC, an injected Web3, or a local dev chain.

A development node (no config file) with no chain configured starts a dev
chain with the escrow and a test token deployed, gives the node's key gas
money, prices every environment in the test token (:func:`dev_fees`), and
writes what a consumer needs to pay (RPC URL, addresses, the funded
consumer's key) to ``<data_dir>/devchain.json``. An in-process py-evm chain
has no RPC for ``c2d escrow``, so there the consumer's deposit and its
authorization of the node are made already.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import structlog
from web3 import Web3

from c2d.chain import errors as E
from c2d.chain.client import ChainClient, EscrowClient, connect
from c2d.chain.errors import ChainError
from c2d.chain.ocean import escrow_client
from c2d.common.v1 import common_pb2
from host.chain.devchain import DevChain, start_dev_chain
from host.config import Config
from host.identity import NodeIdentity
from host.payments.service import PaymentSettings, check_escrow_kind

log = structlog.get_logger()

DEV_CHAIN_FILE = "devchain.json"
DEV_CONSUMER_KEY_FILE = "dev-consumer.key"  # in the format of `c2d key new`
# Dev prices per unit-minute, in the test token's smallest unit (18 decimals).
DEV_PRICES = {"cpu": 10**15, "ram": 10**14, "disk": 10**13, "gpu": 10**16}
DEV_DEFAULT_PRICE = 10**14
DEV_PREPAID = 100 * 10**18  # deposited and authorized for the consumer on an in-process chain


@dataclass
class ChainSetup:
    escrow: EscrowClient
    settings: PaymentSettings
    dev: DevChain | None = None

    def default_fees(self, env: common_pb2.Environment) -> list[common_pb2.ChainFees]:
        """Prices for an environment the config prices not at all: only on a dev chain."""
        if self.dev is None:
            return []
        return [dev_fees(env, self.dev.chain_id, self.dev.token_address, self.dev.escrow_address)]

    def close(self) -> None:
        if self.dev is not None:
            self.dev.stop()


def open_chain(config: Config, identity: NodeIdentity, web3: Web3 | None = None) -> ChainSetup | None:
    """The node's chain, or None when it settles no payments."""
    chain = config.chain
    if web3 is not None:
        return _setup(config, identity, web3, int(web3.eth.chain_id), chain.escrow_address, chain.escrow_kind)
    if chain.rpc_url:
        try:
            w3 = connect(chain.rpc_url, chain.chain_id)
        except ChainError as exc:
            if exc.retryable:  # the payment loop keeps trying (and checks); free compute works meanwhile
                log.warning("chain unreachable at start", rpc=chain.rpc_url, error=exc.message)
                w3 = Web3(Web3.HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 10}))
                return _setup(config, identity, w3, chain.chain_id, chain.escrow_address, chain.escrow_kind)
            raise
        setup = _setup(config, identity, w3, chain.chain_id, chain.escrow_address, chain.escrow_kind)
        _check_escrow_at_start(setup.escrow, chain.escrow_kind)
        return setup
    dev = config.dev_chain()
    if dev is None:
        return None
    try:
        return _dev_setup(config, identity, dev)
    except Exception as exc:  # a convenience: the node still computes for free without it
        log.error("the dev chain did not start; paid compute is off", error=str(exc))
        return None


def _setup(
    config: Config, identity: NodeIdentity, w3: Web3, chain_id: int, escrow_address: str, escrow_kind: str
) -> ChainSetup:
    """The node's client of the escrow at ``escrow_address`` (of ``escrow_kind``) and its settings."""
    chain = config.chain
    client = ChainClient(
        w3,
        identity.private_key,
        receipt_timeout=chain.receipt_timeout_seconds,
        confirmations=chain.confirmations,
    )
    settings = PaymentSettings(
        chain_id=chain_id,
        tokens=tuple(t.lower() for t in chain.tokens),
        claim_margin_seconds=chain.claim_margin_seconds,
        retry_max_seconds=chain.retry_max_seconds,
        withdraw_earnings=chain.withdraw_earnings,
        sweep_interval_seconds=chain.sweep_interval_seconds,
        receipt_timeout_seconds=chain.receipt_timeout_seconds,
        claim_batch_size=chain.claim_batch_size,
        escrow_kind=escrow_kind,
    )
    return ChainSetup(escrow_client(escrow_kind, client, escrow_address), settings)


def _check_escrow_at_start(escrow: EscrowClient, kind: str) -> None:
    """Another escrow than configured stops the node, as another chain does; a chain that stops
    answering now is left to the payment loop, which checks again before its first lock."""
    try:
        check_escrow_kind(escrow, kind)
    except ChainError as exc:
        if exc.kind == E.CHAIN_MISMATCH:
            raise
        log.warning("could not check the escrow at start", escrow=escrow.address, error=exc.message)


def _dev_setup(config: Config, identity: NodeIdentity, prefer: str) -> ChainSetup:
    dev = start_dev_chain(prefer, port=config.chain.dev_port)
    try:
        dev.fund(identity.address)
        # the dev chain deploys this project's escrow, whatever [chain] escrow_kind says
        setup = _setup(config, identity, dev.w3, dev.chain_id, dev.escrow_address, "c2d")
        if dev.rpc_url is None:
            _prepay(dev, identity.address)
    except BaseException:
        dev.stop()
        raise
    setup.dev = dev
    info = write_dev_chain_file(config.data_dir, dev)
    log.info(
        "dev chain started (test tokens only)",
        backend=dev.backend,
        rpc=dev.rpc_url or "in process only",
        chain_id=dev.chain_id,
        escrow=dev.escrow_address,
        token=dev.token_address,
        consumer=dev.consumer.address,
        file=str(info),
    )
    return setup


def _prepay(dev: DevChain, node_address: str) -> None:
    """An in-process chain has no RPC for ``c2d escrow``: deposit and authorize for the consumer."""
    escrow = dev.escrow(dev.consumer.private_key)
    escrow.deposit(dev.token_address, DEV_PREPAID)
    escrow.authorize(dev.token_address, node_address, DEV_PREPAID, 7 * 24 * 3600, 100)


def write_dev_chain_file(data_dir: Path, dev: DevChain) -> Path:
    """What a newcomer needs to pay on the dev chain, and the funded consumer's key file (both 0600)."""
    path = data_dir / DEV_CHAIN_FILE
    doc = {
        "backend": dev.backend,
        "rpc_url": dev.rpc_url,
        "chain_id": dev.chain_id,
        "escrow_address": dev.escrow_address,
        "token_address": dev.token_address,
        "consumer_address": dev.consumer.address,
        "consumer_private_key": dev.consumer.private_key,
        "note": "a local development chain: its tokens are worthless and it is gone when the node stops",
    }
    _write_private(path, json.dumps(doc, indent=2) + "\n")
    _write_private(data_dir / DEV_CONSUMER_KEY_FILE, dev.consumer.private_key + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def dev_fees(env: common_pb2.Environment, chain_id: int, token: str, escrow: str) -> common_pb2.ChainFees:
    """A dev chain's prices for an environment that has none configured."""
    return common_pb2.ChainFees(
        chain_id=chain_id,
        token_address=token,
        token_symbol="C2DT",
        token_decimals=18,
        escrow_address=escrow,
        prices=[
            common_pb2.ResourcePrice(
                resource_id=r.id, price_per_unit_minute=str(DEV_PRICES.get(r.id, DEV_DEFAULT_PRICE))
            )
            for r in env.resources
        ],
    )
