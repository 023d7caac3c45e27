"""Pod and container statuses as the kubelet reports them, computed from Docker's container state.

A container is ``waiting`` (reason ContainerCreating, PodInitializing, ErrImagePull,
ImagePullBackOff, CreateContainerConfigError or CreateContainerError) until Docker runs it,
``running`` (``startedAt``) while it does, and ``terminated`` (``exitCode``, ``reason`` Completed /
Error / OOMKilled / StartError, ``startedAt``, ``finishedAt``) once it exited. The pod phase is
Pending until a container started, Running while any runs, Succeeded when every container exited 0,
Failed otherwise, or when an init container failed or the active deadline passed. That is the
``restartPolicy: Never`` lifecycle; the double never restarts containers (see the package limits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .objects import now

_UNSET_TIME = "0001-01-01T00:00:00Z"
WAITING_DEFAULT = ("ContainerCreating", "")


@dataclass(frozen=True)
class Observed:
    """What the worker knows of one container: Docker's inspect data and/or why it is waiting."""

    attrs: dict[str, Any] | None = None
    waiting: tuple[str, str] | None = None
    start_error: tuple[str, str] | None = None  # (message, when): Docker could not start it


def docker_time(text: str | None) -> str | None:
    """Docker's nanosecond RFC 3339 as ``metav1.Time`` (seconds, ``Z``); None for Docker's zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    return text.split(".")[0].rstrip("Z") + "Z"


def container_state(observed: Observed) -> dict[str, Any]:
    if observed.start_error is not None:
        message, stamp = observed.start_error
        return {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": message,
                "startedAt": stamp,
                "finishedAt": stamp,
            }
        }
    attrs = observed.attrs
    if attrs is None or attrs["State"]["Status"] == "created":
        reason, message = observed.waiting or WAITING_DEFAULT
        return {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    state = attrs["State"]
    if state["Status"] in ("running", "paused", "restarting"):
        return {"running": {"startedAt": docker_time(state.get("StartedAt"))}}
    return {"terminated": _terminated(attrs)}


def _terminated(attrs: dict[str, Any]) -> dict[str, Any]:
    state = attrs["State"]
    code = int(state.get("ExitCode", 0))
    reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
    terminated: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "startedAt": docker_time(state.get("StartedAt")),
        "finishedAt": docker_time(state.get("FinishedAt")),
        "containerID": f"docker://{attrs['Id']}",
    }
    if state.get("Error"):
        terminated["message"] = state["Error"]
    return terminated


def container_status(container: dict[str, Any], observed: Observed) -> dict[str, Any]:
    state = container_state(observed)
    status: dict[str, Any] = {
        "name": container["name"],
        "image": container["image"],
        "imageID": (observed.attrs or {}).get("Image", ""),
        "ready": "running" in state,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
        "lastState": {},
    }
    if observed.attrs is not None:
        status["containerID"] = f"docker://{observed.attrs['Id']}"
    return status


def is_terminated(status: dict[str, Any]) -> bool:
    return "terminated" in status["state"]


def exit_code(status: dict[str, Any]) -> int | None:
    terminated = status["state"].get("terminated")
    return None if terminated is None else terminated["exitCode"]


def phase(init: list[dict[str, Any]], main: list[dict[str, Any]], failure: tuple[str, str] | None) -> str:
    if failure is not None or any(exit_code(s) not in (None, 0) for s in init):
        return "Failed"
    if main and all(is_terminated(s) for s in main):
        return "Succeeded" if all(exit_code(s) == 0 for s in main) else "Failed"
    if any("running" in s["state"] or is_terminated(s) for s in main):
        return "Running"
    return "Pending"


def conditions(
    previous: list[dict[str, Any]], init: list[dict[str, Any]], main: list[dict[str, Any]], pod_phase: str
) -> list[dict[str, Any]]:
    """Initialized / ContainersReady / Ready, keeping each condition's transition time while it holds.

    PodScheduled belongs to the scheduler: :meth:`Api.update_pod_status` keeps the stored one.
    """
    initialized = all(exit_code(s) == 0 for s in init)
    unready = [s["name"] for s in main if not s["ready"]]
    done = pod_phase in ("Succeeded", "Failed")
    wanted = [
        _condition("PodReadyToStartContainers", True),
        _condition("Initialized", initialized, "" if initialized else "ContainersNotInitialized"),
        _ready("Ready", unready, done),
        _ready("ContainersReady", unready, done),
    ]
    old = {c["type"]: c for c in previous}
    for condition in wanted:
        before = old.get(condition["type"])
        if before is not None and before["status"] == condition["status"]:
            condition["lastTransitionTime"] = before.get("lastTransitionTime")
    return wanted


def _ready(kind: str, unready: list[str], done: bool) -> dict[str, Any]:
    if not unready:
        return _condition(kind, True)
    message = f"containers with unready status: [{' '.join(unready)}]"
    return _condition(kind, False, "PodCompleted" if done else "ContainersNotReady", "" if done else message)


def _condition(kind: str, status: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": kind,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now(),
    }
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def pod_ip(observed: list[Observed]) -> str | None:
    """The bridge address of the first container that has one (each container has its own namespace)."""
    for item in observed:
        settings = (item.attrs or {}).get("NetworkSettings") or {}
        for network in (settings.get("Networks") or {}).values():
            if network.get("IPAddress"):
                return network["IPAddress"]
    return None
