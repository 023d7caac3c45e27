"""Helpers for paid-compute tests: a dev chain, consumers with escrow funds, nodes pricing the stub.

The chain outlives the nodes (so a node can be SIGKILLed and restarted against
the same escrow). Nodes run as subprocesses over anvil's JSON-RPC, or in this
process on py-evm (:class:`InProcessNode`), the chain object shared with the test.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c2d import auth, billing
from c2d.chain.client import EscrowClient, job_id_to_uint
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.chain.devchain import ETHER, DevChain
from host.config import load_config
from host.node import run_node
from nodeproc import NodeProcess, free_port, wait_for

ENV = "stub-paid"
PRICES = {"cpu": "1000", "ram": "100", "disk": "10"}  # token base units per unit-minute
DEPOSIT = 10**9


def stub_env(
    chain: DevChain, *, rpc_url: str | None = None, prices: dict[str, str] | None = None
) -> dict[str, str]:
    """C2D_* variables for a node on ``chain`` whose stub environment is priced in its test token."""
    prices = ", ".join(
        f'{{resource_id = "{r}", price_per_unit_minute = "{p}"}}' for r, p in (prices or PRICES).items()
    )
    fees = f'[{{chain_id = {chain.chain_id}, token_address = "{chain.token_address}", prices = [{prices}]}}]'
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]',
        f"C2D_ENVIRONMENTS__{ENV.upper()}__FEES": fees,
        f"C2D_ENVIRONMENTS__{ENV.upper()}__FREE": "{enabled = false}",
        "C2D_CHAIN__ESCROW_ADDRESS": chain.escrow_address,
        "C2D_CHAIN__CHAIN_ID": str(chain.chain_id),
        "C2D_CHAIN__RETRY_MAX_SECONDS": "1",
        "C2D_CHAIN__DEV": "off",
    }
    if rpc_url or chain.rpc_url:
        env["C2D_CHAIN__RPC_URL"] = rpc_url or chain.rpc_url  # type: ignore[assignment]
    return env


@dataclass
class Consumer:
    key: str
    address: str
    escrow: EscrowClient

    def funds(self, chain: DevChain) -> tuple[int, int]:
        f = self.escrow.get_user_funds(self.address, chain.token_address)
        return f.available, f.locked


def new_consumer(
    chain: DevChain,
    payee: str | None,
    *,
    deposit: int = DEPOSIT,
    max_amount: int = DEPOSIT,
    max_seconds: int = 100_000,
    max_locks: int = 10,
) -> Consumer:
    """A consumer with gas, test tokens, ``deposit`` in the escrow and (with a payee) an authorization."""
    key = auth.new_private_key()
    address = auth.address_of(key)
    chain.fund(address, tokens=deposit or 1)
    escrow = chain.escrow(key)
    if deposit:
        escrow.deposit(chain.token_address, deposit)
    if payee:
        escrow.authorize(chain.token_address, payee, max_amount, max_seconds, max_locks)
    return Consumer(key, address, escrow)


def fund_node(chain: DevChain, node_key: str) -> str:
    """Gives the node's key gas money; returns its address."""
    address = auth.address_of(node_key)
    chain.fund(address, wei=ETHER)
    return address


def payment(chain: DevChain) -> compute_pb2.Payment:
    return compute_pb2.Payment(chain_id=chain.chain_id, token_address=chain.token_address)


STUB_IMAGE = "busybox:1"  # the stub engine runs no image: any name will do


def stage(
    index: int,
    script: str,
    *,
    after: list[int] | None = None,
    minutes: int = 3,
    image: str = STUB_IMAGE,
) -> dict[str, Any]:
    """A stage running ``script`` with sh in ``image`` (NAME:TAG; the Docker tests give a local one)."""
    name, _, tag = image.partition(":")
    return {
        "index": index,
        "runAfter": after,
        "maxJobDuration": minutes * 60,
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "sh $ALGO", "image": name, "tag": tag},
        },
    }


def two_stages(first: str = "echo one", second: str = "echo two") -> dict[str, Any]:
    return {"environment": ENV, "stages": [stage(0, first), stage(1, second, after=[0])]}


def per_minute(quote: compute_pb2.EscrowQuote, stage_index: int) -> int:
    """What one minute of a stage costs at the quote's prices."""
    return sum(
        billing.line_cost(line.amount, line.price_per_unit_minute, 1)
        for line in quote.breakdown
        if line.stage_index == stage_index
    )


def claimed_events(chain: DevChain, workflow_id: str) -> list[Any]:
    """Every Claimed event of the escrow for this workflow's lock: a claim made twice shows here."""
    contract = chain.escrow(chain.deployer_key).contract
    lock_id = job_id_to_uint(workflow_id)
    return [e for e in contract.events.Claimed.get_logs(from_block=0) if int(e["args"]["jobId"]) == lock_id]


def wait_payment(client: Client, workflow_id: str, statuses: set[int], timeout: float = 60) -> Any:
    def settled() -> Any:
        job = client.status(workflow_id=workflow_id)[0]
        return job.payment if job.payment.status in statuses else None

    return wait_for(settled, timeout, f"payment of {workflow_id} in {statuses}")


class InProcessNode:
    """``run_node`` on a thread of this process, settling on an in-process chain (py-evm)."""

    def __init__(self, data_dir: Path, chain: DevChain, env: dict[str, str]) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.data_dir = data_dir
        environ = {
            "C2D_METRICS__LISTEN": "127.0.0.1:0",
            "C2D_HTTP__LISTEN": "127.0.0.1:0",
            **env,
            "C2D_PODS__LISTEN": f"127.0.0.1:{free_port()}",
        }
        self.config = load_config(
            environ=environ, overrides={"node.data_dir": str(data_dir), "node.listen": self.address}
        )
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(chain,), daemon=True)
        self._thread.start()

    def _main(self, chain: DevChain) -> None:
        try:
            self._loop.run_until_complete(run_node(self.config, self._stop, web3=chain.w3))
        except BaseException as exc:
            self._error = exc

    def node_key(self) -> str:
        path = self.data_dir / "node_key"
        wait_for(path.exists, 30, "the node key")
        return path.read_text().strip()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        if self._error is not None:
            raise self._error


@contextmanager
def in_process_node(data_dir: Path, chain: DevChain, env: dict[str, str]) -> Iterator[InProcessNode]:
    node = InProcessNode(data_dir, chain, env)
    try:
        yield node
    finally:
        node.stop()


# -- many payments settling together (tests/test_payment_batches.py, bench/claims.py) ----------

RUNNERS = 4  # stages the environment runs at once: the blocker holds them all
SETTLED = {compute_pb2.PAYMENT_STATUS_CLAIMED, compute_pb2.PAYMENT_STATUS_RELEASED}
FINISHED = common_pb2.JOB_STATUS_FINISHED
RUNNING = common_pb2.JOB_STATUS_RUNNING


def node_env(chain: DevChain, **extra: str) -> dict[str, str]:
    size = f"cpu = {RUNNERS}, ram_gib = {RUNNERS}, disk_gib = {RUNNERS}, max_jobs = {RUNNERS}"
    return {
        **stub_env(chain),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", {size}}}]',
        # the stub's machine pool is this machine's (maybe fewer cores than RUNNERS): offer RUNNERS
        "C2D_ENGINES__EXTERNAL_STUB__POOL_CPU": str(RUNNERS),
        # while the test holds the chain's mining, the claim in flight waits for its receipt
        "C2D_CHAIN__RECEIPT_TIMEOUT_SECONDS": "900",
        **extra,
    }


def rpc(chain: DevChain, method: str, *params: Any) -> Any:
    return chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def events_by_tx(chain: DevChain, name: str, job_ids: list[int]) -> dict[str, list[int]]:
    """The escrow's ``name`` events for these locks, as transaction hash -> lock ids."""
    contract = chain.escrow(chain.deployer_key).contract
    wanted = {job_id_to_uint(j) for j in job_ids}
    txs: dict[str, list[int]] = {}
    for event in getattr(contract.events, name).get_logs(from_block=0):
        if int(event["args"]["jobId"]) in wanted:
            txs.setdefault("0x" + bytes(event["transactionHash"]).hex(), []).append(
                int(event["args"]["jobId"])
            )
    return txs


class Settling:
    """Paid workflows queued behind a blocker that holds every runner, so that they all end together.

    With the chain not mining, the first claim sent waits for its receipt and every workflow
    that ends meanwhile is ready at the next pass: "many payments ready at once", by
    construction rather than by timing.
    """

    def __init__(
        self,
        node: NodeProcess,
        chain: DevChain,
        workflows: int,
        per_consumer: int = 10,
        *,
        env: str = ENV,
        runners: int = RUNNERS,
        image: str = STUB_IMAGE,
    ) -> None:
        """``runners``: the stages ``env`` runs at once (the blocker has one for each)."""
        self.node, self.chain = node, chain
        payee = auth.address_of(node.node_key())
        owner = new_consumer(chain, payee)
        self.blocker_client = Client(node.address, owner.key)
        blocker = {"environment": env, "stages": [stage(i, "sleep 600", image=image) for i in range(runners)]}
        self.blocker = self.blocker_client.start(blocker, payment=payment(chain))
        wait_for(
            lambda: all(
                j.status == RUNNING for j in self.status(self.blocker_client, self.blocker.workflow_id)
            ),
            60,
            "the blocker running",
        )
        self.consumers = [
            new_consumer(chain, payee, max_locks=per_consumer) for _ in range(-(-workflows // per_consumer))
        ]
        self.clients = [Client(node.address, c.key) for c in self.consumers]
        self.started: list[tuple[int, Any]] = []  # (consumer index, StartCompute answer)
        for n in range(workflows):
            which = n // per_consumer
            one = {"environment": env, "stages": [stage(0, f"echo {n}", image=image)]}
            self.started.append((which, self.clients[which].start(one, payment=payment(chain))))

    @staticmethod
    def status(client: Client, workflow_id: str) -> list[Any]:
        return client.status(workflow_id=workflow_id)

    @property
    def lock_ids(self) -> list[int]:
        """The locks of the workflows that settle together (not the blocker's)."""
        return [job_id_to_uint(s.workflow_id) for _, s in self.started]

    @property
    def blocker_lock_id(self) -> int:
        return job_id_to_uint(self.blocker.workflow_id)

    def release_while_not_mining(self) -> None:
        rpc(self.chain, "evm_setAutomine", False)
        self.blocker_client.stop(workflow_id=self.blocker.workflow_id)
        for which, started in self.started:
            wait_for(
                lambda c=self.clients[which], w=started.workflow_id: all(
                    j.terminal for j in self.status(c, w)
                ),
                300,
                f"workflow {started.workflow_id} ended",
            )

    def mine_again(self) -> None:
        rpc(self.chain, "evm_setAutomine", True)
        rpc(self.chain, "evm_mine")

    def payments(self, node: NodeProcess) -> list[Any]:
        out = []
        for which, started in self.started:
            with Client(node.address, self.consumers[which].key) as client:
                out.append(wait_payment(client, started.workflow_id, SETTLED, timeout=120))
        return out

    def close(self) -> None:
        for client in [self.blocker_client, *self.clients]:
            client.close()


def assert_each_claimed_once(chain: DevChain, settling: Settling, paid: list[Any]) -> dict[str, list[int]]:
    """Each settling lock claimed exactly once, in the transaction its payment names, the
    consumers charged what was claimed; returns the claim transactions (hash -> lock ids)."""
    txs = events_by_tx(chain, "Claimed", settling.lock_ids)
    per_lock = Counter(j for js in txs.values() for j in js)
    assert per_lock == Counter(settling.lock_ids), "a lock claimed twice, or not at all"
    by_lock = {j: tx for tx, js in txs.items() for j in js}
    for lock_id, state in zip(settling.lock_ids, paid, strict=True):
        assert state.status == compute_pb2.PAYMENT_STATUS_CLAIMED and int(state.claimed_amount) > 0
        assert state.claim_transaction == by_lock[lock_id]
    spent = Counter[int]()
    for (which, _), state in zip(settling.started, paid, strict=True):
        spent[which] += int(state.claimed_amount)
    for which, consumer in enumerate(settling.consumers):
        assert consumer.funds(chain) == (DEPOSIT - spent[which], 0)
    return txs
