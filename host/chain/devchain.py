"""A local development chain with the escrow and a test token deployed, and a funded consumer.

``start_dev_chain()`` runs anvil (over JSON-RPC, on a free local port) when its binary is found,
else an in-process py-evm chain (``web3[tester]``). Keys are fixed (derived from labels), so a
newcomer's consumer address is the same on every run and on both backends. Not for real money.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.testing import Testing
from web3.types import RPCEndpoint, Wei

from c2d.chain.client import ChainClient, EscrowClient
from c2d.chain.errors import ChainError

ANVIL_CHAIN_ID = 31337
REPO_ROOT = Path(__file__).resolve().parents[2]
ANVIL_IN_REPO = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

ETHER = 10**18
CONSUMER_TOKENS = 1_000 * ETHER  # test tokens minted to the consumer
FUND_ETH = 10 * ETHER  # gas money for each dev account (the deployer gets 100x, to fund others)


def dev_key(label: str) -> str:
    """A fixed private key for a dev-chain role ("deployer", "consumer", "node", ...)."""
    return "0x" + keccak(text=f"c2d-dev-chain:{label}").hex()


def find_anvil() -> str | None:
    """The anvil binary: $C2D_ANVIL, the repo's node_modules, or anvil on PATH."""
    for cand in (os.environ.get("C2D_ANVIL"), str(ANVIL_IN_REPO), shutil.which("anvil")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DevAccount:
    private_key: str
    address: str

    @classmethod
    def from_label(cls, label: str) -> DevAccount:
        key = dev_key(label)
        return cls(key, Account.from_key(key).address)


@dataclass
class DevChain:
    w3: Web3
    rpc_url: str | None  # None: in process (py-evm)
    chain_id: int
    backend: str  # "anvil" | "py-evm"
    token_address: str
    escrow_address: str
    deployer: DevAccount
    consumer: DevAccount
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def deployer_key(self) -> str:
        return self.deployer.private_key

    def fund(self, address: str, wei: int = FUND_ETH, tokens: int = 0) -> None:
        """Sends gas money (and mints test tokens) to ``address``, e.g. the node's key."""
        chain = ChainClient(self.w3, self.deployer.private_key)
        if wei:
            chain.transfer_eth(address, wei)
        if tokens:
            from c2d.chain import test_token_abi

            token = chain.contract(self.token_address, test_token_abi())
            chain.transact(token.functions.mint(Web3.to_checksum_address(address), tokens))

    def escrow(self, private_key: str) -> EscrowClient:
        """An EscrowClient sending as ``private_key``."""
        return EscrowClient(ChainClient(self.w3, private_key), self.escrow_address)

    def advance_time(self, seconds: int) -> None:
        """Moves the chain's clock forward and mines a block."""
        if self.backend == "anvil":
            self.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [int(seconds)])
            self.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
        else:
            # web3 attaches this module as w3.testing at run time, but Web3's hints omit it.
            testing = Testing(self.w3)
            ts = self.w3.eth.get_block("latest")["timestamp"]
            testing.timeTravel(int(ts) + int(seconds))
            testing.mine()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork: the child only calls it


def _die_with_starter(starter: int) -> None:
    """In anvil's child before exec: SIGKILL when the thread that started it dies, a SIGKILLed node
    included, so no dev chain outlives its node (its own stop() handles orderly shutdowns). If the
    starter is already gone, exit at once rather than run unowned."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != starter:
        os._exit(1)


def _start_anvil(
    binary: str, timeout: float = 10.0, port: int | None = None
) -> tuple[Web3, str, subprocess.Popen]:
    last: Exception | None = None
    for attempt in range(3):  # the free port can be taken between probing and binding
        port = port if attempt == 0 and port and port_is_free(port) else free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain-id",
                str(ANVIL_CHAIN_ID),
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=functools.partial(_die_with_starter, os.getpid()),
        )
        url = f"http://127.0.0.1:{port}"
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 5}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if w3.eth.chain_id == ANVIL_CHAIN_ID:
                    return w3, url, proc
            except Exception as exc:  # not listening yet
                last = exc
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        code = proc.wait(timeout=5)
        last = RuntimeError(f"anvil exited with {code}") if last is None else last
    raise ChainError("unreachable", f"could not start anvil: {last}", retryable=False)


def _start_py_evm() -> Web3:
    from web3 import EthereumTesterProvider

    class SerializedTesterProvider(EthereumTesterProvider):
        """py-evm is not thread-safe: the node's chain thread and a test's may call it at once."""

        _lock = threading.RLock()

        def make_request(self, method: Any, params: Any) -> Any:
            with self._lock:
                return super().make_request(method, params)

    return Web3(SerializedTesterProvider())


def start_dev_chain(
    prefer: str = "anvil", *, consumer_tokens: int = CONSUMER_TOKENS, port: int | None = None
) -> DevChain:
    """Starts a dev chain and deploys TestToken and Escrow; the consumer gets ETH and tokens.

    ``prefer="anvil"`` uses anvil when its binary is found, else py-evm; ``"py-evm"`` always
    runs in process. anvil listens on ``port`` when it is free, else on any free port.
    Stop it with ``.stop()`` (or use it as a context manager).
    """
    from c2d.chain import load_artifact

    if prefer not in ("anvil", "py-evm"):
        raise ValueError(f"prefer must be 'anvil' or 'py-evm', not {prefer!r}")
    binary = find_anvil() if prefer == "anvil" else None
    proc = None
    if binary:
        w3, rpc_url, proc = _start_anvil(binary, port=port)
        backend = "anvil"
    else:
        w3, rpc_url, backend = _start_py_evm(), None, "py-evm"
    try:
        deployer = DevAccount.from_label("deployer")
        consumer = DevAccount.from_label("consumer")
        # both backends start with unlocked, funded accounts: pay the fixed-key accounts from them
        rich = w3.eth.accounts[0]
        for acct, value in ((deployer, 100 * FUND_ETH), (consumer, FUND_ETH)):
            tx = w3.eth.send_transaction({"from": rich, "to": acct.address, "value": Wei(value)})
            w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        chain = ChainClient(w3, deployer.private_key)
        token_art, escrow_art = load_artifact("TestToken"), load_artifact("Escrow")
        token = chain.deploy(token_art["abi"], token_art["bytecode"], "C2D Test Token", "C2DT")
        escrow = chain.deploy(escrow_art["abi"], escrow_art["bytecode"])
        erc20 = chain.contract(token, token_art["abi"])
        chain.transact(erc20.functions.mint(consumer.address, consumer_tokens))
        return DevChain(
            w3=w3,
            rpc_url=rpc_url,
            chain_id=int(w3.eth.chain_id),
            backend=backend,
            token_address=token,
            escrow_address=escrow,
            deployer=deployer,
            consumer=consumer,
            _proc=proc,
        )
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        raise
