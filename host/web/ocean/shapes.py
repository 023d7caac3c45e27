"""The JSON ocean-node answers with, made from the node's own messages and views.

Environments come from :class:`common_pb2.Environment` (the gRPC face's GetEnvironments listing),
jobs from :class:`host.store.jobs.JobView` (its GetComputeStatus). Ocean's job statuses are the
numbers below 100 this node uses too; the few that Ocean lacks are shown as the Ocean status a
client would act on the same way, with this node's status in ``statusText``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host import statuses
from host.payments import states
from host.store.jobs import JobView
from host.store.models import Payment

S = common_pb2.JobStatus

# ocean-node's C2DStatusText, by C2DStatusNumber.
OCEAN_TEXT: dict[int, str] = {
    0: "Job started",
    1: "Job queued",
    2: "Job expired in queue",
    10: "Pulling algorithm image",
    11: "Pulling algorithm image failed",
    20: "Configuring volumes",
    21: "Volume creation failed",
    22: "Container creation failed",
    30: "Provisioning data",
    31: "Data provisioning failed",
    32: "Algorithm provisioning failed",
    40: "Running algorithm ",
    41: "Failed to run algorithm",
    42: "Error: disk quota exceeded",
    60: "Publishing results",
    62: "Failed to upload results to storage",
    70: "Job finished",
    71: "Job settling",
}
# This node's statuses that Ocean has no number for, as the one an Ocean client treats alike:
# a stage waiting for an earlier one is queued; a job stopped, timed out or skipped has ended
# and its results (if any) are there, as Ocean's "finished"; out of memory and lost are failures.
OCEAN_EQUIVALENT: dict[int, int] = {
    S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE: 1,
    S.JOB_STATUS_TIMED_OUT: 70,
    S.JOB_STATUS_OUT_OF_MEMORY: 41,
    S.JOB_STATUS_STOPPED: 70,
    S.JOB_STATUS_SKIPPED: 70,
    S.JOB_STATUS_LOST: 41,
}
RESULT_TYPE = {
    compute_pb2.RESULT_KIND_OUTPUT: "output",
    compute_pb2.RESULT_KIND_ALGORITHM_LOG: "algorithmLog",
    compute_pb2.RESULT_KIND_CONFIGURATION_LOG: "configurationLog",
    compute_pb2.RESULT_KIND_PUBLISHING_LOG: "publishLog",
}
RESOURCE_TYPE = {
    common_pb2.RESOURCE_TYPE_CPU: "cpu",
    common_pb2.RESOURCE_TYPE_RAM: "ram",
    common_pb2.RESOURCE_TYPE_DISK: "disk",
    common_pb2.RESOURCE_TYPE_GPU: "gpu",
}


def ocean_status(status: int) -> tuple[int, str]:
    """Ocean's status number and text for one of this node's statuses."""
    if status in OCEAN_TEXT:
        return status, OCEAN_TEXT[status]
    number = OCEAN_EQUIVALENT.get(status, 0)
    return number, f"{OCEAN_TEXT[number].strip()}: {statuses.name(status)}"


def _stamp(seconds: float | None) -> str:
    """Ocean writes times as strings of seconds since the epoch, "0" for not yet."""
    return "0" if seconds is None else f"{seconds:.3f}"


def job(view: JobView) -> dict[str, Any]:
    """A job as ocean-node's ComputeJob (with the DB fields ocean.js reads: algo timestamps, isFree)."""
    number, text = ocean_status(view.status)
    shown: dict[str, Any] = {
        "owner": view.owner,
        "jobId": view.job_id,
        "workflowId": view.workflow_id,
        "environment": view.environment_id,
        "dateCreated": _stamp(view.created_at),
        "dateFinished": None if view.finished_at is None else _stamp(view.finished_at),
        "status": number,
        "statusText": text,
        "results": [
            {
                "filename": r.name,
                "filesize": r.size,
                "type": RESULT_TYPE.get(r.kind, "output"),
                "index": r.index,
            }
            for r in view.results
        ],
        "maxJobDuration": view.max_duration_seconds,
        "queueMaxWaitTime": view.queue_limit_seconds or 0,
        "algoStartTimestamp": _stamp(view.started_at),
        "algoStopTimestamp": _stamp(view.algorithm_finished_at),
        "isFree": view.payment is None,
        "isRunning": not view.terminal,
        "resources": [{"id": r["id"], "amount": r["amount"]} for r in view.resources],
        "containerImage": view.algorithm_image,
        "metadata": view.metadata if view.metadata is not None else {},
        "terminationDetails": {
            "OOMKilled": view.oom_killed if view.exit_code is not None else None,
            "exitCode": view.exit_code,
        },
    }
    if view.payment is not None:
        shown["payment"] = payment(view.payment)
    return shown


def payment(row: Payment) -> dict[str, Any]:
    """A paid job's payment as ocean-node shows it (chainId, token, lockTx, claimTx, cancelTx, cost),
    with the escrow, the lock and its state; amounts in the token's smallest unit, as decimal text.
    ``cost`` is what was claimed, known once the payment has settled."""
    settled = row.status in (states.CLAIMED, states.RELEASED)
    cancelled = row.status == states.RELEASED and bool(row.claim_tx) and row.claim_amount in ("", "0")
    return {
        "chainId": row.chain_id,
        "token": row.token,
        "escrowAddress": row.escrow,
        "payee": row.payee,
        "status": row.status,
        "lockTx": row.lock_tx or None,
        "claimTx": row.claim_tx if settled and not cancelled and row.claim_tx else None,
        "cancelTx": row.claim_tx if cancelled else None,
        "lockedAmount": row.amount if row.status != states.LOCK_FAILED else "0",
        "cost": row.claim_amount if settled else None,
    }


def _resource(resource: common_pb2.Resource) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": resource.id,
        "total": resource.total,
        "min": resource.min,
        "max": resource.max,
        "inUse": resource.in_use,
    }
    if resource.description:
        shown["description"] = resource.description
    if resource.type in RESOURCE_TYPE:
        shown["type"] = RESOURCE_TYPE[resource.type]
    if resource.constraints:
        shown["constraints"] = [{"id": c.id, "min": c.min, "max": c.max} for c in resource.constraints]
    return shown


def _price(fees: common_pb2.ChainFees, price: common_pb2.ResourcePrice) -> float:
    """Ocean prices are in whole tokens per unit-minute; this node's in the token's smallest unit."""
    return float(Decimal(price.price_per_unit_minute or "0") / (Decimal(10) ** fees.token_decimals))


def environment(env: common_pb2.Environment) -> dict[str, Any]:
    """An environment as ocean-node's ComputeEnvironment."""
    fees: dict[str, list[dict[str, Any]]] = {}
    for chain in env.fees:
        fees.setdefault(str(chain.chain_id), []).append(
            {
                "feeToken": chain.token_address,
                "prices": [{"id": p.resource_id, "price": _price(chain, p)} for p in chain.prices],
            }
        )
    os_name, _, architecture = env.platform.partition("/")
    shown: dict[str, Any] = {
        "id": env.id,
        "description": env.description,
        "consumerAddress": next((f.payee_address for f in env.fees if f.payee_address), ""),
        "storageExpiry": env.storage_expiry_seconds,
        "minJobDuration": env.min_job_duration_seconds,
        "maxJobDuration": env.max_job_duration_seconds,
        "maxJobs": env.max_jobs,
        "fees": fees,
        "resources": [_resource(r) for r in env.resources],
        "access": {"addresses": [], "accessLists": None},
        "platform": {"architecture": architecture or os_name, "os": os_name if architecture else ""},
        "enableNetwork": env.network.allow_network,
        "runningJobs": env.running_jobs,
        "queuedJobs": env.paid_queue.queued_jobs,
        "queuedFreeJobs": env.free_queue.queued_jobs,
        "queMaxWaitTime": env.paid_queue.longest_wait_seconds,
        "queMaxWaitTimeFree": env.free_queue.longest_wait_seconds,
        "runMaxWaitTime": 0,
        "runMaxWaitTimeFree": 0,
        "engine": env.engine,
        "maxQueueSeconds": env.max_queue_seconds,
    }
    if env.free.enabled:
        shown["free"] = {
            "maxJobDuration": env.free.max_job_duration_seconds,
            "maxJobs": env.free.max_concurrent_jobs,
            "maxJobsPerConsumer": env.free.max_jobs_per_consumer,
            "resources": [_resource(r) for r in env.free.resources],
            "access": {"addresses": [], "accessLists": None},
        }
    return shown


def quote(reply: compute_pb2.InitializeComputeResponse) -> dict[str, Any]:
    """initializeCompute's answer: the escrow payment (when priced) and the free tier's verdict."""
    shown: dict[str, Any] = {
        "algorithm": {},
        "datasets": [],
        "freeEligible": reply.free_eligible,
        "consumerChecked": reply.consumer_checked,
    }
    if reply.HasField("quote"):
        q = reply.quote
        shown["payment"] = {
            "escrowAddress": q.escrow_address,
            "chainId": q.chain_id,
            "payee": q.payee,
            "token": q.token_address,
            "amount": q.amount,
            "minLockSeconds": q.min_lock_seconds,
        }
    return shown
