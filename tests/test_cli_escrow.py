"""``c2d escrow ...`` and the paid ``c2d start`` against a real chain (anvil over JSON-RPC).

The chain is anvil with the escrow and test token deployed (``start_dev_chain("anvil")``); the
node is a small in-test ComputeService that offers fees on that chain, names its address in
quotes, and on a paid start really locks the quoted amount in the escrow with its own key, so
the CLI's view of balances, authorizations and locks is checked against what happened on chain.
Each test pays from a fresh consumer account, so balances are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from oceanescrow import deploy_ocean_escrow

from c2d.chain.client import EscrowClient, job_id_to_uint
from c2d.chain.errors import ChainError
from c2d.cli import main
from c2d.cli.payment import parse_amount
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from c2d.units import format_units
from host.chain.devchain import ETHER, DevAccount, DevChain, find_anvil, start_dev_chain

IN_CI = bool(os.environ.get("CI"))
NODE = DevAccount.from_label("escrow-cli-node")
PRICE = "1000000000000000"  # base units per cpu-minute: 0.001 C2DT
WALLET = 100 * ETHER


@pytest.fixture(scope="module")
def dev() -> Iterator[DevChain]:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil binary missing: npm install (devDependency @foundry-rs/anvil)")
        pytest.skip("anvil not installed (npm install)")
    chain = start_dev_chain("anvil")
    chain.fund(NODE.address)
    try:
        yield chain
    finally:
        chain.stop()


def fees(dev: DevChain, token: str | None = None, symbol: str = "C2DT") -> common_pb2.ChainFees:
    return common_pb2.ChainFees(
        chain_id=dev.chain_id,
        token_address=(token or dev.token_address).lower(),
        token_symbol=symbol,
        token_decimals=18,
        escrow_address=dev.escrow_address.lower(),
        payee_address=NODE.address.lower(),
        prices=[common_pb2.ResourcePrice(resource_id="cpu", price_per_unit_minute=PRICE)],
    )


class PaidNode(compute_pb2_grpc.ComputeServiceServicer):
    """Offers ``fees``; quotes 1 cpu x the workflow's minutes; a paid start locks the quote on chain."""

    def __init__(self, dev: DevChain) -> None:
        self.dev = dev
        self.fees = [fees(dev)]
        self.escrow: EscrowClient = dev.escrow(NODE.private_key)
        self.lock = threading.Lock()
        self.started = 0

    def GetEnvironments(self, request: Any, context: grpc.ServicerContext) -> Any:
        env = common_pb2.Environment(
            id="paid-env",
            engine="stub",
            resources=[common_pb2.Resource(id="cpu", total=4, min=1, max=4)],
            fees=self.fees,
            max_job_duration_seconds=3600,
        )
        return compute_pb2.GetEnvironmentsResponse(environments=[env])

    def _quote(self, request: Any) -> compute_pb2.EscrowQuote:
        minutes = max(1, (request.workflow.max_duration_seconds or 60) // 60)
        lines = [
            compute_pb2.PriceLine(
                stage_index=stage.index,
                resource_id="cpu",
                amount=1,
                minutes=minutes,
                price_per_unit_minute=PRICE,
                cost=str(int(PRICE) * minutes),
            )
            for stage in request.workflow.stages
        ]
        return compute_pb2.EscrowQuote(
            chain_id=request.payment.chain_id,
            escrow_address=self.dev.escrow_address.lower(),
            payee=NODE.address.lower(),
            token_address=request.payment.token_address,
            amount=str(sum(int(line.cost) for line in lines)),
            min_lock_seconds=minutes * 60 * len(lines) + 600,
            breakdown=lines,
        )

    def InitializeCompute(self, request: Any, context: grpc.ServicerContext) -> Any:
        quote = self._quote(request) if request.HasField("payment") else None
        return compute_pb2.InitializeComputeResponse(quote=quote)

    def StartCompute(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.started += 1
            workflow_id = f"paid-wf-{self.started}"
        quote = self._quote(request)
        payer = request.auth.address
        try:
            receipt = self.escrow.create_lock(
                workflow_id, quote.token_address, payer, int(quote.amount), quote.min_lock_seconds
            )
        except ChainError as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"lock failed: {err.reason or err.message}")
        payment = compute_pb2.PaymentState(
            status=compute_pb2.PAYMENT_STATUS_LOCKED,
            chain_id=quote.chain_id,
            token_address=quote.token_address,
            escrow_address=quote.escrow_address,
            locked_amount=quote.amount,
            lock_id=str(job_id_to_uint(workflow_id)),
            lock_transaction="0x" + bytes(receipt["transactionHash"]).hex(),
        )
        stages = [
            compute_pb2.StageRef(index=s.index, job_id=f"{workflow_id}-{s.index}")
            for s in request.workflow.stages
        ]
        return compute_pb2.StartComputeResponse(
            workflow_id=workflow_id, stages=stages, quote=quote, payment=payment
        )


@pytest.fixture(scope="module")
def paid_node(dev: DevChain) -> Iterator[tuple[PaidNode, str]]:
    servicer = PaidNode(dev)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    compute_pb2_grpc.add_ComputeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


@dataclass
class Consumer:
    account: DevAccount
    key_file: Path
    escrow: EscrowClient


@pytest.fixture
def consumer(dev: DevChain, paid_node: tuple[PaidNode, str], tmp_path: Path, request: Any) -> Consumer:
    """A fresh account with gas money and WALLET test tokens; the node offers its default fees."""
    paid_node[0].fees = [fees(dev)]
    account = DevAccount.from_label(f"escrow-cli:{request.node.name}")
    dev.fund(account.address, tokens=WALLET)
    key_file = tmp_path / "me.key"
    key_file.write_text(account.private_key + "\n")
    return Consumer(account, key_file, dev.escrow(account.private_key))


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("C2D_NODE", "C2D_KEY_FILE", "C2D_RPC_URL"):
        monkeypatch.delenv(name, raising=False)


def c2d(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli(
    capsys: pytest.CaptureFixture[str], dev: DevChain, node: str, me: Consumer, *argv: str
) -> tuple[int, Any, str]:
    """Runs an escrow command with --json against the node and the chain; parses stdout."""
    code, out, err = c2d(
        capsys, "--node", node, "--key-file", str(me.key_file), "--json", *argv, "--rpc", str(dev.rpc_url)
    )
    return code, (json.loads(out) if out.strip() else None), err


def one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------ deposit, authorize, balance, withdraw


def test_deposit_authorize_balance_withdraw_exact(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], consumer: Consumer
) -> None:
    node = paid_node[1]
    me, token = consumer.account.address, dev.token_address

    code, doc, err = cli(capsys, dev, node, consumer, "escrow", "deposit", "1.5")
    assert code == 0, err
    assert doc["deposited"] == str(15 * 10**17) and doc["available"] == str(15 * 10**17)
    assert (doc["escrow"], doc["token"], doc["chain_id"]) == (dev.escrow_address, token, dev.chain_id)
    assert consumer.escrow.balance_of(token, me) == WALLET - 15 * 10**17

    # the payee defaults to the node's address, as its environments' fees name it
    code, doc, err = cli(
        capsys, dev, node, consumer, "escrow", "authorize", "--max-amount", "1", "--max-seconds", "7200"
    )
    assert code == 0, err
    assert doc["payee"].lower() == NODE.address.lower()
    auth = consumer.escrow.get_authorization(token, me, NODE.address)
    assert auth is not None
    assert (auth.max_locked_amount, auth.max_lock_seconds, auth.max_lock_counts) == (ETHER, 7200, 10)

    code, doc, err = cli(capsys, dev, node, consumer, "escrow", "withdraw", "0.25")
    assert code == 0, err
    assert doc["withdrawn"] == str(25 * 10**16)

    code, doc, err = cli(capsys, dev, node, consumer, "escrow", "balance")
    assert code == 0, err
    assert doc["wallet"] == str(WALLET - 125 * 10**16)
    assert (doc["available"], doc["locked"]) == (str(125 * 10**16), "0")
    assert doc["authorizations"] == [
        {
            "payee": NODE.address,
            "max_locked_amount": str(ETHER),
            "current_locked_amount": "0",
            "max_lock_seconds": 7200,
            "max_lock_counts": 10,
            "current_locks": 0,
        }
    ]
    assert doc["locks"] == []
    funds = consumer.escrow.get_user_funds(me, token)
    assert (funds.available, funds.locked) == (125 * 10**16, 0)

    code, doc, err = cli(capsys, dev, node, consumer, "escrow", "withdraw", "all")
    assert code == 0, err
    assert doc["withdrawn"] == str(125 * 10**16) and doc["wallet"] == str(WALLET)


def test_text_output_of_balance(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], consumer: Consumer
) -> None:
    consumer.escrow.deposit(dev.token_address, 2 * ETHER)
    consumer.escrow.authorize(dev.token_address, NODE.address, ETHER, 3600, 3)
    base = ["--node", paid_node[1], "--key-file", str(consumer.key_file)]
    code, out, err = c2d(capsys, *base, "escrow", "balance", "--rpc", str(dev.rpc_url))
    assert code == 0, err
    assert f"account: {consumer.account.address} on chain {dev.chain_id}" in out
    assert "wallet: 98 C2DT" in out
    assert "2 C2DT available, 0 C2DT locked" in out
    assert NODE.address in out and "3600" in out


def test_explicit_escrow_needs_no_node(
    capsys: pytest.CaptureFixture[str], dev: DevChain, consumer: Consumer
) -> None:
    chain = ["--rpc", str(dev.rpc_url), "--token", dev.token_address, "--escrow", dev.escrow_address]
    base = ["--node", "127.0.0.1:1", "--key-file", str(consumer.key_file), "--json"]
    code, _, err = c2d(capsys, *base, "escrow", "deposit", "--base-units", "123", *chain)
    assert code == 0, err
    code, _, err = c2d(
        capsys,
        *base,
        "escrow",
        "authorize",
        "--max-amount",
        "100",
        "--base-units",
        "--payee",
        NODE.address,
        *chain,
    )
    assert code == 0, err
    funds = consumer.escrow.get_user_funds(consumer.account.address, dev.token_address)
    assert (funds.available, funds.locked) == (123, 0)
    auth = consumer.escrow.get_authorization(dev.token_address, consumer.account.address, NODE.address)
    assert auth is not None and auth.max_locked_amount == 100


def test_the_escrow_commands_work_on_oceans_escrow(
    capsys: pytest.CaptureFixture[str], dev: DevChain, consumer: Consumer
) -> None:
    """The escrow is told apart by its interface: Ocean's own is read its way (its locks per payee)."""
    ocean = deploy_ocean_escrow(dev)
    chain = ["--rpc", str(dev.rpc_url), "--token", dev.token_address, "--escrow", ocean.address]
    base = ["--node", "127.0.0.1:1", "--key-file", str(consumer.key_file), "--json"]
    code, _, err = c2d(capsys, *base, "escrow", "deposit", "--base-units", "500", *chain)
    assert code == 0, err
    authorize = ["escrow", "authorize", "--max-amount", "300", "--base-units", "--payee", NODE.address]
    code, _, err = c2d(capsys, *base, *authorize, *chain)
    assert code == 0, err
    me = consumer.account.address
    ocean.client(NODE.private_key).create_lock(77, dev.token_address, me, 120, 3600)
    code, out, err = c2d(capsys, *base, "escrow", "balance", *chain)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["available"], doc["locked"]) == ("380", "120")
    assert [(a["payee"], a["current_locked_amount"]) for a in doc["authorizations"]] == [
        (NODE.address, "120")
    ]
    assert [(lock["lock_id"], lock["amount"], lock["payee"]) for lock in doc["locks"]] == [
        ("77", "120", NODE.address)
    ]


def test_env_var_rpc(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    dev: DevChain,
    paid_node: tuple[PaidNode, str],
    consumer: Consumer,
) -> None:
    monkeypatch.setenv("C2D_RPC_URL", str(dev.rpc_url))
    monkeypatch.setenv("C2D_KEY_FILE", str(consumer.key_file))
    code, out, err = c2d(capsys, "--node", paid_node[1], "--json", "escrow", "balance")
    assert code == 0, err
    assert json.loads(out)["wallet"] == str(WALLET)


# ------------------------------------------------------------ errors: one line, non-zero


def test_withdraw_more_than_available(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], consumer: Consumer
) -> None:
    consumer.escrow.deposit(dev.token_address, ETHER)
    code, doc, err = cli(capsys, dev, paid_node[1], consumer, "escrow", "withdraw", "2")
    assert code == 4 and doc is None
    line = one_error_line(err)
    assert "Insufficient available funds" in line and "1 C2DT available" in line
    assert consumer.escrow.get_user_funds(consumer.account.address, dev.token_address).available == ETHER


def test_deposit_more_than_the_wallet_holds(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], consumer: Consumer
) -> None:
    code, _, err = cli(capsys, dev, paid_node[1], consumer, "escrow", "deposit", "100.5")
    assert code == 4
    assert "not enough tokens" in one_error_line(err) and "100 C2DT" in err


def test_no_gas_money(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], tmp_path: Path
) -> None:
    poor = DevAccount.from_label("escrow-cli:no-eth")
    dev.fund(poor.address, wei=0, tokens=ETHER)
    key_file = tmp_path / "poor.key"
    key_file.write_text(poor.private_key)
    me = Consumer(poor, key_file, dev.escrow(poor.private_key))
    code, _, err = cli(capsys, dev, paid_node[1], me, "escrow", "deposit", "1")
    assert code == 4 and "to pay for gas" in one_error_line(err)


def test_no_rpc_is_a_usage_error(capsys: pytest.CaptureFixture[str], consumer: Consumer) -> None:
    code, out, err = c2d(capsys, "--key-file", str(consumer.key_file), "escrow", "balance")
    assert code == 2 and out == ""
    assert "no chain RPC" in one_error_line(err) and "C2D_RPC_URL" in err


def test_unreachable_rpc(capsys: pytest.CaptureFixture[str], dev: DevChain, consumer: Consumer) -> None:
    chain = ["--token", dev.token_address, "--escrow", dev.escrow_address, "--rpc", "http://127.0.0.1:1"]
    code, _, err = c2d(capsys, "--key-file", str(consumer.key_file), "escrow", "balance", *chain)
    assert code == 4
    assert "cannot reach the chain at http://127.0.0.1:1" in one_error_line(err)


def test_chain_mismatch(capsys: pytest.CaptureFixture[str], dev: DevChain, consumer: Consumer) -> None:
    chain = ["--token", dev.token_address, "--escrow", dev.escrow_address, "--rpc", str(dev.rpc_url)]
    code, _, err = c2d(
        capsys, "--key-file", str(consumer.key_file), "escrow", "balance", *chain, "--chain-id", "5"
    )
    assert code == 4
    assert f"serves chain {dev.chain_id}" in one_error_line(err) and "chain 5" in err


def test_several_offers_ask_the_user_to_choose(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], consumer: Consumer
) -> None:
    other = "0x" + "ab" * 20
    paid_node[0].fees = [fees(dev), fees(dev, token=other, symbol="OTHER")]
    code, _, err = cli(capsys, dev, paid_node[1], consumer, "escrow", "balance")
    assert code == 2
    line = one_error_line(err)
    assert "choose with --chain-id, --token" in line and "C2DT" in line and "OTHER" in line and other in line
    code, doc, err = cli(
        capsys, dev, paid_node[1], consumer, "escrow", "balance", "--token", dev.token_address
    )
    assert code == 0, err
    assert doc["symbol"] == "C2DT"
    code, _, err = cli(capsys, dev, paid_node[1], consumer, "escrow", "balance", "--chain-id", "5")
    assert code == 2 and "accepts none of that" in one_error_line(err)


def test_amounts_finer_than_the_token(
    capsys: pytest.CaptureFixture[str], dev: DevChain, paid_node: tuple[PaidNode, str], consumer: Consumer
) -> None:
    code, _, err = cli(capsys, dev, paid_node[1], consumer, "escrow", "deposit", "0.0000000000000000001")
    assert code == 2 and "18 decimals" in one_error_line(err)
    code, _, err = cli(capsys, dev, paid_node[1], consumer, "escrow", "deposit", "1.5", "--base-units")
    assert code == 2 and "base units are whole" in one_error_line(err)


def test_parse_and_format_amounts() -> None:
    assert parse_amount("1.5", 18) == 15 * 10**17
    assert parse_amount("1e-18", 18) == 1
    assert parse_amount("7", 0) == 7
    assert parse_amount("123", 18, base_units=True) == 123
    big = "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    assert parse_amount(big, 18) == 2**256 - 1
    assert format_units(2**256 - 1, 18) == big
    assert format_units(15 * 10**17, 18) == "1.5"
    assert format_units(0, 18) == "0" and format_units(1000 * ETHER, 18) == "1000"
    assert Decimal(format_units(1, 6)) == Decimal("0.000001")


def test_token_without_decimals(dev: DevChain) -> None:
    """decimals() is optional in ERC20: a contract without it answers None (the CLI then uses 18)."""
    client = dev.escrow(dev.consumer.private_key)
    assert client.token_decimals(dev.token_address) == 18
    assert client.token_symbol(dev.token_address) == "C2DT"
    assert client.token_decimals(dev.escrow_address) is None  # a contract without decimals()
    assert client.token_decimals(NODE.address) is None  # no contract at all


def test_without_web3_the_commands_say_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, dev: DevChain, consumer: Consumer
) -> None:
    monkeypatch.setitem(sys.modules, "c2d.chain.client", None)  # `import` now raises ImportError
    chain = ["--token", dev.token_address, "--escrow", dev.escrow_address, "--rpc", str(dev.rpc_url)]
    code, _, err = c2d(capsys, "--key-file", str(consumer.key_file), "escrow", "balance", *chain)
    assert code == 2 and "pip install 'c2d-sdk[chain]'" in one_error_line(err)


def test_cli_start_up_does_not_import_web3() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "c2d.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "c2d.cli.escrow" in modules
    assert not {m for m in modules if m.split(".")[0] in {"web3", "eth_account", "eth_abi"}}


# ------------------------------------------------------------ paid start: the quote, then the lock


def write_workflow(tmp_path: Path, stages: int = 2) -> Path:
    path = tmp_path / "workflow.json"
    algorithm = {
        "rawcode": "print(1)",
        "container": {"image": "python", "tag": "3", "entrypoint": "python $ALGO"},
    }
    doc = {
        "environment": "paid-env",
        "maxJobDuration": 120,
        "stages": [{"index": i, "algorithm": algorithm} for i in range(stages)],
    }
    path.write_text(json.dumps(doc))
    return path


def test_paid_start_shows_the_quote_then_the_lock(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    paid_node: tuple[PaidNode, str],
    consumer: Consumer,
    tmp_path: Path,
) -> None:
    node, me, token = paid_node[1], consumer.account.address, dev.token_address
    assert cli(capsys, dev, node, consumer, "escrow", "deposit", "1")[0] == 0
    assert cli(capsys, dev, node, consumer, "escrow", "authorize", "--max-amount", "0.5")[0] == 0
    workflow = str(write_workflow(tmp_path))

    code, out, err = c2d(capsys, "--node", node, "--key-file", str(consumer.key_file), "start", workflow)
    assert code == 0, err
    quoted = 2 * 2 * int(PRICE)  # 2 stages x 2 minutes x 1 cpu: 0.004 C2DT at 18 decimals
    assert quoted == 4 * 10**15
    lines = out.splitlines()
    total = next(i for i, line in enumerate(lines) if line.startswith("total:"))
    assert lines[total] == f"total: 0.004 C2DT (token {token.lower()} on chain {dev.chain_id})"
    assert lines[total + 1].startswith(f"escrow: {dev.escrow_address.lower()}, payee {NODE.address.lower()}")
    assert any(line.split()[:2] == ["1", "cpu"] for line in lines[:total])  # the price lines came first
    started = next(i for i, line in enumerate(lines) if line.startswith("workflow "))
    assert started > total
    assert f"payment: locked, locked 0.004 C2DT (token {token.lower()})" in out
    lock = consumer.escrow.get_locks(token, me)[0]
    assert f"lock id: {lock.job_id}" in out and "lock transaction: 0x" in out

    code, doc, err = cli(capsys, dev, node, consumer, "escrow", "balance")
    assert code == 0, err
    assert (doc["available"], doc["locked"]) == (str(ETHER - quoted), str(quoted))
    assert doc["authorizations"][0]["current_locked_amount"] == str(quoted)
    assert doc["authorizations"][0]["current_locks"] == 1
    assert doc["locks"] == [
        {
            "lock_id": str(lock.job_id),
            "payee": NODE.address,
            "amount": str(quoted),
            "expiry": lock.expiry,
            "token": token,
        }
    ]


def test_paid_start_json_carries_quote_and_payment(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    paid_node: tuple[PaidNode, str],
    consumer: Consumer,
    tmp_path: Path,
) -> None:
    consumer.escrow.deposit(dev.token_address, ETHER)
    consumer.escrow.authorize(dev.token_address, NODE.address, ETHER, 86400, 5)
    workflow = str(write_workflow(tmp_path, stages=1))
    code, out, err = c2d(
        capsys, "--node", paid_node[1], "--key-file", str(consumer.key_file), "--json", "start", workflow
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["quote"]["amount"] == str(2 * int(PRICE))
    assert doc["quote"]["payee"] == NODE.address.lower()
    assert doc["payment"]["status"] == "PAYMENT_STATUS_LOCKED"
    assert doc["payment"]["locked_amount"] == str(2 * int(PRICE))
    assert doc["payment"]["lock_transaction"].startswith("0x")


def test_paid_start_refused_by_the_chain_is_one_line(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    paid_node: tuple[PaidNode, str],
    consumer: Consumer,
    tmp_path: Path,
) -> None:
    workflow = str(write_workflow(tmp_path))  # no deposit, no authorization
    code, out, err = c2d(
        capsys, "--node", paid_node[1], "--key-file", str(consumer.key_file), "start", workflow
    )
    assert code == 3
    assert "FAILED_PRECONDITION" in one_error_line(err) and "No auth found" in err
    assert "total:" in out  # the quote was shown before the node refused


def test_paid_start_with_several_tokens_asks_which(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    paid_node: tuple[PaidNode, str],
    consumer: Consumer,
    tmp_path: Path,
) -> None:
    paid_node[0].fees = [fees(dev), fees(dev, token="0x" + "cd" * 20, symbol="OTHER")]
    workflow = str(write_workflow(tmp_path))
    code, _, err = c2d(
        capsys, "--node", paid_node[1], "--key-file", str(consumer.key_file), "start", workflow
    )
    assert code == 2 and "choose with --chain-id and --token" in one_error_line(err)
    # init only validates then, and prices once told which
    code, out, err = c2d(capsys, "--node", paid_node[1], "init", workflow)
    assert code == 0 and "total:" not in out
    code, out, err = c2d(capsys, "--node", paid_node[1], "init", workflow, "--token", dev.token_address)
    assert code == 0 and "total: 0.004 C2DT (token" in out
    code, out, err = c2d(
        capsys, "--node", paid_node[1], "init", workflow, "--token", dev.token_address, "--base-units"
    )
    assert code == 0 and f"total: {4 * int(PRICE)} base units (token" in out
