"""What claiming in batches saves: paid workflows settling at once, batched against one claim each.

    python bench/claims.py [--workflows 50] [--batch 20]

One anvil dev chain over JSON-RPC; for each setting a node process of its own on the stub
engine, with ``[chain] claim_batch_size`` at ``--batch`` and then at 1 (one claim transaction
per workflow: the baseline, measured in the same run). The workflows queue behind a workflow
that holds every runner; the chain stops mining, the blocker is stopped and every workflow runs
and ends; then the chain mines again and the node settles them all (tests/paidnode.Settling).

Counted from the chain, not from the node: claim transactions are the escrow's ``Claimed``
events grouped by transaction hash, gas is the sum of those transactions' ``gasUsed``; the
payments counted are the workflows' and the blocker's. Also timed: from the chain mining
again to the last payment settled. Each lock is checked to be claimed exactly once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from eth_typing import HexStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from paidnode import ENV, Settling, events_by_tx, fund_node, node_env  # noqa: E402

from host.chain.devchain import DevChain, start_dev_chain  # noqa: E402
from nodeproc import running_node  # noqa: E402


@dataclass(frozen=True)
class Figures:
    batch: int
    payments: int
    transactions: int
    gas: int
    largest: int  # locks in the largest claim transaction
    settle_seconds: float

    @property
    def gas_per_payment(self) -> float:
        return self.gas / self.payments


def measure(chain: DevChain, tmp: Path, workflows: int, batch: int) -> Figures:
    env = node_env(chain, C2D_CHAIN__CLAIM_BATCH_SIZE=str(batch))
    with running_node(tmp / f"node-batch-{batch}", env=env) as node:
        node.wait_environment(ENV)
        fund_node(chain, node.node_key())
        settling = Settling(node, chain, workflows)
        try:
            settling.release_while_not_mining()
            t0 = time.perf_counter()
            settling.mine_again()
            settling.payments(node)
            seconds = time.perf_counter() - t0
        finally:
            settling.close()
    ids = [*settling.lock_ids, settling.blocker_lock_id]
    txs = events_by_tx(chain, "Claimed", ids)
    claims = Counter(lock for locks in txs.values() for lock in locks)
    if claims != Counter(ids):
        raise SystemExit(f"batch {batch}: some lock was not claimed exactly once: {claims}")
    gas = sum(int(chain.w3.eth.get_transaction_receipt(HexStr(tx))["gasUsed"]) for tx in txs)
    largest = max(len(locks) for locks in txs.values())
    return Figures(batch, len(ids), len(txs), gas, largest, seconds)


def show(f: Figures, label: str) -> str:
    return (
        f"  {label:<24} {f.transactions:>9} {f.largest:>9} {f.gas:>12,} {f.gas_per_payment:>12,.0f}"
        f" {f.settle_seconds:>10.2f} s"
    )


def run(workflows: int, batch: int) -> None:
    with start_dev_chain("anvil") as chain, tempfile.TemporaryDirectory() as tmp:
        if chain.backend != "anvil":
            raise SystemExit("bench/claims.py needs anvil (npm ci), to hold the chain's mining")
        batched = measure(chain, Path(tmp), workflows, batch)
        baseline = measure(chain, Path(tmp), workflows, 1)
    print(f"{workflows} paid workflows (+1 holding the runners) settling at once, {chain.backend}:")
    print(f"  {'':<24} {'claim txs':>9} {'largest':>9} {'gas':>12} {'gas/payment':>12} {'settled in':>12}")
    print(show(batched, f"batched ({batch} per tx)"))
    print(show(baseline, "one claim per workflow"))
    print(
        f"  batched / one each: transactions {batched.transactions / baseline.transactions:.2f}x, "
        f"gas {batched.gas / baseline.gas:.2f}x, time to settle "
        f"{batched.settle_seconds / baseline.settle_seconds:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20, help="claim_batch_size of the batched node")
    args = parser.parse_args()
    run(args.workflows, args.batch)


if __name__ == "__main__":
    main()
