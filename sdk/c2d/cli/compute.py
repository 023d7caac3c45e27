"""Consumer commands: environments, pricing, starting and following workflows, logs, results."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c2d.cli.context import Context
from c2d.cli.errors import UsageError
from c2d.cli.payment import (
    accepted,
    choose,
    offers,
    payment_status,
    print_lock,
    print_quote,
    workflow_env_ids,
)
from c2d.cli.progress import DownloadWatch, StageWatch
from c2d.cli.render import (
    ENV_COLUMNS,
    JOB_COLUMNS,
    env_json,
    env_row,
    job_json,
    job_row,
    metadata_json,
    result_json,
    stage_status_json,
    status_name,
    to_dict,
    when,
)
from c2d.client import C2DError, StartResult, is_success, result_file_name
from c2d.compute.v1 import compute_pb2
from c2d.workflow import load_workflow

# Codes that mean "not a job id" when an id might name a job or a workflow.
NOT_THIS_KIND = frozenset({"NOT_FOUND", "INVALID_ARGUMENT"})
# How long `stop` waits for the stages it stopped to end before printing them.
STOP_WAIT_SECONDS = 10.0


def cmd_envs(ctx: Context) -> int:
    envs = ctx.client(signed=False).environments(engine=ctx.args.engine or "")
    if ctx.out.json_mode:
        ctx.out.json([env_json(env) for env in envs])
    else:
        ctx.out.table(ENV_COLUMNS, [env_row(env) for env in envs])
    return 0


def cmd_init(ctx: Context) -> int:
    workflow = _workflow(ctx)
    client = ctx.client(signed=False, identify=True)
    payment = _payment(ctx, workflow, required=False)
    reply = client.initialize(workflow, payment)
    if ctx.out.json_mode:
        ctx.out.json(to_dict(reply))
        return 0
    if not reply.consumer_checked:  # unsigned: what depends on who asks is checked at start
        eligible = "yes, as far as checked (sign with --key-file to check your own jobs and access)"
        ctx.out.line(f"free tier: {eligible if reply.free_eligible else 'no'}")
    else:
        ctx.out.line(f"free tier: {'yes' if reply.free_eligible else 'no'}")
    if reply.quote.amount:
        print_quote(ctx.out, reply.quote, ctx.units(reply.quote.chain_id, reply.quote.token_address))
    return 0


def cmd_start(ctx: Context) -> int:
    """Starts a workflow; a paid one shows its quote first and the escrow lock it got after."""
    args = ctx.args
    workflow = _workflow(ctx)
    if args.free and (args.chain_id or args.token):
        raise UsageError("--free takes no --chain-id or --token")
    client = ctx.client()
    payment = None if args.free else _payment(ctx, workflow, required=True)
    if payment is not None and not ctx.out.json_mode:
        # Shown before the start, which waits for the lock transaction to be mined.
        quote = client.initialize(workflow, payment).quote
        if quote.amount:
            print_quote(ctx.out, quote, ctx.units(quote.chain_id, quote.token_address))
    started = client.start(workflow, free=args.free, payment=payment, metadata=_metadata(ctx))
    doc: dict[str, Any] = {
        "workflow_id": started.workflow_id,
        "stages": [{"index": stage.index, "job_id": stage.job_id} for stage in started.stages],
    }
    if not args.free:
        doc["quote"] = to_dict(started.quote) if started.quote is not None else None
        doc["payment"] = to_dict(started.payment) if started.payment is not None else None
    if not ctx.out.json_mode:
        _print_started(ctx, started)
    if not args.wait:
        if ctx.out.json_mode:
            ctx.out.json(doc)
        return 0
    return _wait_and_report(ctx, started, doc)


def _wait_and_report(ctx: Context, started: StartResult, doc: dict[str, Any]) -> int:
    """Follows the workflow to its end; exit 1 unless every stage finished."""
    args = ctx.args
    with StageWatch(ctx.out, f"workflow {started.workflow_id}") as watch:
        jobs = ctx.client().wait(
            started.workflow_id, poll=args.poll, timeout=args.wait_timeout, on_update=watch.update
        )
    jobs.sort(key=lambda job: job.stage_index)
    failed = [job for job in jobs if not is_success(job)]
    if ctx.out.json_mode:
        doc["stages"] = [stage_status_json(job) for job in jobs]
        ctx.out.json(doc)
    elif failed:
        ctx.out.line(f"workflow {started.workflow_id}: {len(failed)} of {len(jobs)} stages did not finish")
    else:
        ctx.out.line(f"workflow {started.workflow_id}: finished")
    return 1 if failed else 0


def _print_started(ctx: Context, started: StartResult) -> None:
    ctx.out.line(f"workflow {started.workflow_id}")
    for stage in started.stages:
        ctx.out.line(f"stage {stage.index}: job {stage.job_id}")
    if started.payment is not None and started.payment.status:
        print_lock(
            ctx.out, started.payment, ctx.units(started.payment.chain_id, started.payment.token_address)
        )


def cmd_status(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client()
    if args.all and args.id:
        raise UsageError("give a job id or workflow id, or --all, not both")
    if args.all:
        jobs = client.status(all=True)
    elif args.id:
        jobs = _by_job_or_workflow(
            args.id, lambda: client.status(job_id=args.id), lambda: client.status(workflow_id=args.id)
        )
    else:
        raise UsageError("give a job id or workflow id, or --all")
    _print_jobs(ctx, jobs, details=bool(args.id) and len(jobs) == 1, history=args.history)
    return 0


def cmd_stop(ctx: Context) -> int:
    client = ctx.client()
    target = ctx.args.id
    jobs = _by_job_or_workflow(
        target, lambda: client.stop(job_id=target), lambda: client.stop(workflow_id=target)
    )
    # The node answers before its engine has ended the stages: wait briefly for the stop to land,
    # so what is printed is true, and name a stage still ending "stopping" rather than "running".
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while any(not job.terminal for job in jobs) and time.monotonic() < deadline:
        time.sleep(0.2)
        jobs = [job if job.terminal else (client.status(job_id=job.job_id) or [job])[0] for job in jobs]
    for job in jobs:
        if not job.terminal:
            job.status_text = "stopping"
    _print_jobs(ctx, jobs, details=False, history=False)
    return 0


def _by_job_or_workflow(
    target: str,
    as_job: Callable[[], list[compute_pb2.JobInfo]],
    as_workflow: Callable[[], list[compute_pb2.JobInfo]],
) -> list[compute_pb2.JobInfo]:
    """An id may name a job or a workflow: ask for the job, then for the workflow."""
    try:
        jobs = as_job()
    except C2DError as exc:
        if exc.code not in NOT_THIS_KIND:
            raise
        jobs = []
    if jobs:
        return jobs
    try:
        jobs = as_workflow()
    except C2DError as exc:
        if exc.code != "NOT_FOUND":
            raise
        jobs = []
    if not jobs:
        raise C2DError("NOT_FOUND", f"no job or workflow {target}")
    return jobs


def _print_jobs(ctx: Context, jobs: list[compute_pb2.JobInfo], *, details: bool, history: bool) -> None:
    if ctx.out.json_mode:
        ctx.out.json([job_json(job) for job in jobs])
        return
    ctx.out.table(JOB_COLUMNS, [job_row(job) for job in jobs])
    one_workflow = details or len({job.workflow_id for job in jobs}) == 1
    if one_workflow:
        _print_payment(ctx, jobs[0].payment if jobs else None)
    _print_metadata(ctx, jobs, one_workflow)
    for job in jobs:
        if details and job.results:
            rows = [
                [f["index"], f["name"], f["kind"], f["size"], f["sha256"]]
                for f in map(result_json, job.results)
            ]
            ctx.out.line()
            ctx.out.table(("index", "name", "kind", "size", "sha256"), rows, title=f"results of {job.job_id}")
        if history and job.history:
            rows = [[when(event.time), status_name(event.status), event.message] for event in job.history]
            ctx.out.line()
            ctx.out.table(("time", "status", "message"), rows, title=f"history of {job.job_id}")


def _print_metadata(ctx: Context, jobs: list[compute_pb2.JobInfo], one_workflow: bool) -> None:
    """Each workflow's metadata (the same in all of its jobs), as compact JSON."""
    shown: dict[str, dict[str, Any]] = {}
    for job in jobs:
        metadata = metadata_json(job)
        if metadata is not None and job.workflow_id not in shown:
            shown[job.workflow_id] = metadata
    for workflow_id, metadata in shown.items():
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        ctx.out.line(f"metadata: {text}" if one_workflow else f"metadata of workflow {workflow_id}: {text}")


def _print_payment(ctx: Context, state: compute_pb2.PaymentState | None) -> None:
    """What one workflow's escrow payment stands at (a free workflow says nothing)."""
    if state is None or state.status in (
        compute_pb2.PAYMENT_STATUS_UNSPECIFIED,
        compute_pb2.PAYMENT_STATUS_FREE,
    ):
        return
    units = ctx.units(state.chain_id, state.token_address)
    line = f"payment: {payment_status(state)}, locked {units.show(state.locked_amount or 0)}"
    if state.claimed_amount:
        line += f", claimed {units.show(state.claimed_amount)}"
    ctx.out.line(line + f" (token {state.token_address}; c2d proof checks the claim)")
    if state.claim_transaction:
        ctx.out.line(f"claim transaction: {state.claim_transaction}")


def cmd_logs(ctx: Context) -> int:
    args = ctx.args
    for chunk in ctx.client().logs(args.job_id, follow=args.follow, offset=args.offset):
        ctx.out.write_bytes(chunk)
    return 0


def cmd_result(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client()
    jobs = client.status(job_id=args.job_id)
    if not jobs:
        raise C2DError("NOT_FOUND", f"no job {args.job_id}")
    job = jobs[0]
    files = [file for file in job.results if args.index is None or file.index == args.index]
    if not files:
        which = f"no result {args.index}" if args.index is not None else "no results"
        raise C2DError("NOT_FOUND", f"job {args.job_id} has {which} (status: {status_name(job.status)})")
    out_dir = Path(args.output)
    saved = []
    names: set[str] = set()
    with DownloadWatch(ctx.out) as watch:
        for file in files:
            name = result_file_name(file, names)
            names.add(name)
            path = client.result(
                args.job_id,
                file.index,
                out_dir / name,
                expected=file,
                on_progress=functools.partial(watch.update, file),
            )
            saved.append({**result_json(file), "path": str(path)})
            if not ctx.out.json_mode:
                ctx.out.line(f"saved {path} ({file.size} bytes)")
    if ctx.out.json_mode:
        ctx.out.json(saved)
    return 0


def _workflow(ctx: Context) -> compute_pb2.Workflow:
    # A container's registryAuth is encrypted to the node's key here: the password never travels in the clear.
    workflow = load_workflow(ctx.args.workflow, ctx.args.env, node_key=ctx.node_public_key)
    if not workflow.environment_id and not all(stage.environment_id for stage in workflow.stages):
        raise UsageError(
            'no environment: pass --env ID or set "environment" in the workflow (c2d envs lists them)'
        )
    return workflow


def _metadata(ctx: Context) -> dict[str, Any] | None:
    """``--metadata``: a JSON object (the node says when it is too large)."""
    text = ctx.args.metadata
    if text is None:
        return None
    try:
        metadata = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise UsageError('--metadata must be a JSON object, e.g. \'{"name": "run 7"}\'')
    return metadata


def _payment(ctx: Context, workflow: compute_pb2.Workflow, *, required: bool) -> compute_pb2.Payment | None:
    """The chain and token to pay with: as given, else the one the workflow's environments accept.

    None when the environments take no payment (the node then says why it cannot start), or when
    several fit and ``required`` is false (``init`` then only validates).
    """
    args = ctx.args
    if args.chain_id and args.token:
        return compute_pb2.Payment(chain_id=args.chain_id, token_address=args.token)
    envs = ctx.client(signed=False).environments()
    available = offers(envs, workflow_env_ids(workflow))
    fitting = {offer.key: offer for offer in choose(available, args.chain_id, args.token)}
    if len(fitting) == 1:
        chain_id, token = next(iter(fitting))
        return compute_pb2.Payment(chain_id=chain_id, token_address=token)
    if not available and not (args.chain_id or args.token):
        return None
    if not fitting:
        raise UsageError(
            f"the workflow's environments accept none of that; they accept: {accepted(available)}"
        )
    if not required:
        return None
    raise UsageError(
        f"the workflow's environments accept several payments; choose with --chain-id and --token: "
        f"{accepted(list(fitting.values()))}"
    )
