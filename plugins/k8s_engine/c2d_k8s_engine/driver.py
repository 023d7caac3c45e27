"""The job driver: one thread per job that carries it through its steps, as Kubernetes objects.

Steps, in order (the pods only when the job has them):

1. the job's objects (CONFIGURING_VOLUMES): the root ConfigMap, the volume
   claim, the Secret with the pod key, the job's image pull Secret (see
   :meth:`JobDriver.pull_secret`), the NetworkPolicy, all owned by the root;
2. pod-configuration (PROVISIONING);
3. the algorithm's pod (RUNNING), with its time limit as ``activeDeadlineSeconds``,
   then its log;
4. pod-publishing (PUBLISHING), after a failed or timed-out algorithm too, never after a stop;
5. the pods and the Secrets deleted, then one terminal event (the claim and the
   root stay until DestroyJob).

The driver waits in a watch of the job's pods (see :mod:`c2d_k8s_engine.podwatch`),
never in a polling loop. Every step can be resumed: objects have fixed names,
and each step's start and end are written to ``steps.json``, so a driver
started by a restarted plugin runs from the top, skips what ended, re-attaches
to the pod that runs, and starts what never started. A step whose pod is gone
although it had started is not run twice: the job is LOST.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from c2d.plugin.kit.driver import ENDED, OUTCOME, JobDriverBase, JobGone
from c2d.plugin.kit.jobdir import JobDir, Record, utc_now
from c2d.plugin.kit.jobspec import ImageRef
from c2d.plugin.kit.outcome import STOPPED, TIMED_OUT, Ending, algorithm_times, classify, publishing_failed
from c2d.plugin.kit.pullcreds import LOST_ON_RESTART, RECORD_KEY, Credentials, JobCredentials, entry_for
from c2d_k8s_engine import kube, logs, manifests, names, podstatus
from c2d_k8s_engine.cluster import Cluster
from c2d_k8s_engine.config import KubernetesSettings
from c2d_k8s_engine.podstatus import PodView
from c2d_k8s_engine.podwatch import WATCH_SECONDS, JobPods

# Past activeDeadlineSeconds, grace and this slack, the driver deletes the pod itself.
DEADLINE_SLACK_SECONDS = 5.0
# A pod deleted with a grace period that is still there this long after it is given up on.
KILL_SLACK_SECONDS = 15.0
STARTED = "started"
BACKEND = "the Kubernetes cluster"
MIB = 1 << 20


@dataclass(frozen=True)
class Runtime:
    """What every driver shares: the cluster, the config, the node, and whom to tell about new events."""

    cluster: Cluster
    settings: KubernetesSettings
    host_id: str
    changed: Callable[[], None]
    credentials: JobCredentials


@dataclass(frozen=True)
class PodEnd:
    """How a step's pod ended: what the API last said of it, and the driver's own reason, if any."""

    pod: PodView
    reason: str | None = None  # STOPPED or TIMED_OUT when the driver ended it
    failure: tuple[str, str] | None = None  # (status, message) when its container could not start

    @property
    def finished(self) -> str:
        return self.pod.finished_at or utc_now()


class PodVanished(Exception):
    """The step's pod is gone although the step had started: someone deleted it."""


class ObjectFailed(Exception):
    """The API refused one of the job's objects (a quota, an invalid field...)."""


class JobDriver(JobDriverBase):
    """Drives one job from wherever it is to its terminal event."""

    engine = "the kubernetes engine plugin"
    backend_wait_key = "api_wait_seconds"

    def __init__(self, runtime: Runtime, job: JobDir, record: Record) -> None:
        super().__init__(job, record, runtime.changed, "c2d_k8s_engine.driver")
        self.runtime = runtime
        self.namespace = str(self.limits["namespace"])
        self.core = runtime.cluster.core
        self.timeout = float(runtime.cluster.timeout)
        self.pods = JobPods(
            self.core, self.namespace, names.job_selector(record["host_id"], job.job_id), self.timeout
        )
        self.pull_secret_name: str | None = None  # the job's own image pull Secret, once it is there
        self.credentials_lost = False  # the job came with credentials a restart lost for good

    def unreachable(self, exc: Exception) -> bool:
        return kube.is_unreachable(exc)

    def describe(self, exc: Exception) -> str:
        return kube.describe(exc)

    def wait_for_backend(self, timeout: float) -> bool:
        if not self.runtime.cluster.wait_until_up(self.namespace, timeout, self.cancelled):
            return False
        self.pods.version = None  # list again: events may have been missed meanwhile
        return True

    def lost_message(self, exc: Exception) -> str:
        return (
            f"the Kubernetes API at {self.runtime.cluster.address} stopped answering ({kube.describe(exc)}) "
            "and the job could not be carried on"
        )

    def drive(self) -> None:
        if self.job.is_ended():
            return
        steps = self.job.steps()
        early = self.stopped_before_start()
        if early is not None:
            self.finish(early)
            return
        pod = self.record.get("pod")
        outcome: Record | None = steps.get(OUTCOME)
        try:
            owner = self.prepare()
        except ObjectFailed as exc:
            self.finish(
                {"status": "VOLUME_CREATION_FAILED", "message": f"the job's volume could not be made: {exc}"}
            )
            return
        try:
            if outcome is None and pod:
                outcome = self.configure(owner)
            if outcome is None:
                outcome = self.algorithm(owner)
            if pod and not outcome.get("stopped"):
                outcome = self.publish(owner, outcome)
        except PodVanished as exc:
            outcome = {**algorithm_times(outcome or {}), "status": "LOST", "message": str(exc)}
        self.finish(outcome)

    def finish(self, outcome: Record) -> None:
        """Deletes the pods and the key (DestroyJob removes the rest), then writes the terminal event."""
        try:
            self.remove_pods()
        except Exception as exc:
            if not kube.is_unreachable(exc) and not isinstance(exc, ApiException):
                raise
            self.log.warning("could not delete the job's pods", reason=kube.describe(exc))
        self.end(**outcome)

    # Steps -------------------------------------------------------------------------

    def prepare(self) -> Record:
        """The root object and what it owns besides the pods; the owner reference for the pods."""
        self.emit_once(
            "CONFIGURING_VOLUMES",
            f"making the job's volume: a claim of {self.grant.disk_gib:g} GiB in namespace {self.namespace}",
        )
        root = self.create(
            self.core.create_namespaced_config_map,
            self.core.read_namespaced_config_map,
            manifests.root(self.record, self.namespace),
        )
        if kube.annotation(root, names.ANNOTATION_JOB) != self.job.job_id:
            raise ObjectFailed(f"the ConfigMap {kube.name_of(root)} exists but belongs to another job")
        owner = manifests.owner_reference(root)
        if self.record.get("pod"):
            self.create(
                self.core.create_namespaced_secret,
                self.core.read_namespaced_secret,
                manifests.pod_key_secret(self.record, self.namespace, owner),
            )
        self.pull_secret_name = self.pull_secret(owner)
        self.create(
            self.core.create_namespaced_persistent_volume_claim,
            self.core.read_namespaced_persistent_volume_claim,
            manifests.claim(self.record, self.namespace, owner),
        )
        if not self.record.get("network"):
            networking = self.runtime.cluster.networking
            self.create(
                networking.create_namespaced_network_policy,
                networking.read_namespaced_network_policy,
                manifests.no_egress_policy(self.record, self.namespace, owner),
            )
        return owner

    def pull_secret(self, owner: Record) -> str | None:
        """The job's image pull Secret (``kubernetes.io/dockerconfigjson``), when its algorithm image's
        registry has credentials: the job's own, else the operator's ``registries`` entry for it.

        Made once, before the algorithm's pod (which alone references it); a resumed driver finds
        the one made before. Credentials a plugin restart lost come back with RecoverJob, which
        the driver waits for (bounded); a job they never come back for goes on with the operator's.
        """
        if self.job.steps().get(names.ALGORITHM):
            return None  # its pod was made already: it references the Secret or it does not
        name = names.pull_secret_name(self.job.job_id)
        existing = kube.read_or_none(
            self.core.read_namespaced_secret, name, self.namespace, _request_timeout=self.timeout
        )
        if existing is not None and kube.annotation(existing, names.ANNOTATION_JOB) == self.job.job_id:
            self.runtime.credentials.forget(self.job.job_id)  # the Secret holds them now
            return name
        credentials = self.pull_credentials()
        if credentials is None:
            return None
        self.create(
            self.core.create_namespaced_secret,
            self.core.read_namespaced_secret,
            manifests.pull_secret(self.record, self.namespace, owner, credentials),
        )
        self.runtime.credentials.forget(self.job.job_id)
        self.log.info("image pull secret made", secret=name, registry=credentials.server)
        return name

    def pull_credentials(self) -> Credentials | None:
        """The job's own credentials (from StartJob, or RecoverJob after a restart), else the
        operator's for the algorithm image's registry, else None."""
        image = ImageRef.from_json(self.record["image"]).repository
        if self.record.get(RECORD_KEY):
            found = self.runtime.credentials.get(self.job.job_id)
            if found is None:
                self.log.info("waiting for the node to hand over the job's registry credentials again")
                found = self.runtime.credentials.wait(
                    self.job.job_id,
                    float(self.limits.get(self.backend_wait_key, 120)),
                    lambda: self.cancelled.is_set() or self.stopping(),
                )
            if found is not None:
                return found
            self.credentials_lost = True
        return entry_for(self.runtime.settings.registries, image)

    def create(self, create_call: Callable[..., Any], read_call: Callable[..., Any], body: Record) -> Record:
        try:
            return kube.create(create_call, read_call, self.namespace, body, _request_timeout=self.timeout)
        except ApiException as exc:
            if kube.is_unreachable(exc):
                raise
            raise ObjectFailed(f"{body['kind']} {body['metadata']['name']}: {kube.describe(exc)}") from None

    def configure(self, owner: Record) -> Record | None:
        """pod-configuration; the job's outcome when it failed (the algorithm is then skipped), else None."""
        if self.job.steps().get(names.CONFIGURATION, {}).get("state") == ENDED:
            return None
        self.emit_once("PROVISIONING", "pod-configuration started: fetching the inputs and the algorithm")
        ended = self.run_pod(
            names.CONFIGURATION,
            lambda: manifests.step_pod(self.record, names.CONFIGURATION, self.namespace, owner),
            float(self.record["pod"]["timeout_seconds"]),
        )
        if ended is None or ended.reason == STOPPED:
            return self.settle(names.CONFIGURATION, self.stopped("during provisioning"))
        if ended.failure is not None:
            return self.settle(
                names.CONFIGURATION,
                {"status": "DATA_PROVISIONING_FAILED", "message": f"pod-configuration: {ended.failure[1]}"},
            )
        if ended.pod.exit_code == 0 and ended.reason is None and not ended.pod.deadline_exceeded:
            self.job.record_step(names.CONFIGURATION, {"state": ENDED, "exit_code": 0})
            return None
        return self.settle(
            names.CONFIGURATION,
            {
                "status": "DATA_PROVISIONING_FAILED",
                "message": pod_failure(names.CONFIGURATION, ended, self.record),
            },
        )

    def algorithm(self, owner: Record) -> Record:
        """The algorithm to its end; the job's outcome so far (recorded before anything else happens)."""
        times: Record = {}

        def on_started(pod: PodView) -> None:
            times["algorithm_started"] = pod.started_at
            times["image_digest"] = podstatus.image_digest(pod.image_id)
            self.emit_once(
                "RUNNING",
                "the algorithm is running",
                algorithm_started=pod.started_at,
                image_digest=times["image_digest"],
            )

        ended = self.run_pod(
            names.ALGORITHM,
            lambda: manifests.algorithm_pod(self.record, self.namespace, owner, self.pull_secret_name),
            float(self.record["time_limit_seconds"]),
            on_started,
        )
        if ended is None:
            return self.settle(names.ALGORITHM, self.stopped("before the algorithm started"))
        if ended.failure is not None:
            status, message = ended.failure
            if status == "PULL_IMAGE_FAILED" and self.credentials_lost:
                message += LOST_ON_RESTART
            return self.settle(names.ALGORITHM, {"status": status, "message": message, **times})
        if ended.pod.exists:
            self.collect_log()
        if ended.pod.evicted and ended.reason is None:
            return self.settle(
                names.ALGORITHM,
                {
                    **times,
                    "exit_code": podstatus.exit_code(ended.pod),
                    "status": "LOST",
                    "message": f"the cluster evicted the algorithm's pod ({ended.pod.pod_message or 'no reason given'})",
                    "algorithm_finished": ended.finished,
                },
            )
        timed_out = ended.reason == TIMED_OUT or (ended.reason is None and ended.pod.deadline_exceeded)
        ending = Ending(
            exit_code=podstatus.exit_code(ended.pod),
            oom_killed=ended.pod.oom_killed,
            reason=TIMED_OUT if timed_out else ended.reason,
        )
        outcome = classify(
            ending, self.record["grant"], int(self.record["time_limit_seconds"]), self.stop_reason(), BACKEND
        )
        return self.settle(names.ALGORITHM, {**outcome, **times, "algorithm_finished": ended.finished})

    def publish(self, owner: Record, outcome: Record) -> Record:
        """pod-publishing; the outcome, changed only when publishing failed or was stopped."""
        state = self.job.steps().get(names.PUBLISHING, {})
        if state.get("state") == ENDED:
            return dict(state.get(OUTCOME) or outcome)
        self.emit_once("PUBLISHING", "pod-publishing started: uploading the results and the logs")
        ended = self.run_pod(
            names.PUBLISHING,
            lambda: manifests.step_pod(self.record, names.PUBLISHING, self.namespace, owner),
            float(self.record["pod"]["timeout_seconds"]),
        )
        if ended is None or ended.reason == STOPPED:
            result = {**algorithm_times(outcome), **self.stopped("during publishing")}
        elif ended.failure is not None:
            result = publishing_failed(outcome, f"pod-publishing: {ended.failure[1]}")
        elif ended.pod.exit_code != 0 or ended.reason is not None or ended.pod.deadline_exceeded:
            result = publishing_failed(outcome, pod_failure(names.PUBLISHING, ended, self.record))
        else:
            result = outcome
        self.job.record_step(names.PUBLISHING, {"state": ENDED, OUTCOME: result})
        return result

    # Pods --------------------------------------------------------------------------

    def run_pod(
        self,
        step: str,
        make: Callable[[], Record],
        limit_seconds: float,
        on_started: Callable[[PodView], None] | None = None,
    ) -> PodEnd | None:
        """Creates (or re-attaches to) the step's pod and follows it to its end; None if stopped first."""
        name = names.pod_name(self.job.job_id, step)
        state = self.job.steps().get(step, {})
        if self.pods.get(name) is None:
            if state.get("state") == STARTED:
                raise PodVanished(f"the {step} pod {name} disappeared while it ran")
            if self.stopping():
                return None
            try:
                self.pods.put(
                    kube.create(
                        self.core.create_namespaced_pod,
                        self.core.read_namespaced_pod,
                        self.namespace,
                        make(),
                        _request_timeout=self.timeout,
                    )
                )
            except ApiException as exc:
                if kube.is_unreachable(exc):
                    raise
                return PodEnd(
                    podstatus.GONE,
                    failure=(
                        "CONTAINER_CREATION_FAILED",
                        f"the {step} pod could not be created: {kube.describe(exc)}",
                    ),
                )
            self.log.info("pod created", pod=name)
        if state.get("state") != STARTED:
            state = {"state": STARTED, "started": utc_now(), "started_epoch": time.time()}
            self.job.record_step(step, state)
        started = float(state["started_epoch"])
        grace = float(self.limits.get("timeout_grace_seconds", 2))
        ended = self.follow(
            name,
            step,
            deadline=started + limit_seconds + grace + DEADLINE_SLACK_SECONDS,
            pending_deadline=started + float(self.limits.get("pending_timeout_seconds", 600)),
            on_started=on_started,
        )
        if step != names.ALGORITHM and ended.pod.exists:
            logs.append_pod_log(self.core, self.namespace, name, step, self.job.pods_log_path)
        return ended

    def follow(
        self,
        name: str,
        step: str,
        *,
        deadline: float,
        pending_deadline: float,
        on_started: Callable[[PodView], None] | None,
    ) -> PodEnd:
        """Waits in the job's pod watch until the pod ends; ends it on a stop request or past ``deadline``."""
        watch = StepWatch(self, name, step, deadline, pending_deadline, on_started)
        while True:
            ended = self.pods.wait(watch.check, watch.wake_in())
            if ended is not None:
                return ended

    def image_of(self, step: str) -> str:
        if step == names.ALGORITHM:
            return ImageRef.from_json(self.record["image"]).reference
        return ImageRef.from_json(self.record["pod"]["image"]).reference

    def delete_pod(self, name: str, grace: float) -> None:
        """SIGTERM, ``grace`` seconds, SIGKILL (the kubelet's deletion); a pod already gone is fine."""
        kube.delete(
            self.core.delete_namespaced_pod,
            name,
            self.namespace,
            grace_period_seconds=max(0, int(grace)),
            _request_timeout=self.timeout,
        )

    def collect_log(self) -> None:
        """The algorithm's output into the job's log (StreamJobLogs serves it once the job ended)."""
        name = names.pod_name(self.job.job_id, names.ALGORITHM)
        try:
            size = logs.collect(
                self.core,
                self.namespace,
                name,
                names.ALGORITHM,
                self.job.log_path,
                int(self.limits.get("log_max_mib", 64)) * MIB,
            )
        except (OSError, ApiException) as exc:
            self.log.warning("could not collect the algorithm's log", reason=kube.describe(exc))
            return
        self.log.info("algorithm log collected", bytes=size)

    def remove_pods(self) -> None:
        """Deletes the job's pods and its Secrets (pod key, image pull); missing ones are fine."""
        self.runtime.credentials.forget(self.job.job_id)
        remove_pods(self.core, self.namespace, self.job.job_id, self.timeout)
        remove_secrets(self.core, self.namespace, self.job.job_id, self.timeout)


class StepWatch:
    """What the driver looks at after each change of a step's pod, and when it must look again regardless."""

    def __init__(
        self,
        driver: JobDriver,
        name: str,
        step: str,
        deadline: float,
        pending_deadline: float,
        on_started: Callable[[PodView], None] | None,
    ) -> None:
        self.driver = driver
        self.name = name
        self.step = step
        self.image = driver.image_of(step)
        self.deadline = deadline
        self.pending_deadline = pending_deadline
        self.on_started = on_started
        self.started = False
        self.reason: str | None = None  # STOPPED or TIMED_OUT once the driver deleted the pod
        self.kill_deadline = 0.0

    def wake_in(self) -> float:
        """Seconds until a deadline needs looking at (the watch wakes earlier on any change)."""
        now = time.time()
        times = [WATCH_SECONDS]
        if self.reason is None:
            times.append(self.deadline - now)
            if not self.started:
                times.append(self.pending_deadline - now)
        else:
            times.append(self.kill_deadline - now)
        return max(0.5, min(times))

    def check(self) -> PodEnd | None:
        """How the pod ended, or None while it runs (after stopping it when it must stop)."""
        driver = self.driver
        if driver.cancelled.is_set():
            raise JobGone
        pod = podstatus.view(driver.pods.pods.get(self.name), self.step)
        if not pod.exists:
            if self.reason is not None or driver.stopping():
                return PodEnd(pod, self.reason or STOPPED)
            raise PodVanished(f"the {self.step} pod {self.name} was deleted while it ran")
        if pod.started_at and not self.started:
            self.started = True
            if self.on_started is not None:
                self.on_started(pod)
        failure = podstatus.start_failure(pod, self.image) if self.reason is None else None
        if pod.ended:
            # A stop whose deletion the driver had not seen yet is still a stop, not a failure.
            reason = self.reason or (STOPPED if driver.stopping() else None)
            return PodEnd(pod, reason, failure if reason is None else None)
        if failure is not None:
            driver.delete_pod(self.name, 0)
            return PodEnd(pod, None, failure)
        return self._enforce(pod)

    def _enforce(self, pod: PodView) -> PodEnd | None:
        """Stop requests, the time limit, a pod that never starts, a pod that will not die."""
        driver, now = self.driver, time.time()
        if self.reason is None and driver.stopping():
            self._end(STOPPED, driver.stop_grace())
        elif self.reason is None and now >= self.deadline:
            driver.log.info("time limit reached: deleting the pod", pod=self.name)
            self._end(TIMED_OUT, float(driver.limits.get("timeout_grace_seconds", 2)))
        elif self.reason is None and not self.started and now >= self.pending_deadline:
            why = pod.unschedulable or pod.waiting_reason or pod.phase or "pending"
            driver.delete_pod(self.name, 0)
            return PodEnd(
                pod, None, ("CONTAINER_CREATION_FAILED", f"the {self.step} pod did not start in time: {why}")
            )
        elif self.reason is not None and now >= self.kill_deadline:
            driver.log.warning("the pod outlived its grace period: giving up on it", pod=self.name)
            driver.delete_pod(self.name, 0)
            return PodEnd(pod, self.reason)
        return None

    def _end(self, reason: str, grace: float) -> None:
        self.reason = reason
        self.kill_deadline = time.time() + grace + KILL_SLACK_SECONDS
        if self.step == names.ALGORITHM:  # stopped or out of time: keep what it logged until now
            self.driver.collect_log()
        self.driver.delete_pod(self.name, grace)


def remove_pods(core: Any, namespace: str, job_id: str, timeout: float, grace: int = 0) -> None:
    """Deletes the job's pods by their names: SIGTERM, ``grace`` seconds, SIGKILL (none for a job that
    has ended or is destroyed). Missing pods are fine."""
    for step in names.STEPS:
        kube.delete(
            core.delete_namespaced_pod,
            names.pod_name(job_id, step),
            namespace,
            grace_period_seconds=grace,
            _request_timeout=timeout,
        )


def remove_secrets(core: Any, namespace: str, job_id: str, timeout: float) -> None:
    """Deletes the job's Secrets by their names (the pod key, the image pull credentials)."""
    for name in (names.secret_name(job_id), names.pull_secret_name(job_id)):
        kube.delete(core.delete_namespaced_secret, name, namespace, _request_timeout=timeout)


def pod_failure(step: str, ended: PodEnd, record: Record) -> str:
    """What went wrong with a pod, in a few words."""
    name = f"pod-{step}"
    if ended.reason == TIMED_OUT or ended.pod.deadline_exceeded:
        return f"{name} ran past its time limit of {record['pod']['timeout_seconds']} s"
    if ended.pod.oom_killed:
        return f"{name} ran out of memory"
    if ended.pod.evicted:
        return f"{name} was evicted ({ended.pod.pod_message or 'no reason given'})"
    return f"{name} exited with code {podstatus.exit_code(ended.pod)}"
