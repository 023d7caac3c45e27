"""Which PodService call a stage's pod may make in which state: one table, consulted for every call.

A pod key is a bearer credential that an algorithm might get hold of (a leak, a
bug in an engine); the table bounds what such a key is worth. Inputs are handed
out only while the stage provisions (before its algorithm starts), results are
accepted only while it publishes (after its algorithm has ended), and nothing
once it has ended (:func:`host.auth.verify_pod` refuses a terminal stage's key).

The state is what the host itself has recorded, never what a pod claims:

- ``queued``: no capacity granted yet; no pod runs.
- ``provisioning``: granted, the engine has not reported the algorithm's start
  (``algorithm_started_at`` unset), not publishing, and no pod has reported a
  provisioning failure.
- ``provisioning ended``: a pod reported a provisioning failure; publishing comes next.
- ``running``: the engine reported the algorithm's start, not yet publishing.
- ``publishing``: the engine reported ``JOB_STATUS_PUBLISHING``. Every engine
  (the stub shim, Docker and Kubernetes drivers) emits that event only once the
  algorithm has ended (or provisioning failed) and *before* it starts
  pod-publishing, so it is the host's reliable sign that the algorithm is over.
  The pod's own ``PUBLISHING_STARTED`` report is accepted only in this state,
  so a pod can never move a stage into publishing by itself.
- ``publishing ended``: a pod reported that publishing failed (its last call).
- ``ended``: terminal.

The engine's events reach the host over a stream, so an honest pod-publishing
may call a moment before the host has applied the PUBLISHING event. A call that
is not allowed in the recorded state, but whose state may still move towards it
(see :data:`MAY_BECOME`), waits up to :data:`CATCH_UP_SECONDS` for the host to
catch up; then it is refused with UNAVAILABLE ("not yet"), which pods retry, so a
busy node delays an honest pod but never fails it. A call the state can no
longer allow is refused with FAILED_PRECONDITION at once.
"""

from __future__ import annotations

import enum

from c2d.common.v1 import common_pb2
from c2d.pod.v1 import pod_pb2
from host.store.models import Stage

S = common_pb2.JobStatus
P = pod_pb2.PodPhase

# How long a call waits for the engine's event that would allow it (the honest race is milliseconds).
CATCH_UP_SECONDS = 10.0
# A waiting call re-reads its stage when the orchestrator records a change of it, and at least
# this often besides (a change recorded by no status, such as a grant, is seen that way).
CATCH_UP_POLL_SECONDS = 0.5

PROVISIONING_FAILURES = frozenset(
    {S.JOB_STATUS_DATA_PROVISIONING_FAILED, S.JOB_STATUS_ALGORITHM_PROVISIONING_FAILED}
)


class PodState(enum.Enum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    PROVISIONING_ENDED = "provisioning ended"
    RUNNING = "running"
    PUBLISHING = "publishing"
    PUBLISHING_ENDED = "publishing ended"
    ENDED = "ended"


def state_of(stage: Stage) -> PodState:
    """The stage's state as the host has recorded it (engine events and the pods' own reports)."""
    if stage.terminal:
        return PodState.ENDED
    if stage.status == S.JOB_STATUS_PUBLISHING:
        if stage.pod_report == S.JOB_STATUS_RESULTS_UPLOAD_FAILED:
            return PodState.PUBLISHING_ENDED
        return PodState.PUBLISHING
    if stage.granted is None:
        return PodState.QUEUED
    if stage.algorithm_started_at is not None:
        return PodState.RUNNING
    if stage.pod_report in PROVISIONING_FAILURES:
        return PodState.PROVISIONING_ENDED
    return PodState.PROVISIONING


def phase_call(phase: int) -> str:
    """``UpdateJobStatus(PROVISIONING_STARTED)``: the key a phase report has in :data:`ALLOWED`."""
    return f"UpdateJobStatus({P.Name(phase).removeprefix('POD_PHASE_')})"


_PROVISIONING = frozenset({PodState.PROVISIONING})
_PUBLISHING = frozenset({PodState.PUBLISHING})

# call (a PodService method, or UpdateJobStatus with its phase) -> the states it is accepted in.
ALLOWED: dict[str, frozenset[PodState]] = {
    "GetProvisioning": _PROVISIONING,
    "FetchInput": _PROVISIONING,
    phase_call(P.POD_PHASE_PROVISIONING_STARTED): _PROVISIONING,
    phase_call(P.POD_PHASE_PROVISIONING_FINISHED): _PROVISIONING,
    phase_call(P.POD_PHASE_DATA_PROVISIONING_FAILED): _PROVISIONING,
    phase_call(P.POD_PHASE_ALGORITHM_PROVISIONING_FAILED): _PROVISIONING,
    phase_call(P.POD_PHASE_PUBLISHING_STARTED): _PUBLISHING,
    phase_call(P.POD_PHASE_PUBLISHING_FINISHED): _PUBLISHING,
    phase_call(P.POD_PHASE_PUBLISHING_FAILED): _PUBLISHING,
    "GetUploadOffset": _PUBLISHING,
    "PublishResult": _PUBLISHING,
}

# States the host may still learn the stage has left (its engine's events lag behind the pods).
MAY_BECOME: dict[PodState, frozenset[PodState]] = {
    PodState.QUEUED: frozenset(),
    PodState.PROVISIONING: frozenset({PodState.RUNNING, PodState.PUBLISHING}),
    PodState.PROVISIONING_ENDED: frozenset({PodState.PUBLISHING}),
    PodState.RUNNING: frozenset({PodState.PUBLISHING}),
    PodState.PUBLISHING: frozenset(),
    PodState.PUBLISHING_ENDED: frozenset(),
    PodState.ENDED: frozenset(),
}


def may_catch_up(state: PodState, allowed: frozenset[PodState]) -> bool:
    """Whether waiting for the engine's next events could make the call allowed."""
    return bool(MAY_BECOME[state] & allowed)


def _allowed_text(call: str) -> str:
    return " or ".join(sorted(s.value for s in ALLOWED[call]))


def refusal(call: str, state: PodState) -> str:
    return f"{call} is not accepted while the stage is {state.value} (only while it is {_allowed_text(call)})"


def not_yet(call: str, state: PodState) -> str:
    return (
        f"{call} is not accepted while the stage is {state.value} (only while it is {_allowed_text(call)}); "
        "the node has not yet recorded that change: try again"
    )
