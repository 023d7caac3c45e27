"""``c2d proof ID``: fetch a workflow's payment records and check them, off chain and on chain.

Off chain (always): the records hash to the digest the node reports, are signed by the node they
name, and every price line, stage total and the claim add up (:func:`c2d.billing.check_proof`);
they also agree with the node's payment state. On chain (with ``--rpc`` or ``$C2D_RPC_URL``): the
escrow holds a ``Claimed`` event by that node, from the records' payer, for the records' lock, of
exactly the claimed amount, with the digest as its proof. Any failed check makes the exit status 1.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2d import billing
from c2d.chain.errors import ChainError
from c2d.cli.context import Context
from c2d.cli.errors import ChainFailure
from c2d.cli.escrow import INSTALL_HINT, RPC_ENV, explain, rpc_url
from c2d.cli.payment import payment_status
from c2d.cli.render import to_dict
from c2d.client import C2DError, Client
from c2d.compute.v1 import compute_pb2
from c2d.units import TokenUnits

NOT_THIS_KIND = frozenset({"NOT_FOUND", "INVALID_ARGUMENT"})
CLAIM_WAIT_SECONDS = 60.0
CLAIM_POLL_SECONDS = 0.5
# Payments that never reached a claim: there is no Claimed event to look for.
UNCLAIMED = frozenset(
    {
        compute_pb2.PAYMENT_STATUS_FREE,
        compute_pb2.PAYMENT_STATUS_LOCK_FAILED,
        compute_pb2.PAYMENT_STATUS_RELEASED,
    }
)


@dataclass
class OnChain:
    """What the chain said about the claim."""

    checked: bool = False
    skipped: str = ""
    transaction: str = ""
    block: int | None = None
    problems: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "skipped": self.skipped or None,
            "transaction": self.transaction or None,
            "block": self.block,
            "problems": self.problems,
        }


def cmd_proof(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client()
    workflow_id = workflow_of(client, args.id)
    reply = settled_proof(client, workflow_id)
    if args.output:
        Path(args.output).write_bytes(reply.records)
    data = parse_records(reply.records)
    check = off_chain(reply, data)
    problems = check.problems + state_problems(data, workflow_id, reply, check.digest, args.payee)
    chain = on_chain(ctx, data, check.digest, reply.payment, malformed=not _claimable(data, check.digest))
    problems += chain.problems
    if ctx.out.json_mode:
        ctx.out.json(
            {
                "workflow_id": workflow_id,
                "ok": not problems,
                "problems": problems,
                "digest": check.digest,
                "node": data.get("node"),
                "signer": check.signer or None,
                "node_signature": "0x" + reply.node_signature.hex(),
                # records that are not a JSON object come as base64, so nothing the node sent is lost
                "records": data or base64.b64encode(reply.records).decode(),
                "payment": to_dict(reply.payment),
                "onchain": chain.json(),
            }
        )
    else:
        _print(ctx, workflow_id, data, check, reply, chain, problems)
    return 1 if problems else 0


def settled_proof(client: Client, workflow_id: str) -> compute_pb2.GetPaymentProofResponse:
    """The proof, once its claim is mined: right after a workflow ends the node may still be sending
    it (a few seconds on a public chain). Past ``CLAIM_WAIT_SECONDS`` the claim is checked as it is."""
    reply = client.payment_proof(workflow_id)
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while reply.payment.status == compute_pb2.PAYMENT_STATUS_CLAIMING and time.monotonic() < deadline:
        time.sleep(CLAIM_POLL_SECONDS)
        reply = client.payment_proof(workflow_id)
    return reply


def workflow_of(client: Client, ident: str) -> str:
    """The workflow an id names: a stage's job id maps to its workflow, anything else is one."""
    try:
        jobs = client.status(job_id=ident)
    except C2DError as exc:
        if exc.code not in NOT_THIS_KIND:
            raise
        jobs = []
    return jobs[0].workflow_id if jobs and jobs[0].workflow_id else ident


def parse_records(records: bytes) -> dict[str, Any]:
    try:
        data = json.loads(records)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def off_chain(reply: compute_pb2.GetPaymentProofResponse, data: dict[str, Any]) -> billing.ProofCheck:
    """Digest, signature and arithmetic; records too malformed to add up are one problem, not a crash."""
    node = str(data.get("node", ""))
    try:
        check = billing.check_proof(reply.records, reply.node_signature, reply.digest, node)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        check = billing.ProofCheck(
            data, billing.digest(reply.records), "", [f"the records are malformed: {exc!r}"]
        )
    if data and not node:
        check.problems.append("the records name no node")
    return check


def state_problems(
    data: dict[str, Any],
    workflow_id: str,
    reply: compute_pb2.GetPaymentProofResponse,
    records_digest: str,
    payee: str | None,
) -> list[str]:
    """Where the records disagree with the node's own payment state, the workflow or ``--payee``."""
    if not data:
        return []
    problems = []
    if data.get("version") != billing.RECORDS_VERSION:
        problems.append(
            f"records version {data.get('version')!r}; this SDK checks version {billing.RECORDS_VERSION}"
        )
    if data.get("workflow_id") != workflow_id:
        problems.append(f"the records are of workflow {data.get('workflow_id')!r}, not {workflow_id!r}")
    if payee and str(data.get("node", "")).lower() != payee.lower():
        problems.append(f"the records are by node {data.get('node')}, not the expected payee {payee}")
    state = reply.payment
    pairs = [
        ("chain_id", str(state.chain_id) if state.chain_id else ""),
        ("escrow", state.escrow_address),
        ("token", state.token_address),
        ("lock_id", state.lock_id),
        ("locked_amount", state.locked_amount),
        ("claimed_amount", state.claimed_amount),
    ]
    for key, reported in pairs:
        if reported and str(data.get(key, "")).lower() != reported.lower():
            problems.append(
                f"the records' {key} is {data.get(key)!r}, the node's payment state says {reported!r}"
            )
    if state.proof_digest and state.proof_digest.lower() != records_digest:
        problems.append(f"the node claimed proof {state.proof_digest}, the records hash to {records_digest}")
    return problems


def _claimable(data: dict[str, Any], records_digest: str) -> bool:
    try:
        billing.expected_claim(data, records_digest)
    except (KeyError, TypeError, ValueError):
        return False
    return True


def on_chain(
    ctx: Context,
    data: dict[str, Any],
    records_digest: str,
    state: compute_pb2.PaymentState,
    *,
    malformed: bool,
) -> OnChain:
    """Looks for the escrow's Claimed event that the records promise."""
    rpc = rpc_url(ctx)
    if not rpc:
        return OnChain(skipped=f"no --rpc or ${RPC_ENV}")
    if malformed:
        return OnChain(skipped="the records lack what the claim is checked against", problems=[])
    if state.status in UNCLAIMED:
        return OnChain(skipped=f"nothing was claimed (payment {payment_status(state)})")
    expected = billing.expected_claim(data, records_digest)
    try:
        return _find(ctx, rpc, expected, state)
    except ImportError:
        return OnChain(problems=[f"cannot check the claim on chain: {INSTALL_HINT}"])
    except ChainError as err:
        return OnChain(problems=[f"cannot check the claim on chain: {explain(err, rpc)}"])
    except ChainFailure as err:
        return OnChain(problems=[f"cannot check the claim on chain: {err}"])


def _find(
    ctx: Context, rpc: str, expected: billing.ExpectedClaim, state: compute_pb2.PaymentState
) -> OnChain:
    from c2d.chain.claims import ClaimedEvent, block_of, claimed_events, match_claim
    from c2d.cli.escrow import connect_rpc

    w3 = connect_rpc(rpc, expected.chain_id, ctx.args.timeout)
    payee, payer = expected.payee, expected.payer
    found: ClaimedEvent | None = None
    problems: list[str] = []
    if state.claim_transaction:
        events = claimed_events(
            w3, expected.escrow, payee=payee, payer=payer, tx_hash=state.claim_transaction
        )
        found, problems = match_claim(expected, events)
    if found is None:
        start = block_of(w3, state.lock_transaction) if state.lock_transaction else None
        events = claimed_events(w3, expected.escrow, payee=payee, payer=payer, from_block=start or 0)
        found, problems = match_claim(expected, events)
    if found is None:
        return OnChain(checked=True, problems=problems)
    return OnChain(checked=True, transaction=found.tx_hash, block=found.block_number)


def _print(
    ctx: Context,
    workflow_id: str,
    data: dict[str, Any],
    check: billing.ProofCheck,
    reply: compute_pb2.GetPaymentProofResponse,
    chain: OnChain,
    problems: list[str],
) -> None:
    out = ctx.out
    out.line(f"workflow {workflow_id}")
    if data:
        out.line(f"node {data.get('node')}, payer {data.get('payer')}")
        out.line(f"chain {data.get('chain_id')}, escrow {data.get('escrow')}, token {data.get('token')}")
        units = ctx.units(int(data.get("chain_id") or 0), str(data.get("token") or ""))
        _print_stages(ctx, data, units)
        out.line(
            f"claim: {units.show(data.get('claimed_amount') or 0)} of "
            f"{units.show(data.get('locked_amount') or 0)} locked (lock id {data.get('lock_id')})"
        )
    payment = reply.payment
    out.line(
        f"payment: {payment_status(payment)}"
        + (f", claim transaction {payment.claim_transaction}" if payment.claim_transaction else "")
    )
    out.line(f"digest: {check.digest}, signed by {check.signer or '?'}")
    if chain.transaction:
        out.line(f"on chain: Claimed in transaction {chain.transaction} (block {chain.block})")
    elif chain.skipped:
        out.line(f"on-chain check skipped: {chain.skipped}")
    if ctx.args.output:
        out.line(f"records saved to {ctx.args.output}")
    if not problems:
        out.line("proof OK")
        return
    out.line("proof NOT OK:")
    for problem in problems:
        out.line(f"  - {problem}")


def _print_stages(ctx: Context, data: dict[str, Any], units: TokenUnits) -> None:
    stages = data.get("stages") or []
    rows = [
        [
            s.get("index"),
            s.get("job_id"),
            s.get("status"),
            _seconds(s.get("billed_seconds")),
            s.get("billed_minutes"),
            s.get("quoted_minutes"),
            units.show(s.get("cost") or 0),
        ]
        for s in stages
    ]
    ctx.out.table(("stage", "job id", "status", "ran (s)", "billed min", "quoted min", "cost"), rows)
    lines = [
        [
            s.get("index"),
            line.get("resource_id"),
            line.get("amount"),
            units.show(line.get("price_per_unit_minute") or 0),
            units.show(line.get("cost") or 0),
        ]
        for s in stages
        for line in s.get("lines") or []
    ]
    if lines:
        ctx.out.line()
        ctx.out.table(("stage", "resource", "amount", "price/unit/min", "cost"), lines, "price lines")


def _seconds(value: Any) -> str:
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return str(value)
