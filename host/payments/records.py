"""The payment records of a workflow: what each stage ran and cost, as the node signs and claims it.

Billed time is the algorithm's own run time (from its start to its end as the
engine reported them), plus the time the engine spent building the algorithm's
image from its Dockerfile (a failed build too; a reused image adds nothing), in whole minutes started, at the prices fixed in the
quote when the workflow started, and at least the environment's minimum job
duration (``min_minutes`` in the quote) once the algorithm started. Stages that
never ran cost nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

from c2d import billing
from host.store.models import Payment, Stage


def stage_seconds(stage: Stage, now: float) -> float:
    """How long the stage's algorithm ran (nothing when it never started) plus its image's build."""
    built = max(0.0, float(stage.build_seconds or 0))
    if stage.algorithm_started_at is None:
        return built
    end = stage.algorithm_finished_at or stage.finished_at or now
    return built + max(0.0, end - stage.algorithm_started_at)


def stage_record(stage: Stage, quoted: list[dict[str, Any]], now: float) -> dict[str, Any]:
    quoted_minutes = (
        int(quoted[0]["minutes"]) if quoted else max(1, math.ceil(stage.max_duration_seconds / 60))
    )
    min_minutes = int(quoted[0].get("min_minutes", 0)) if quoted else 0  # quotes before v7 had none
    seconds = stage_seconds(stage, now)
    minutes = billing.billed_minutes(seconds, quoted_minutes, min_minutes)
    lines = [
        {
            "resource_id": line["resource_id"],
            "amount": float(line["amount"]),
            "price_per_unit_minute": line["price_per_unit_minute"],
            "cost": str(billing.line_cost(line["amount"], line["price_per_unit_minute"], minutes)),
        }
        for line in quoted
    ]
    return {
        "index": stage.index,
        "job_id": stage.job_id,
        "environment_id": stage.environment_id,
        "status": stage.status_text,
        "algorithm_image": stage.algorithm_image,
        "algorithm_started_at": stage.algorithm_started_at,
        "algorithm_finished_at": stage.algorithm_finished_at,
        **({"build_seconds": round(float(stage.build_seconds), 3)} if stage.build_seconds else {}),
        "billed_seconds": round(seconds, 3),
        "billed_minutes": minutes,
        "quoted_minutes": quoted_minutes,
        "min_minutes": min_minutes,
        "lines": lines,
        "cost": str(sum(int(line["cost"]) for line in lines)),
    }


def build_records(payment: Payment, stages: list[Stage], now: float | None = None) -> dict[str, Any]:
    """The records for a workflow whose stages have all ended; ``claimed_amount`` never exceeds the lock."""
    now = time.time() if now is None else now
    breakdown = payment.quote.get("breakdown", [])
    rows = [
        stage_record(stage, [line for line in breakdown if int(line["stage_index"]) == stage.index], now)
        for stage in sorted(stages, key=lambda s: s.index)
    ]
    total = sum(int(row["cost"]) for row in rows)
    return {
        "version": billing.RECORDS_VERSION,
        "node": payment.payee,
        "workflow_id": payment.workflow_id,
        "payer": payment.payer,
        "chain_id": payment.chain_id,
        "escrow": payment.escrow.lower(),
        "token": payment.token.lower(),
        "lock_id": payment.lock_id,
        "locked_amount": payment.amount,
        "claimed_amount": str(min(total, int(payment.amount))),
        "stages": rows,
    }
