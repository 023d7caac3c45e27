"""One pod's life on the node, in its own thread: volumes, init containers, containers, deadline, stop.

The worker runs the pod's containers group by group (each init container alone, in order, then all
app containers together), reports every change of state as a status update (so watchers get a
MODIFIED event with a new resourceVersion), enforces ``activeDeadlineSeconds`` (SIGTERM, SIGKILL
after the pod's grace period, phase Failed with reason DeadlineExceeded), and when the pod is
deleted stops its containers (SIGTERM, SIGKILL when the grace period is over), removes them and its
volumes, and tells the API the pod may go. Docker's event stream wakes it (see kubelet.py); it also
re-inspects its containers every half second as a fallback, so a missed event costs latency only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import docker.errors

from . import image_pull, pod_status, secrets
from .container_config import ContainerConfigError, create_kwargs
from .networkpolicy import network_mode
from .node import Node
from .objects import Obj, now
from .pod_status import Observed
from .volumes import PodVolumes

log = logging.getLogger("k8s_double")

_TICK = 0.5
_RETRY = 1.0
_DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"


class PodWorker:
    def __init__(self, node: Node, pod: Obj) -> None:
        self.node = node
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.namespace, self.name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        spec = pod["spec"]
        self._init_specs: list[dict[str, Any]] = spec.get("initContainers") or []
        self._groups = [[c] for c in self._init_specs] + [spec["containers"]]
        self._group = 0
        self._group_started = False
        self._volumes = PodVolumes(node, pod)
        self._containers: dict[str, Any] = {}
        self._observed: dict[str, Observed] = {}
        self._pull_failures: dict[str, int] = {}
        self._start_time, self._started = now(), time.monotonic()
        self._failure: tuple[str, str] | None = None
        self._finished = False
        self._signalled = False
        self._kill_at: float | None = None
        self._retry_at = 0.0
        self._pod_ip: str | None = None
        self._published: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._requested_grace: int | None = None
        self._gone = False
        self._final = False
        self._wake = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"k8s-double-pod-{self.namespace}/{self.name}", daemon=True
        )

    # control, from the kubelet's threads --------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def poke(self) -> None:
        self._wake.set()

    def terminate(self, grace: int, *, gone: bool = False, final: bool = False) -> None:
        """Stop the pod: SIGTERM now, SIGKILL after ``grace`` s; ``gone``: its object is already deleted."""
        with self._lock:
            if self._requested_grace is None or grace < self._requested_grace:
                self._requested_grace = grace
            self._gone = self._gone or gone or final
            self._final = self._final or final
        self._wake.set()

    @property
    def done(self) -> bool:
        return self.thread.ident is not None and not self.thread.is_alive()

    # the loop -------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.clear()  # before looking: a poke from now on triggers another pass
                self._step()
                self._publish()
                if self._requested() is not None and not self._running():
                    break
                self._wake.wait(self._tick())
        except Exception:
            log.exception("pod %s/%s: the kubelet double failed", self.namespace, self.name)
        finally:
            self._teardown()

    def _requested(self) -> int | None:
        with self._lock:
            return self._requested_grace

    def _step(self) -> None:
        self._refresh()
        requested = self._requested()
        if requested is not None:
            self._begin_stop(requested)
        self._enforce_kill()
        if requested is not None or self._finished:
            return
        if self._deadline_passed():
            self._failure = ("DeadlineExceeded", _DEADLINE_MESSAGE)
            self._finished = True
            self._begin_stop(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        elif not self._group_started:
            self._start_group()
        else:
            self._advance()

    def _tick(self) -> float:
        if self._requested() is not None or (self._kill_at is not None and self._running()):
            return 0.2
        if self._finished:
            return 5.0
        current = time.monotonic()
        delays = [_TICK]
        if self._retry_at > current:
            delays.append(self._retry_at - current)
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            delays.append(self._started + deadline - current)
        return max(0.01, min(delays))

    # containers -----------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Re-inspect containers that may still change (not exited, not failed to start)."""
        for name, container in self._containers.items():
            observed = self._observed.get(name)
            if observed is not None and (observed.start_error or _exited(observed)):
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.reload()
                self._observed[name] = Observed(attrs=container.attrs)
        self._pod_ip = self._pod_ip or pod_status.pod_ip(list(self._observed.values()))

    def _running(self) -> bool:
        return any(
            (o.attrs or {}).get("State", {}).get("Status") == "running" for o in self._observed.values()
        )

    def _start_group(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        group = self._groups[self._group]
        try:
            self._volumes.prepare()
        except ContainerConfigError as exc:
            self._wait_for_retry(
                [(spec["name"], exc) for spec in group if spec["name"] not in self._containers]
            )
            return
        network = network_mode(self.node.store, self.pod)
        problems = []
        for spec in group:
            if spec["name"] not in self._containers:
                try:
                    self._create(spec, network)
                except ContainerConfigError as exc:
                    problems.append((spec["name"], exc))
        if problems:
            self._wait_for_retry(problems)
            return
        for spec in group:
            self._start(spec["name"])
        self._group_started = True

    def _wait_for_retry(self, problems: list[tuple[str, ContainerConfigError]]) -> None:
        for name, exc in problems:
            self._observed[name] = Observed(waiting=(exc.reason, exc.message))
        self._retry_at = time.monotonic() + _RETRY

    def _create(self, spec: dict[str, Any], network: str) -> None:
        image = self._image(spec)
        kwargs = create_kwargs(
            self.node,
            self.pod,
            spec,
            image_user=(image.attrs.get("Config") or {}).get("User") or "",
            mounts=self._volumes.mounts_for(spec),
            network_mode=network,
        )
        try:
            container = self.node.docker.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            raise ContainerConfigError(str(exc.explanation or exc), "CreateContainerError") from exc
        self._containers[spec["name"]] = container
        self._observed[spec["name"]] = Observed(attrs=container.attrs)

    def _image(self, spec: dict[str, Any]) -> Any:
        """The image: pulled (with the pod's image pull secrets) when it is on a loopback registry and
        missing, or the policy is Always; else the local one, never pulled (the machine is offline).
        ErrImagePull, then ImagePullBackOff, when there is none."""
        image = spec["image"]
        if image_pull.pullable(image):
            present = image_pull.present(self.node.docker, image)
            if not present or spec.get("imagePullPolicy") == "Always":
                try:
                    image_pull.pull(
                        self.node.docker, image, secrets.pull_credentials(self.node.store, self.pod, image)
                    )
                except image_pull.PullFailed as exc:
                    self._pull_failed(spec, str(exc))
        try:
            return self.node.docker.images.get(image)
        except docker.errors.ImageNotFound:
            failures = self._pull_failures[spec["name"]] = self._pull_failures.get(spec["name"], 0) + 1
            if failures == 1:
                message = f'failed to pull image "{spec["image"]}": the API server double never pulls and it is not present locally'
                raise ContainerConfigError(message, "ErrImagePull") from None
            raise ContainerConfigError(
                f'Back-off pulling image "{spec["image"]}"', "ImagePullBackOff"
            ) from None

    def _pull_failed(self, spec: dict[str, Any], reason: str) -> None:
        """ErrImagePull with the registry's reason the first time, then ImagePullBackOff (retried)."""
        failures = self._pull_failures[spec["name"]] = self._pull_failures.get(spec["name"], 0) + 1
        if failures == 1:
            raise ContainerConfigError(f'failed to pull image "{spec["image"]}": {reason}', "ErrImagePull")
        raise ContainerConfigError(f'Back-off pulling image "{spec["image"]}": {reason}', "ImagePullBackOff")

    def _start(self, name: str) -> None:
        container = self._containers[name]
        try:
            container.start()
            container.reload()
        except docker.errors.APIError as exc:
            self._observed[name] = Observed(
                attrs=container.attrs, start_error=(str(exc.explanation or exc), now())
            )
            return
        self._observed[name] = Observed(attrs=container.attrs)

    def _advance(self) -> None:
        """When the current group has exited: next group, or the pod is finished."""
        statuses = [self._status(spec, self._group) for spec in self._groups[self._group]]
        if not all(pod_status.is_terminated(s) for s in statuses):
            return
        is_init = self._group < len(self._init_specs)
        if not is_init or pod_status.exit_code(statuses[0]) != 0:
            self._finished = True
            return
        self._group += 1
        self._group_started = False
        self._wake.set()

    def _deadline_passed(self) -> bool:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - self._started >= deadline

    def _begin_stop(self, grace: int) -> None:
        """SIGTERM (the image's stop signal) to running containers once; SIGKILL due after ``grace``."""
        kill_at = time.monotonic() + grace
        self._kill_at = kill_at if self._kill_at is None else min(self._kill_at, kill_at)
        if not self._signalled:
            self._signalled = True
            for name in self._running_names():
                signal = (self._observed[name].attrs or {}).get("Config", {}).get("StopSignal") or "SIGTERM"
                self._signal(name, signal)

    def _enforce_kill(self) -> None:
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            for name in self._running_names():
                self._signal(name, "SIGKILL")

    def _running_names(self) -> list[str]:
        return [
            n
            for n, o in self._observed.items()
            if (o.attrs or {}).get("State", {}).get("Status") == "running"
        ]

    def _signal(self, name: str, signal: str) -> None:
        with contextlib.suppress(docker.errors.APIError):  # it may have exited meanwhile
            self._containers[name].kill(signal=signal)

    # status ---------------------------------------------------------------------------------------

    def _status(self, spec: dict[str, Any], group: int) -> dict[str, Any]:
        observed = self._observed.get(spec["name"])
        if observed is None:
            reached = group <= self._group and not self._finished
            observed = Observed(waiting=("ContainerCreating" if reached else "PodInitializing", ""))
        return pod_status.container_status(spec, observed)

    def _build_status(self) -> dict[str, Any]:
        init = [self._status(spec, i) for i, spec in enumerate(self._init_specs)]
        main = [self._status(spec, len(self._init_specs)) for spec in self._groups[-1]]
        phase = pod_status.phase(init, main, self._failure)
        previous = (self._published or {}).get("conditions") or []
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": pod_status.conditions(previous, init, main, phase),
            "hostIP": self.node.host_ip,
            "hostIPs": [{"ip": self.node.host_ip}],
            "startTime": self._start_time,
            "qosClass": self.pod["status"].get("qosClass", "BestEffort"),
            "containerStatuses": main,
        }
        if init:
            status["initContainerStatuses"] = init
        if self._pod_ip:
            status["podIP"], status["podIPs"] = self._pod_ip, [{"ip": self._pod_ip}]
        if self._failure:
            status["reason"], status["message"] = self._failure
        return status

    def _publish(self) -> None:
        with self._lock:
            if self._gone:
                return
        status = self._build_status()
        if status == self._published:
            return
        if not self.node.api.update_pod_status(self.namespace, self.name, self.uid, status):
            self.terminate(0, gone=True)  # deleted without our noticing: stop at once
        self._published = status

    # the end --------------------------------------------------------------------------------------

    def _teardown(self) -> None:
        for container in self._containers.values():
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True, v=True)
        self._volumes.cleanup()
        with self._lock:
            released = self._requested_grace is not None and not self._gone
        if released:
            self.node.api.release_pod(self.namespace, self.name, self.uid)


def _exited(observed: Observed) -> bool:
    return (observed.attrs or {}).get("State", {}).get("Status") in ("exited", "dead")
