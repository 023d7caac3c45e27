"""Payment proofs: ``c2d.billing.check_proof`` on records signed by a known key, the escrow's
``Claimed`` event found on a real chain (anvil over JSON-RPC), and ``c2d proof`` putting both
together against a small in-test node that serves records signed in the test.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d import billing
from c2d.chain.claims import claimed_events, match_claim
from c2d.chain.client import EscrowClient, job_id_to_uint
from c2d.cli import main
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from host.chain.devchain import ETHER, DevAccount, DevChain, find_anvil, start_dev_chain
from host.payments.records import stage_record
from host.store.models import Stage

IN_CI = bool(os.environ.get("CI"))
NODE = DevAccount.from_label("billing-node")
OTHER = DevAccount.from_label("billing-impostor")
PAYER = "0x" + "22" * 20
ESCROW = "0x" + "33" * 20
TOKEN = "0x" + "44" * 20


def make_records(
    workflow_id: str = "wf-1",
    *,
    node: str = NODE.address,
    payer: str = PAYER,
    chain_id: int = 31337,
    escrow: str = ESCROW,
    token: str = TOKEN,
    locked: int = 1000,
) -> dict[str, Any]:
    """Two stages: 2 cpu x 10/min x 3 min = 60, then 1.5 ram x 2.5/min x 2 min = 7.5 -> 8; claim 68."""
    stages = [
        _stage(0, "job-0", billed_seconds=150.5, quoted=5, resource="cpu", amount=2, price="10"),
        _stage(1, "job-1", billed_seconds=61.0, quoted=5, resource="ram", amount=1.5, price="2.5"),
    ]
    return {
        "version": 1,
        "node": node.lower(),
        "workflow_id": workflow_id,
        "payer": payer.lower(),
        "chain_id": chain_id,
        "escrow": escrow.lower(),
        "token": token.lower(),
        "lock_id": str(job_id_to_uint(workflow_id)),
        "locked_amount": str(locked),
        "claimed_amount": str(min(locked, sum(int(s["cost"]) for s in stages))),
        "stages": stages,
    }


def _stage(
    index: int, job_id: str, *, billed_seconds: float, quoted: int, resource: str, amount: float, price: str
) -> dict[str, Any]:
    minutes = billing.billed_minutes(billed_seconds, quoted)
    cost = billing.line_cost(amount, price, minutes)
    return {
        "index": index,
        "job_id": job_id,
        "environment_id": "paid-env",
        "status": "finished",
        "algorithm_image": "python@sha256:" + "ab" * 32,
        "algorithm_started_at": 1_700_000_000.0,
        "algorithm_finished_at": 1_700_000_000.0 + billed_seconds,
        "billed_seconds": billed_seconds,
        "billed_minutes": minutes,
        "quoted_minutes": quoted,
        "lines": [
            {"resource_id": resource, "amount": amount, "price_per_unit_minute": price, "cost": str(cost)}
        ],
        "cost": str(cost),
    }


def signed(records: dict[str, Any], key: str = NODE.private_key) -> tuple[bytes, bytes, str]:
    """(canonical bytes, the node's signature, digest), as the node publishes them."""
    raw = billing.canonical(records)
    return raw, billing.sign_records(key, raw), billing.digest(raw)


# ------------------------------------------------------------ check_proof, off chain


def test_records_add_up() -> None:
    records = make_records()
    assert [s["billed_minutes"] for s in records["stages"]] == [3, 2]
    assert [s["cost"] for s in records["stages"]] == ["60", "8"]
    assert records["claimed_amount"] == "68"


def test_check_proof_ok() -> None:
    raw, signature, digest = signed(make_records())
    check = billing.check_proof(raw, signature, digest, NODE.address)
    assert check.ok, check.problems
    assert check.signer == NODE.address.lower() and check.digest == digest
    assert check.records["workflow_id"] == "wf-1"


def test_tampered_cost_signed_by_the_node_does_not_add_up() -> None:
    records = make_records()
    records["stages"][0]["lines"][0]["cost"] = "61"
    raw, signature, digest = signed(records)
    check = billing.check_proof(raw, signature, digest, NODE.address)
    assert check.problems == [
        "stage 0 cpu: cost 61 should be 60",
    ]


def test_tampered_cost_after_signing_breaks_signature_and_digest() -> None:
    raw, signature, digest = signed(make_records())
    records = json.loads(raw)
    records["stages"][1]["cost"] = "9"
    tampered = billing.canonical(records)
    check = billing.check_proof(tampered, signature, digest, NODE.address)
    assert not check.ok
    assert any(p.startswith("signed by 0x") and "not by the node" in p for p in check.problems)
    assert f"the records hash to {billing.digest(tampered)}, not to the claimed {digest}" in check.problems
    assert "stage 1: total 9 should be 8" in check.problems


def test_tampered_claimed_amount() -> None:
    records = make_records()
    records["claimed_amount"] = "70"
    raw, signature, digest = signed(records)
    check = billing.check_proof(raw, signature, digest, NODE.address)
    assert check.problems == ["claimed 70 but the records add up to 68"]


def test_claim_is_capped_by_the_lock() -> None:
    raw, signature, digest = signed(make_records(locked=50))
    check = billing.check_proof(raw, signature, digest, NODE.address)
    assert check.ok and check.records["claimed_amount"] == "50"


def test_wrong_signer() -> None:
    raw, signature, digest = signed(make_records(), key=OTHER.private_key)
    check = billing.check_proof(raw, signature, digest, NODE.address)
    assert check.problems == [f"signed by {OTHER.address.lower()}, not by the node {NODE.address}"]


def test_digest_mismatch() -> None:
    raw, signature, _ = signed(make_records())
    other = "0x" + "00" * 32
    check = billing.check_proof(raw, signature, other, NODE.address)
    assert check.problems == [f"the records hash to {billing.digest(raw)}, not to the claimed {other}"]


def test_malformed_signature_and_non_canonical_records() -> None:
    records = make_records()
    raw = json.dumps(records, indent=1).encode()  # same content, other bytes
    signature = billing.sign_records(NODE.private_key, raw)
    check = billing.check_proof(raw, signature, billing.digest(raw), NODE.address)
    assert check.problems == ["the records are not in canonical form"]
    check = billing.check_proof(billing.canonical(records), b"\x01" * 10, "", NODE.address)
    assert check.problems[0].startswith("the signature is malformed")


def test_expected_claim() -> None:
    records = make_records("wf-x")
    _raw, _, digest = signed(records)
    claim = billing.expected_claim(records, digest)
    assert claim.payee == NODE.address.lower() and claim.payer == PAYER
    assert claim.job_id == job_id_to_uint("wf-x") and claim.amount == 68
    assert claim.proof == bytes.fromhex(digest[2:]) and len(claim.proof) == 32
    assert (claim.chain_id, claim.escrow, claim.token) == (31337, ESCROW, TOKEN)


# ------------------------------------------------------------ the claim on chain


@pytest.fixture(scope="module")
def dev() -> Iterator[DevChain]:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil binary missing: npm install (devDependency @foundry-rs/anvil)")
        pytest.skip("anvil not installed (npm install)")
    chain = start_dev_chain("anvil")
    chain.fund(NODE.address)
    consumer = chain.escrow(chain.consumer.private_key)
    consumer.deposit(chain.token_address, 10 * ETHER)
    consumer.authorize(chain.token_address, NODE.address, 10 * ETHER, 86400, 100)
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="module")
def payee(dev: DevChain) -> EscrowClient:
    return dev.escrow(NODE.private_key)


def chain_records(dev: DevChain, workflow_id: str, locked: int = 1000) -> dict[str, Any]:
    return make_records(
        workflow_id,
        payer=dev.consumer.address,
        chain_id=dev.chain_id,
        escrow=dev.escrow_address,
        token=dev.token_address,
        locked=locked,
    )


def lock_and_claim(
    payee: EscrowClient, records: dict[str, Any], proof: bytes, amount: int | None = None
) -> tuple[str, str]:
    """The node's side: lock the records' amount, claim ``amount`` (default: the records') with
    ``proof``; the lock and claim transaction hashes."""
    job, token, payer = records["workflow_id"], records["token"], records["payer"]
    lock = payee.create_lock(job, token, payer, int(records["locked_amount"]), 3600)
    claimed = int(records["claimed_amount"]) if amount is None else amount
    claim = payee.claim_lock(job, token, payer, claimed, proof)
    return "0x" + bytes(lock["transactionHash"]).hex(), "0x" + bytes(claim["transactionHash"]).hex()


def test_claimed_event_matches_the_records(dev: DevChain, payee: EscrowClient) -> None:
    records = chain_records(dev, "wf-chain-ok")
    _, _, digest = signed(records)
    _, claim_tx = lock_and_claim(payee, records, bytes.fromhex(digest[2:]))
    expected = billing.expected_claim(records, digest)

    events = claimed_events(dev.w3, dev.escrow_address, payee=NODE.address, payer=dev.consumer.address)
    found, problems = match_claim(expected, events)
    assert problems == [] and found is not None
    assert found.tx_hash == claim_tx and found.amount == 68 and found.proof == expected.proof
    # the same from the claim transaction's receipt alone
    in_tx = claimed_events(dev.w3, dev.escrow_address, tx_hash=claim_tx)
    assert match_claim(expected, in_tx)[0] == found


def test_claimed_event_with_another_amount_is_reported(dev: DevChain, payee: EscrowClient) -> None:
    records = chain_records(dev, "wf-chain-amount")
    _, _, digest = signed(records)
    _, claim_tx = lock_and_claim(payee, records, bytes.fromhex(digest[2:]), amount=67)
    expected = billing.expected_claim(records, digest)
    found, problems = match_claim(expected, claimed_events(dev.w3, dev.escrow_address, payee=NODE.address))
    assert found is None
    assert problems == [f"the claim in {claim_tx} claims 67, the records say 68"]


def test_claimed_event_with_another_proof_is_reported(dev: DevChain, payee: EscrowClient) -> None:
    records = chain_records(dev, "wf-chain-proof")
    _, _, digest = signed(records)
    _, claim_tx = lock_and_claim(payee, records, digest.encode())  # the hex text, not the 32 bytes
    expected = billing.expected_claim(records, digest)
    found, problems = match_claim(expected, claimed_events(dev.w3, dev.escrow_address, tx_hash=claim_tx))
    assert found is None and len(problems) == 1
    assert "not the records' digest" in problems[0]


def test_no_claimed_event(dev: DevChain) -> None:
    records = chain_records(dev, "wf-never-claimed")
    _, _, digest = signed(records)
    expected = billing.expected_claim(records, digest)
    found, problems = match_claim(expected, claimed_events(dev.w3, dev.escrow_address, payee=NODE.address))
    assert found is None
    assert problems[0].startswith(f"no Claimed event at escrow {dev.escrow_address.lower()} for lock ")


# ------------------------------------------------------------ c2d proof


class ProofNode(compute_pb2_grpc.ComputeServiceServicer):
    """Serves the payment proofs a test puts in ``proofs`` (by workflow id); stage job ids map to
    their workflow through GetComputeStatus."""

    def __init__(self) -> None:
        self.proofs: dict[str, compute_pb2.GetPaymentProofResponse] = {}
        self.jobs: dict[str, str] = {}  # job id -> workflow id
        self.fees: list[common_pb2.ChainFees] = []  # what GetEnvironments says of tokens

    def GetEnvironments(self, request: Any, context: grpc.ServicerContext) -> Any:
        return compute_pb2.GetEnvironmentsResponse(
            environments=[common_pb2.Environment(id="e", fees=self.fees)]
        )

    def GetComputeStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        workflow_id = self.jobs.get(request.job_id)
        if workflow_id is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        job = compute_pb2.JobInfo(job_id=request.job_id, workflow_id=workflow_id)
        return compute_pb2.GetComputeStatusResponse(jobs=[job])

    def GetPaymentProof(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.workflow_id not in self.proofs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no workflow {request.workflow_id}")
        return self.proofs[request.workflow_id]

    def publish(
        self, records: dict[str, Any], *, key: str = NODE.private_key, lock_tx: str = "", claim_tx: str = ""
    ) -> str:
        raw, signature, digest = signed(records, key)
        state = compute_pb2.PaymentState(
            status=compute_pb2.PAYMENT_STATUS_CLAIMED,
            chain_id=records["chain_id"],
            token_address=records["token"],
            escrow_address=records["escrow"],
            locked_amount=records["locked_amount"],
            claimed_amount=records["claimed_amount"],
            lock_id=records["lock_id"],
            lock_transaction=lock_tx,
            claim_transaction=claim_tx,
            proof_digest=digest,
        )
        self.proofs[records["workflow_id"]] = compute_pb2.GetPaymentProofResponse(
            records=raw, node_signature=signature, digest=digest, payment=state
        )
        for stage in records["stages"]:
            self.jobs[stage["job_id"]] = records["workflow_id"]
        return digest


@pytest.fixture
def proof_node() -> Iterator[tuple[ProofNode, str]]:
    servicer = ProofNode()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    compute_pb2_grpc.add_ComputeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("C2D_NODE", "C2D_KEY_FILE", "C2D_RPC_URL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "me.key"
    path.write_text("0x" + "11" * 32 + "\n")
    return path


def c2d_proof(
    capsys: pytest.CaptureFixture[str], node: str, key_file: Path, *argv: str
) -> tuple[int, str, str]:
    code = main(["--node", node, "--key-file", str(key_file), "proof", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_proof_ok_on_chain_by_job_id(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    payee: EscrowClient,
    proof_node: tuple[ProofNode, str],
    key_file: Path,
    tmp_path: Path,
) -> None:
    servicer, node = proof_node
    records = chain_records(dev, "wf-cli-ok")
    _, _, digest = signed(records)
    lock_tx, claim_tx = lock_and_claim(payee, records, bytes.fromhex(digest[2:]))
    servicer.publish(records, lock_tx=lock_tx, claim_tx=claim_tx)

    saved = tmp_path / "records.json"
    code, out, err = c2d_proof(capsys, node, key_file, "job-1", "--rpc", str(dev.rpc_url), "-o", str(saved))
    assert code == 0, out + err
    assert out.splitlines()[-1] == "proof OK"
    assert f"on chain: Claimed in transaction {claim_tx}" in out
    assert "workflow wf-cli-ok" in out and f"digest: {digest}, signed by {NODE.address.lower()}" in out
    assert "claim: 68 base units of 1000 base units locked" in out  # the node names no decimals
    stage_rows = [line.split() for line in out.splitlines() if line.startswith(("0 ", "1 "))]
    assert ["0", "job-0", "finished", "150.5", "3", "5", "60", "base", "units"] in stage_rows
    assert ["1", "job-1", "finished", "61.0", "2", "5", "8", "base", "units"] in stage_rows
    assert saved.read_bytes() == billing.canonical(records)


def test_proof_shows_token_units_the_node_advertises_and_base_units_on_request(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    proof_node: tuple[ProofNode, str],
    key_file: Path,
) -> None:
    servicer, node = proof_node
    records = chain_records(dev, "wf-cli-units")
    servicer.publish(records)
    servicer.fees = [
        common_pb2.ChainFees(
            chain_id=dev.chain_id,
            token_address=dev.token_address.lower(),
            token_symbol="TOK",
            token_decimals=2,
        )
    ]
    _, out, err = c2d_proof(capsys, node, key_file, "job-1")
    assert "claim: 0.68 TOK of 10 TOK locked" in out, out + err
    stage_rows = [line.split() for line in out.splitlines() if line.startswith(("0 ", "1 "))]
    assert ["0", "job-0", "finished", "150.5", "3", "5", "0.6", "TOK"] in stage_rows
    _, out, err = c2d_proof(capsys, node, key_file, "job-1", "--base-units")
    assert "claim: 68 base units of 1000 base units locked" in out, out + err


def test_proof_json_and_on_chain_search_without_the_claim_transaction(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    payee: EscrowClient,
    proof_node: tuple[ProofNode, str],
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servicer, node = proof_node
    records = chain_records(dev, "wf-cli-json")
    _, _, digest = signed(records)
    _, claim_tx = lock_and_claim(payee, records, bytes.fromhex(digest[2:]))
    servicer.publish(records)  # the node names no transactions: the logs are searched
    monkeypatch.setenv("C2D_RPC_URL", str(dev.rpc_url))
    code, out, err = c2d_proof(capsys, node, key_file, "wf-cli-json", "--json")
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["onchain"] == {
        "checked": True,
        "skipped": None,
        "transaction": claim_tx,
        "block": doc["onchain"]["block"],
        "problems": [],
    }
    assert doc["records"] == records and doc["digest"] == digest


def test_proof_without_rpc_skips_the_chain(
    capsys: pytest.CaptureFixture[str], proof_node: tuple[ProofNode, str], key_file: Path
) -> None:
    servicer, node = proof_node
    servicer.publish(make_records("wf-offline"))
    code, out, err = c2d_proof(capsys, node, key_file, "wf-offline")
    assert code == 0, out + err
    assert "on-chain check skipped: no --rpc or $C2D_RPC_URL" in out
    assert out.splitlines()[-1] == "proof OK"


def test_proof_claimed_amount_differs_on_chain(
    capsys: pytest.CaptureFixture[str],
    dev: DevChain,
    payee: EscrowClient,
    proof_node: tuple[ProofNode, str],
    key_file: Path,
) -> None:
    servicer, node = proof_node
    records = chain_records(dev, "wf-cli-wrong-amount")
    _, _, digest = signed(records)
    lock_tx, claim_tx = lock_and_claim(payee, records, bytes.fromhex(digest[2:]), amount=99)
    servicer.publish(records, lock_tx=lock_tx, claim_tx=claim_tx)
    code, out, err = c2d_proof(capsys, node, key_file, "wf-cli-wrong-amount", "--rpc", str(dev.rpc_url))
    assert code == 1, out + err
    assert "proof NOT OK:" in out
    assert f"  - the claim in {claim_tx} claims 99, the records say 68" in out.splitlines()


def test_proof_tampered_records_and_wrong_payee(
    capsys: pytest.CaptureFixture[str], proof_node: tuple[ProofNode, str], key_file: Path
) -> None:
    servicer, node = proof_node
    records = make_records("wf-tampered")
    servicer.publish(records)
    reply = servicer.proofs["wf-tampered"]
    tampered = copy.deepcopy(records)
    tampered["stages"][0]["lines"][0]["cost"] = "6"
    reply.records = billing.canonical(tampered)  # same signature and digest: the node's bytes were changed
    code, out, err = c2d_proof(capsys, node, key_file, "wf-tampered", "--payee", OTHER.address)
    assert code == 1, out + err
    problems = [line[4:] for line in out.splitlines() if line.startswith("  - ")]
    assert any(p.startswith("signed by") for p in problems)
    assert any(p.startswith("the records hash to") for p in problems)
    assert "stage 0 cpu: cost 6 should be 60" in problems
    assert (
        f"the records are by node {NODE.address.lower()}, not the expected payee {OTHER.address}" in problems
    )
    assert any("the node claimed proof" in p for p in problems)


def test_proof_signed_by_another_key_and_state_disagreeing(
    capsys: pytest.CaptureFixture[str], proof_node: tuple[ProofNode, str], key_file: Path
) -> None:
    servicer, node = proof_node
    servicer.publish(make_records("wf-impostor"), key=OTHER.private_key)
    servicer.proofs["wf-impostor"].payment.claimed_amount = "50"
    code, out, _err = c2d_proof(capsys, node, key_file, "wf-impostor", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["signer"] == OTHER.address.lower()
    assert f"signed by {OTHER.address.lower()}, not by the node {NODE.address.lower()}" in doc["problems"]
    assert "the records' claimed_amount is '68', the node's payment state says '50'" in doc["problems"]


def test_proof_of_an_unknown_workflow(
    capsys: pytest.CaptureFixture[str], proof_node: tuple[ProofNode, str], key_file: Path
) -> None:
    code, out, err = c2d_proof(capsys, proof_node[1], key_file, "nope")
    assert code == 3 and out == "" and err == "error: NOT_FOUND: no workflow nope\n"


def test_proof_with_an_unreachable_rpc_fails_the_check(
    capsys: pytest.CaptureFixture[str], proof_node: tuple[ProofNode, str], key_file: Path
) -> None:
    servicer, node = proof_node
    servicer.publish(make_records("wf-no-chain"))
    code, out, _err = c2d_proof(capsys, node, key_file, "wf-no-chain", "--rpc", "http://127.0.0.1:1")
    assert code == 1
    assert "  - cannot check the claim on chain: cannot reach the chain at http://127.0.0.1:1" in out


def test_proof_of_records_that_are_not_json(
    capsys: pytest.CaptureFixture[str], proof_node: tuple[ProofNode, str], key_file: Path
) -> None:
    servicer, node = proof_node
    servicer.publish(make_records("wf-garbage"))
    servicer.proofs["wf-garbage"].records = b"\x00not json"
    code, out, _ = c2d_proof(capsys, node, key_file, "wf-garbage", "--json")
    assert code == 1
    doc = json.loads(out)
    assert "the records are not JSON" in doc["problems"] and doc["records"] == "AG5vdCBqc29u"


def test_a_stage_that_ran_is_billed_at_least_the_quoted_minimum() -> None:
    assert billing.billed_minutes(20, 10, 3) == 3  # ran 20 s: the minimum of 3 minutes
    assert billing.billed_minutes(250, 10, 3) == 5  # ran longer than the minimum
    assert billing.billed_minutes(0, 10, 3) == 0  # never started: nothing
    assert billing.billed_minutes(900, 10, 3) == 10  # never past the quote
    line = {"resource_id": "cpu", "amount": 2, "price_per_unit_minute": "10", "minutes": 10, "min_minutes": 3}
    stage = Stage(
        index=0,
        job_id="j0",
        max_duration_seconds=600,
        algorithm_started_at=100.0,
        algorithm_finished_at=120.0,
    )
    record = stage_record(stage, [line], now=200.0)
    assert (record["billed_minutes"], record["min_minutes"], record["cost"]) == (3, 3, "60")
    before = stage_record(stage, [{k: v for k, v in line.items() if k != "min_minutes"}], now=200.0)
    assert (before["billed_minutes"], before["cost"]) == (
        1,
        "20",
    )  # a quote made before the minimum was billed


def test_the_time_spent_building_the_image_is_billed_with_the_algorithm() -> None:
    line = {"resource_id": "cpu", "amount": 1, "price_per_unit_minute": "10", "minutes": 10, "min_minutes": 0}
    ran = Stage(
        index=0,
        job_id="j0",
        max_duration_seconds=600,
        algorithm_started_at=100.0,
        algorithm_finished_at=150.0,
    )
    assert stage_record(ran, [line], now=200.0)["billed_minutes"] == 1
    built = Stage(
        index=0,
        job_id="j1",
        max_duration_seconds=600,
        algorithm_started_at=100.0,
        algorithm_finished_at=150.0,
        build_seconds=70.0,
    )
    record = stage_record(built, [line], now=200.0)
    assert (record["build_seconds"], record["billed_seconds"], record["billed_minutes"]) == (70.0, 120.0, 2)
    assert record["cost"] == "20"
    failed_build = Stage(index=0, job_id="j2", max_duration_seconds=600, build_seconds=30.0)
    assert stage_record(failed_build, [line], now=200.0)["billed_minutes"] == 1  # the build ran: it is billed
    assert "build_seconds" not in stage_record(ran, [line], now=200.0)  # records of unbuilt stages unchanged
