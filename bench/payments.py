"""What paying costs: a paid start and its claim against a free start of the same workflow.

    python bench/payments.py [--runs 10]

One node process on the stub engine, one anvil dev chain over JSON-RPC.
Each run starts the same one-stage workflow twice, free then paid, and times
StartCompute (the paid one checks funds, locks and awaits the receipt) and,
for the paid one, the time from the workflow's end to its settled claim.
Prints medians and the paid/free ratio of StartCompute measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from paidnode import ENV, fund_node, new_consumer, payment, stage, stub_env  # noqa: E402

from c2d.client import Client  # noqa: E402
from c2d.compute.v1 import compute_pb2  # noqa: E402
from host.chain.devchain import start_dev_chain  # noqa: E402
from nodeproc import running_node, wait_for  # noqa: E402

SETTLED = {compute_pb2.PAYMENT_STATUS_CLAIMED, compute_pb2.PAYMENT_STATUS_RELEASED}


def workflow() -> dict:
    return {"environment": ENV, "stages": [stage(0, "true")]}


def run(runs: int) -> None:
    with start_dev_chain("anvil") as chain, tempfile.TemporaryDirectory() as tmp:
        env = stub_env(chain)
        env[f"C2D_ENVIRONMENTS__{ENV.upper()}__FREE"] = "{enabled = true}"
        with running_node(Path(tmp) / "node", env=env) as node:
            node.wait_environment(ENV)
            consumer = new_consumer(chain, fund_node(chain, node.node_key()))
            free_ms, paid_ms, claim_ms = [], [], []
            with Client(node.address, consumer.key) as client:
                for _ in range(runs):
                    t0 = time.perf_counter()
                    started = client.start(workflow(), free=True)
                    free_ms.append((time.perf_counter() - t0) * 1000)
                    client.wait(started.workflow_id, timeout=60)

                    t0 = time.perf_counter()
                    started = client.start(workflow(), payment=payment(chain))
                    paid_ms.append((time.perf_counter() - t0) * 1000)
                    client.wait(started.workflow_id, timeout=60, poll=0.02)
                    ended = time.perf_counter()
                    wait_for(
                        lambda wid=started.workflow_id: (
                            client.status(workflow_id=wid)[0].payment.status in SETTLED
                        ),
                        60,
                        "the claim",
                        interval=0.02,
                    )
                    claim_ms.append((time.perf_counter() - ended) * 1000)
    free, paid, claim = (statistics.median(x) for x in (free_ms, paid_ms, claim_ms))
    print(f"backend {chain.backend}, {runs} runs, medians:")
    print(f"  free StartCompute      {free:8.1f} ms")
    print(f"  paid StartCompute      {paid:8.1f} ms   ratio paid/free {paid / free:.2f}x")
    print(f"  end of workflow -> claim settled {claim:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    run(args.runs)


if __name__ == "__main__":
    main()
