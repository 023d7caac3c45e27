"""What a pod's status says about its step: pure functions from the pod's JSON, for the job driver.

Kubernetes reports a pod's ``phase`` and, per container, ``state``
(waiting, running or terminated, with a reason and an exit code); the pod
itself may carry a reason (``DeadlineExceeded`` past ``activeDeadlineSeconds``,
``Evicted``). These are read into a :class:`PodView`, and the waiting reasons
that mean the container will never start (a missing image, a bad config) into
a failure of the step, as the Docker engine reports a failed pull or create.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
)
CREATE_FAILURES = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError"}
)
# A container the runtime could not start (no /bin/sh in the image...) ends terminated with one of these.
START_FAILURES = frozenset({"StartError", "ContainerCannotRun"})
ENDED_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodView:
    exists: bool
    phase: str = ""
    deleting: bool = False
    started_at: str = ""
    finished_at: str = ""
    terminated: bool = False
    exit_code: int | None = None
    container_reason: str = ""
    container_message: str = ""
    pod_reason: str = ""
    pod_message: str = ""
    waiting_reason: str = ""
    waiting_message: str = ""
    image_id: str = ""
    unschedulable: str = ""

    @property
    def ended(self) -> bool:
        """The step's container will run no more."""
        return self.terminated or self.phase in ENDED_PHASES

    @property
    def running(self) -> bool:
        return bool(self.started_at) and not self.ended

    @property
    def oom_killed(self) -> bool:
        return self.container_reason == "OOMKilled"

    @property
    def deadline_exceeded(self) -> bool:
        return self.pod_reason == "DeadlineExceeded"

    @property
    def evicted(self) -> bool:
        return self.pod_reason == "Evicted"


GONE = PodView(exists=False)


def view(pod: dict[str, Any] | None, container: str) -> PodView:
    """The pod as its step sees it; :data:`GONE` when there is no pod."""
    if pod is None:
        return GONE
    status = pod.get("status") or {}
    state = _container_status(status, container)
    current = state.get("state") or {}
    running, terminated, waiting = (
        current.get("running") or {},
        current.get("terminated"),
        current.get("waiting") or {},
    )
    ended = terminated or {}
    exit_code = ended.get("exitCode")
    return PodView(
        exists=True,
        phase=str(status.get("phase") or ""),
        deleting=bool((pod.get("metadata") or {}).get("deletionTimestamp")),
        started_at=str(running.get("startedAt") or ended.get("startedAt") or ""),
        finished_at=str(ended.get("finishedAt") or ""),
        terminated=terminated is not None,
        exit_code=int(exit_code) if isinstance(exit_code, int | float) else None,
        container_reason=str(ended.get("reason") or ""),
        container_message=str(ended.get("message") or ""),
        pod_reason=str(status.get("reason") or ""),
        pod_message=str(status.get("message") or ""),
        waiting_reason=str(waiting.get("reason") or ""),
        waiting_message=str(waiting.get("message") or ""),
        image_id=str(state.get("imageID") or ""),
        unschedulable=_unschedulable(status),
    )


def _container_status(status: dict[str, Any], container: str) -> dict[str, Any]:
    for found in status.get("containerStatuses") or []:
        if found.get("name") == container:
            return dict(found)
    return {}


def _unschedulable(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "not scheduled")
    return ""


def start_failure(pod: PodView, image: str) -> tuple[str, str] | None:
    """``(status, message)`` when the step's container cannot start, else None."""
    detail = f"{pod.waiting_reason}: {pod.waiting_message}".rstrip(": ")
    if pod.waiting_reason in PULL_FAILURES:
        return "PULL_IMAGE_FAILED", f"the image {image} could not be pulled ({detail})"
    if pod.waiting_reason in CREATE_FAILURES:
        return "CONTAINER_CREATION_FAILED", f"the container could not be created ({detail})"
    if pod.terminated and pod.container_reason in START_FAILURES:
        why = pod.container_message or pod.container_reason
        return "CONTAINER_CREATION_FAILED", f"the container could not be started: {why}"
    return None


def image_digest(image_id: str) -> str:
    """``docker-pullable://repo@sha256:...`` or ``docker://sha256:...`` as the image's digest or id."""
    return image_id.split("://", 1)[-1]


def exit_code(pod: PodView) -> int:
    """The container's exit code; -1 when the pod ended without one (killed before it started)."""
    return pod.exit_code if pod.exit_code is not None else -1
