"""What the engine's Bacalhau jobs are called and labelled, and the idempotency token of each.

Bacalhau label values allow letters, digits and ``-_.`` only, so a job or
node id that is not one is written as a slug plus a hash of the whole id;
the full ids travel in the job's ``Meta``, which takes any string. Every job
of a stage carries ``c2d-engine``, ``c2d-node`` and ``c2d-job`` labels (what
ListJobs finds orphans by) and ``c2d-step``.

The name and the idempotency token of a step's Bacalhau job are derived
from the node, the job id and the time the job was accepted
(:func:`submission_key`). v1.9 ignores the token; its names are unique in a
namespace, so a StartJob sent again, or a driver that submits again after a
restart, finds the job by its name and reaches it, never a second one (see
``Orchestrator.put_job``).
"""

from __future__ import annotations

import hashlib
import re

ENGINE = "bacalhau"
LABEL_ENGINE = "c2d-engine"
LABEL_NODE = "c2d-node"
LABEL_JOB = "c2d-job"
LABEL_STEP = "c2d-step"
META_JOB = "c2d.job-id"
META_WORKFLOW = "c2d.workflow-id"
META_HOST = "c2d.host-id"
CONFIGURATION = "configuration"
ALGORITHM = "algorithm"
PUBLISHING = "publishing"
STEPS = (CONFIGURATION, ALGORITHM, PUBLISHING)

MAX_LABEL = 63
SLUG_CHARS = 40
HASH_CHARS = 12
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")
NOT_NAME = re.compile(r"[^a-z0-9-]+")


def digest(text: str, chars: int = HASH_CHARS) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def label_value(text: str) -> str:
    """``text`` when Bacalhau takes it as a label value, else a slug of it and a hash of the whole."""
    if LABEL_VALUE.match(text):
        return text
    slug = NOT_LABEL.sub("-", text).strip("-_.")[:SLUG_CHARS].rstrip("-_.")
    return f"{slug}-{digest(text)}" if slug else digest(text)


def folder_name(job_id: str) -> str:
    """The job's folder under the work root: a readable slug and a hash (job ids may hold ``:@+``)."""
    slug = NOT_NAME.sub("-", job_id.lower()).strip("-")[:SLUG_CHARS].rstrip("-")
    return f"c2d-{slug}-{digest(job_id)}" if slug else f"c2d-{digest(job_id)}"


def submission_key(host_id: str, job_id: str, step: str, created: str) -> str:
    """What tells one submission of a step apart from every other: the node, the job, the step and
    when the job was accepted (a job id used again after a destroy is another job)."""
    return "\x00".join((host_id, job_id, step, created))


def job_name(job_id: str, step: str, key: str) -> str:
    """Unique per submission: Bacalhau takes a job sent again under a known name as an update of it."""
    return f"{folder_name(job_id)}-{step}-{digest(key, 8)}"


def node_labels(host_id: str) -> dict[str, str]:
    return {LABEL_ENGINE: ENGINE, LABEL_NODE: label_value(host_id)}


def job_labels(host_id: str, job_id: str, step: str) -> dict[str, str]:
    return {**node_labels(host_id), LABEL_JOB: label_value(job_id), LABEL_STEP: step}


def job_meta(host_id: str, job_id: str, workflow_id: str) -> dict[str, str]:
    return {META_HOST: host_id, META_JOB: job_id, META_WORKFLOW: workflow_id}


def idempotency_token(key: str, step: str) -> str:
    """The same for every submission of this step of this job (see :func:`submission_key`), and for no other."""
    return f"c2d-{step}-{digest(key, 32)}"


def is_ours(job: dict[str, object], host_id: str) -> bool:
    """Whether a listed Bacalhau job is one of this node's (by its labels, then its full ids in Meta)."""
    labels, meta = job.get("Labels"), job.get("Meta")
    if not isinstance(labels, dict) or not isinstance(meta, dict):
        return False
    wanted = node_labels(host_id)
    return all(labels.get(k) == v for k, v in wanted.items()) and meta.get(META_HOST) == host_id
