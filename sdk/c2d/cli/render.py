"""How node data reads to a person and to a script: status names, times, rows and JSON documents."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2

# "algo started"/"algo stopped": the algorithm's container; "finished": the job's end.
JOB_COLUMNS = (
    "stage",
    "job id",
    "status",
    "exit",
    "algo started",
    "algo stopped",
    "finished",
    "results",
    "message",
)
WATCH_COLUMNS = ("stage", "job id", "status", "exit", "message")
ENV_COLUMNS = (
    "id", "engine", "health", "resources", "pool", "free", "running", "queued free", "queued paid", "max queue",
    "duration", "access",
)  # fmt: skip


def status_name(code: int) -> str:
    """``JOB_STATUS_RUNNING`` -> ``running``; a number this SDK does not know stays readable."""
    return _enum_name(common_pb2.JobStatus, code, "JOB_STATUS_") or f"status {code}"


def health_name(code: int) -> str:
    return _enum_name(common_pb2.EngineHealth, code, "ENGINE_HEALTH_") or f"health {code}"


def _enum_name(enum: Any, code: int, prefix: str) -> str | None:
    try:
        name: str = enum.Name(code)
    except ValueError:
        return None
    return name.removeprefix(prefix).lower().replace("_", " ")


def when(stamp: timestamp_pb2.Timestamp) -> str | None:
    """Local time to the second; None for an unset timestamp."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: int) -> str:
    if not seconds:
        return "-"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def to_dict(message: Message) -> dict[str, Any]:
    """The message as JSON-ready data, snake_case field names, every field present."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# ------------------------------------------------------------ jobs


def exit_cell(job: compute_pb2.JobInfo) -> str | None:
    """The algorithm's exit code, and whether it was killed for memory: ``137 (out of memory)``."""
    if job.HasField("termination"):
        code = str(job.termination.exit_code)
        return f"{code} (out of memory)" if job.termination.oom_killed else code
    return str(job.exit_code) if job.HasField("exit_code") else None


def job_row(job: compute_pb2.JobInfo) -> list[Any]:
    return [
        job.stage_index,
        job.job_id,
        status_name(job.status),
        exit_cell(job),
        when(job.started),
        when(job.algorithm_finished),
        when(job.finished),
        len(job.results) or None,
        message(job),
    ]


def watch_row(job: compute_pb2.JobInfo) -> list[Any]:
    """The narrower row of the live display while waiting."""
    return [job.stage_index, job.job_id, status_name(job.status), exit_cell(job), message(job)]


def message(job: compute_pb2.JobInfo) -> str:
    """The node's words on the status, unless they only repeat its name.

    The node's ``status_text`` is often just the status's name; why a stage failed (or was
    stopped, or skipped) is then the message of the history event that set its status.
    """
    text = job.status_text.strip()
    if text and text.lower() != status_name(job.status):
        return text
    history = list(job.history)
    if job.status != common_pb2.JOB_STATUS_SETTLING_PAYMENT:
        # Once a paid workflow settled, each job's end is said again ("payment settled"): why the
        # job ended is the event before its payment started settling.
        settling = [i for i, e in enumerate(history) if e.status == common_pb2.JOB_STATUS_SETTLING_PAYMENT]
        history = history[: settling[0]] if settling else history
    for event in reversed(history):
        if event.status == job.status:
            said = event.message.strip()
            return "" if said.lower() == status_name(job.status) else said
    return ""


def job_json(job: compute_pb2.JobInfo) -> dict[str, Any]:
    """Every field of the job; status as a name plus its number, sizes as numbers."""
    doc = to_dict(job)
    doc["status"] = status_name(job.status)
    doc["status_code"] = int(job.status)
    doc["results"] = [result_json(file) for file in job.results]
    doc["metadata"] = metadata_json(job)
    doc["termination"] = termination_json(job)
    doc["history"] = [
        {
            "status": status_name(event.status),
            "status_code": int(event.status),
            "message": event.message,
            "time": doc_time(event.time),
        }
        for event in job.history
    ]
    return doc


def metadata_json(job: compute_pb2.JobInfo) -> dict[str, Any] | None:
    """The start's metadata as the consumer wrote it (whole numbers without a fraction); None without."""
    if not job.HasField("metadata"):
        return None
    return _integral(json_format.MessageToDict(job.metadata))


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def termination_json(job: compute_pb2.JobInfo) -> dict[str, Any] | None:
    """How the algorithm ended; None while it runs or when it never ran."""
    if not job.HasField("termination"):
        return None
    return {"exit_code": job.termination.exit_code, "oom_killed": job.termination.oom_killed}


def doc_time(stamp: timestamp_pb2.Timestamp) -> str | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToJsonString()


def result_json(file: compute_pb2.ResultFile) -> dict[str, Any]:
    kind = compute_pb2.ResultKind.Name(file.kind).removeprefix("RESULT_KIND_").lower()
    return {"index": file.index, "name": file.name, "kind": kind, "size": file.size, "sha256": file.sha256}


def stage_status_json(job: compute_pb2.JobInfo) -> dict[str, Any]:
    """The short form `start --wait --json` gives per stage."""
    doc: dict[str, Any] = {
        "index": job.stage_index,
        "job_id": job.job_id,
        "status": status_name(job.status),
        "status_code": int(job.status),
        "status_text": job.status_text,
    }
    if job.HasField("exit_code"):
        doc["exit_code"] = job.exit_code
    doc["termination"] = termination_json(job)
    return doc


# ------------------------------------------------------------ environments


def env_row(env: common_pb2.Environment) -> list[Any]:
    free = f"yes, {duration(env.free.max_job_duration_seconds)}" if env.free.enabled else "no"
    span = f"{duration(env.min_job_duration_seconds)}..{duration(env.max_job_duration_seconds)}"
    return [
        env.id,
        env.engine,
        health_name(env.engine_health),
        ", ".join(_resource(resource) for resource in env.resources),
        _pool(env),
        free,
        env.running_jobs,
        _queue(env.free_queue),
        _queue(env.paid_queue),
        duration(env.max_queue_seconds),
        span,
        env_access(env),
    ]


def env_access(env: common_pb2.Environment) -> str:
    """Who may start there, per tier: ``free: token 0x5fbd... (chain 8996) or allow list; paid: open``."""
    tiers = [("free", env.free.access)] if env.free.enabled else []
    tiers.append(("paid", env.paid_access))
    if not any(_restricted(policy) for _, policy in tiers):
        return "open"
    return "; ".join(f"{name}: {_policy(policy)}" for name, policy in tiers)


def _restricted(policy: common_pb2.AccessPolicy) -> bool:
    return policy.allow_list or bool(policy.access_lists)


def _policy(policy: common_pb2.AccessPolicy) -> str:
    if not _restricted(policy):
        return "open"
    ways = [f"token {listed.address} (chain {listed.chain_id})" for listed in policy.access_lists]
    if policy.allow_list:
        ways.append("allow list")
    return " or ".join(ways)


def _pool(env: common_pb2.Environment) -> str:
    """``machine-1: cpu 0/2 cores, ...``: the hardware the environment shares, available of total
    (a stage may wait for it while the environment itself has room); ``-`` when it shares none."""
    if not env.HasField("pool") or not env.pool.id:
        return "-"
    shared = ", ".join(
        f"{r.id} {r.available:g}/{r.total:g}{f' {r.unit}' if r.unit else ''}" for r in env.pool.resources
    )
    return f"{env.pool.id}: {shared}"


def _queue(tier: common_pb2.QueueTier) -> str:
    """How many stages of a tier wait for capacity, and for how long the first has waited."""
    if not tier.queued_jobs:
        return "0"
    return f"{tier.queued_jobs} (longest {duration(tier.longest_wait_seconds)})"


def _resource(resource: common_pb2.Resource) -> str:
    """``ram 6/8 GiB [1..4/job; 1..2/cpu]``: available of total, then what one job may have."""
    unit = f" {resource.unit}" if resource.unit else ""
    limits = [f"{resource.min:g}..{(resource.max or resource.total):g}/job"]
    limits += [_constraint(c) for c in resource.constraints]
    return f"{resource.id} {resource.available:g}/{resource.total:g}{unit} [{'; '.join(limits)}]"


def _constraint(constraint: common_pb2.ResourceConstraint) -> str:
    low = f"{constraint.min:g}" if constraint.min else "0"
    high = f"{constraint.max:g}" if constraint.max else ""
    return f"{low}..{high}/{constraint.id}"


def env_json(env: common_pb2.Environment) -> dict[str, Any]:
    doc = to_dict(env)
    doc["engine_health"] = health_name(env.engine_health)
    return doc
