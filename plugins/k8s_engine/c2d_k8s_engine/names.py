"""Names, labels and annotations of a job's Kubernetes objects, derived from ids that may not fit them.

Object names must be DNS-1123 labels (lower-case letters, digits and ``-``,
at most 63), label values at most 63 of ``[A-Za-z0-9_.-]``; job ids may be
longer or hold ``:``, ``@`` or ``+``. So every job gets a base name made of a
readable slug of its id and a hash of the whole id (two ids never share a
name), its label value is the id itself when it fits and such a slug
otherwise, and the full ids ride in annotations. Everything is a pure
function of the ids: a restarted plugin finds the same objects.
"""

from __future__ import annotations

import hashlib
import re

ENGINE = "kubernetes"
LABEL_ENGINE = "c2d.engine"
LABEL_NODE = "c2d.node"
LABEL_JOB = "c2d.job"
LABEL_WORKFLOW = "c2d.workflow"
LABEL_STEP = "c2d.step"
ANNOTATION_JOB = "c2d.job-id"
ANNOTATION_WORKFLOW = "c2d.workflow-id"
ANNOTATION_HOST = "c2d.host-id"
CONFIGURATION = "configuration"
ALGORITHM = "algorithm"
PUBLISHING = "publishing"
STEPS = (CONFIGURATION, ALGORITHM, PUBLISHING)
QUOTA_NAME = "c2d-capacity"

MAX_LABEL = 63
SLUG_CHARS = 30
HASH_CHARS = 10
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NOT_DNS = re.compile(r"[^a-z0-9-]+")
NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def digest(text: str, chars: int = HASH_CHARS) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def slug(text: str, limit: int) -> str:
    """Lower-case letters, digits and single dashes, trimmed to ``limit``, never starting or ending with -."""
    return NOT_DNS.sub("-", text.lower())[:limit].strip("-")


def dns_name(text: str, limit: int = MAX_LABEL) -> str:
    """``text`` as a DNS-1123 label when it is one (and fits), else a slug of it with a hash."""
    if len(text) <= limit and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", text):
        return text
    head = slug(text, limit - HASH_CHARS - 1)
    return f"{head}-{digest(text)}" if head else f"x-{digest(text)}"


def label_value(text: str) -> str:
    """``text`` as a label value when it is one, else a readable part of it and a hash."""
    if len(text) <= MAX_LABEL and LABEL_VALUE.match(text):
        return text
    head = NOT_LABEL.sub("-", text)[: MAX_LABEL - HASH_CHARS - 1].strip("-_.")
    return f"{head}-{digest(text)}" if head else digest(text)


def job_base(job_id: str) -> str:
    """``c2d-<slug>-<hash>``: the job's root object, and the stem of every other object's name."""
    head = slug(job_id, SLUG_CHARS)
    return f"c2d-{head}-{digest(job_id)}" if head else f"c2d-{digest(job_id)}"


def pod_name(job_id: str, step: str) -> str:
    return f"{job_base(job_id)}-{step}"


def claim_name(job_id: str) -> str:
    return f"{job_base(job_id)}-data"


def secret_name(job_id: str) -> str:
    return f"{job_base(job_id)}-pod-key"


def pull_secret_name(job_id: str) -> str:
    """The job's own image pull Secret (its algorithm image's registry credentials)."""
    return f"{job_base(job_id)}-pull"


def policy_name(job_id: str) -> str:
    return f"{job_base(job_id)}-no-egress"


def default_namespace(host_id: str) -> str:
    """One namespace per node: ``c2d-<node>`` (the node's id is its address)."""
    return dns_name(f"c2d-{host_id}")


def node_labels(host_id: str) -> dict[str, str]:
    """What selects every object this engine made for the node."""
    return {LABEL_ENGINE: ENGINE, LABEL_NODE: label_value(host_id)}


def job_labels(host_id: str, job_id: str, workflow_id: str) -> dict[str, str]:
    return {
        **node_labels(host_id),
        LABEL_JOB: label_value(job_id),
        LABEL_WORKFLOW: label_value(workflow_id),
    }


def job_annotations(host_id: str, job_id: str, workflow_id: str) -> dict[str, str]:
    """The ids in full: labels may have had to shorten them."""
    return {ANNOTATION_JOB: job_id, ANNOTATION_WORKFLOW: workflow_id, ANNOTATION_HOST: host_id}


def selector(labels: dict[str, str]) -> str:
    """A label selector matching every label of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def job_selector(host_id: str, job_id: str) -> str:
    return selector({**node_labels(host_id), LABEL_JOB: label_value(job_id)})
