"""What paid compute costs, and the proof a node claims it with: one definition for node and consumer.

The node quotes with :func:`line_cost` on each stage's maximum duration, claims
with it on the minutes the algorithm actually ran, and publishes the
**payment records**: canonical JSON naming every stage, its billed time and
price lines, signed by the node. The keccak256 of those bytes is the proof
passed to the escrow's ``claimLock``. A consumer holding the records can
recompute the digest, the signature's signer and every cost with
:func:`check_proof`, and compare the digest with the ``Claimed`` event on chain.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from eth_hash.auto import keccak

from c2d import auth

RECORDS_VERSION = 1
PROOF_TEXT_PREFIX = "c2d payment proof "


def line_cost(amount: float, price_per_unit_minute: str, minutes: int) -> int:
    """amount x price x minutes, rounded up to a whole base unit: never less than what was used."""
    cost = Decimal(str(amount)) * Decimal(price_per_unit_minute or "0") * minutes
    return int(cost.to_integral_value(rounding=ROUND_CEILING))


def billed_minutes(seconds: float, cap_minutes: int, floor_minutes: int = 0) -> int:
    """Whole minutes started, at least the environment's minimum once the algorithm ran at all, and
    no more than were quoted (an engine may stop a job a moment late). Never ran: nothing."""
    if seconds <= 0:
        return 0
    return min(max(1, math.ceil(seconds / 60), floor_minutes), cap_minutes)


def canonical(records: dict[str, Any]) -> bytes:
    """The one byte form of the records that is hashed and signed."""
    return json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(records: bytes) -> str:
    """0x-hex keccak256 of the records: the proof claimed on chain."""
    return "0x" + keccak(records).hex()


def signing_text(records_digest: str) -> str:
    return PROOF_TEXT_PREFIX + records_digest.lower()


def sign_records(private_key: str, records: bytes) -> bytes:
    """The node's EIP-191 signature over the records' digest."""
    return auth.sign_text(private_key, signing_text(digest(records)))


@dataclass
class ProofCheck:
    """What :func:`check_proof` found; ``ok`` when nothing is wrong."""

    records: dict[str, Any]
    digest: str
    signer: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_proof(records: bytes, signature: bytes, claimed_digest: str, node_address: str) -> ProofCheck:
    """Checks the digest, the node's signature and the arithmetic of every stage's cost."""
    actual = digest(records)
    try:
        data = json.loads(records)
    except ValueError:
        return ProofCheck({}, actual, "", ["the records are not JSON"])
    try:
        signer = auth.recover_signer(signing_text(actual), signature)
    except ValueError as exc:
        signer = ""
        problems = [f"the signature is malformed: {exc}"]
    else:
        problems = (
            [] if signer == node_address.lower() else [f"signed by {signer}, not by the node {node_address}"]
        )
    if claimed_digest and claimed_digest.lower() != actual:
        problems.append(f"the records hash to {actual}, not to the claimed {claimed_digest}")
    if canonical(data) != records:
        problems.append("the records are not in canonical form")
    problems += cost_problems(data)
    return ProofCheck(data, actual, signer, problems)


def cost_problems(data: dict[str, Any]) -> list[str]:
    """Recomputes every price line, stage total and the claim from the records' own figures."""
    problems = []
    total = 0
    for stage in data.get("stages", []):
        where = f"stage {stage.get('index')}"
        stage_total = 0
        for line in stage.get("lines", []):
            expected = line_cost(line["amount"], line["price_per_unit_minute"], stage["billed_minutes"])
            if int(line["cost"]) != expected:
                problems.append(f"{where} {line['resource_id']}: cost {line['cost']} should be {expected}")
            stage_total += expected
        if int(stage.get("cost", -1)) != stage_total:
            problems.append(f"{where}: total {stage.get('cost')} should be {stage_total}")
        total += stage_total
    claimed = min(total, int(data.get("locked_amount", 0)))
    if int(data.get("claimed_amount", -1)) != claimed:
        problems.append(f"claimed {data.get('claimed_amount')} but the records add up to {claimed}")
    return problems


@dataclass(frozen=True)
class ExpectedClaim:
    """The escrow ``Claimed`` event that the records promise: who claimed what, for which lock."""

    chain_id: int
    escrow: str
    payee: str
    payer: str
    job_id: int
    token: str
    amount: int
    proof: bytes


def expected_claim(data: dict[str, Any], records_digest: str) -> ExpectedClaim:
    """The claim the node must have made on chain for these records: the payee is the node that
    signed them, the jobId the records' ``lock_id``, the proof the digest's 32 bytes.

    KeyError/ValueError when the records lack a field or hold a malformed one.
    """
    proof = bytes.fromhex(records_digest.removeprefix("0x"))
    if len(proof) != 32:
        raise ValueError(f"digest {records_digest} is not 32 bytes")
    return ExpectedClaim(
        chain_id=int(data["chain_id"]),
        escrow=str(data["escrow"]),
        payee=str(data["node"]),
        payer=str(data["payer"]),
        job_id=int(data["lock_id"]),
        token=str(data["token"]),
        amount=int(data["claimed_amount"]),
        proof=proof,
    )
