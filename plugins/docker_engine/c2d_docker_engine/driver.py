"""The job driver: one thread per job that carries it through its steps and writes its events.

Steps, in order (the pods only when the job has them):

1. the images: the algorithm's built from its Dockerfile (BUILDING_IMAGE; an identical earlier
   build is reused), else found locally or pulled (PULLING_IMAGE with progress); a build that
   fails ends the job IMAGE_BUILD_FAILED, after pod-publishing has published its ``image.log``;
2. the job's disk (CONFIGURING_VOLUMES): a loop-mounted ext4 filesystem or a plain folder;
3. pod-configuration (PROVISIONING);
4. the algorithm (RUNNING), with its time limit, then its log;
5. pod-publishing (PUBLISHING), after a failed or timed-out algorithm too, never after a stop;
6. the containers removed, then one terminal event.

Every step can be resumed: containers have fixed names, and each step's end
is written to ``steps.json`` before anything depends on it, so a driver
started by a restarted plugin (or after a daemon hiccup) runs from the top,
skips what ended, re-attaches to the container that runs, and starts what
never started. A step that had started but whose container is gone is not
run twice: the job is LOST.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
from docker.models.containers import Container

from c2d.plugin.kit.driver import ENDED, OUTCOME, JobDriverBase
from c2d_docker_engine import build, images, logs, pullauth, retention, volumes
from c2d_docker_engine.buildcontext import Context
from c2d_docker_engine.config import DockerSettings
from c2d_docker_engine.containers import (
    ALGORITHM,
    CONFIGURATION,
    PUBLISHING,
    ROLES,
    HostPaths,
    algorithm_kwargs,
    container_name,
    pod_kwargs,
)
from c2d_docker_engine.daemon import Daemon, describe, is_connection_error
from c2d_docker_engine.jobdir import JobDir, Record, utc_now
from c2d_docker_engine.jobspec import ImageRef
from c2d_docker_engine.outcome import (
    STOPPED,
    TIMED_OUT,
    Ending,
    algorithm_times,
    classify,
    publishing_failed,
)
from c2d_docker_engine.steps import ContainerStep, ContainerVanished, CreationFailed, StepEnd

NEVER_FINISHED = "0001-01-01T00:00:00Z"
CONFLICT = 409
STARTED = "started"
BUILD = "build"
# Docker's init (tini) exits 127 with this prefix when it cannot exec the entrypoint.
INIT_EXEC_FAILED = 127
INIT_FATAL = "[FATAL tini"


@dataclass(frozen=True)
class Ran:
    """A container step that ran: how it ended, when (RFC 3339), and the container (for its logs)."""

    end: StepEnd
    finished: str
    container: Container


class StoppedBeforePull(Exception):
    """A stop came while the driver waited for the job's registry credentials to pull with."""


@dataclass(frozen=True)
class Runtime:
    """What every driver shares: the daemon, the config, the node, and whom to tell about new events."""

    daemon: Daemon
    settings: DockerSettings
    host_id: str
    changed: Callable[[], None]
    credentials: pullauth.JobCredentials
    images: retention.ImageRecord | None = None  # what the engine pulled for algorithms, and when last used


class JobDriver(JobDriverBase):
    """Drives one job from wherever it is to its terminal event."""

    engine = "the docker engine plugin"
    backend_wait_key = "daemon_wait_seconds"

    def __init__(self, runtime: Runtime, job: JobDir, record: Record) -> None:
        super().__init__(job, record, runtime.changed, "c2d_docker_engine.driver")
        self.runtime = runtime
        self.job: JobDir = job
        self.paths = HostPaths(data=job.data, scratch=job.scratch)
        self.client: docker.DockerClient | None = None
        self.build_run: build.BuildRun | None = None  # while the job's image is being built

    # The thread --------------------------------------------------------------------

    def run(self) -> None:
        """The thread's body, with a Docker client of its own for the long calls (wait, pull)."""
        self.client = self.runtime.daemon.new_client()
        try:
            super().run()
        finally:
            self.client.close()

    def unreachable(self, exc: Exception) -> bool:
        return is_connection_error(exc)

    def describe(self, exc: Exception) -> str:
        return describe(exc)

    def wait_for_backend(self, timeout: float) -> bool:
        return self.runtime.daemon.wait_until_up(timeout, self.cancelled)

    def lost_message(self, exc: Exception) -> str:
        return (
            f"the Docker engine at {self.runtime.daemon.address} stopped answering ({describe(exc)}) "
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
            try:
                algorithm_image = self.algorithm_image() if outcome is None else None
            except build.BuildFailed as exc:
                algorithm_image = None
                outcome = self.settle(BUILD, {"status": "IMAGE_BUILD_FAILED", "message": str(exc)})
            except build.BuildStopped:
                self.finish(self.settle(BUILD, self.stopped("while the image was being built")))
                return
            except StoppedBeforePull:
                self.finish(self.stopped("before its image was pulled"))
                return
            self.runtime.credentials.forget(self.job.job_id)  # the image is here: no second use
            pod_image = (
                self.image(ImageRef.from_json(pod["image"]), pod=True)
                if pod and steps.get(PUBLISHING, {}).get("state") != ENDED
                else None
            )
        except images.PullFailed as exc:
            self.runtime.credentials.forget(self.job.job_id)
            self.finish({"status": "PULL_IMAGE_FAILED", "message": str(exc)})
            return
        if outcome is not None and outcome.get("status") == "IMAGE_BUILD_FAILED" and not pod:
            self.finish(outcome)  # no pods to publish image.log: it stays in the job's directory
            return
        try:
            self.prepare_volume()
            if self.job.image_log_path.exists():
                logs.publish_copy(self.job, self.limits["uid"], self.limits["gid"], self.job.image_log_path)
        except (volumes.VolumeError, OSError) as exc:
            self.finish(
                {"status": "VOLUME_CREATION_FAILED", "message": f"the job's disk could not be made: {exc}"}
            )
            return
        try:
            if outcome is None and pod:
                outcome = self.configure(pod_image)
            if outcome is None:
                assert algorithm_image is not None
                outcome = self.algorithm(algorithm_image)
            if pod and not outcome.get("stopped"):
                outcome = self.publish(pod_image, outcome)
        except ContainerVanished as exc:
            outcome = {**algorithm_times(outcome or {}), "status": "LOST", "message": str(exc)}
        self.finish(outcome)

    def finish(self, outcome: Record) -> None:
        """Removes the job's containers (DestroyJob retries when the daemon is away), then writes the terminal event."""
        self.runtime.credentials.forget(self.job.job_id)
        try:
            self.remove_containers()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self.log.warning("could not remove the job's containers", reason=describe(exc))
        build_seconds = self.build_seconds()
        if build_seconds > 0:
            outcome = {**outcome, "build_seconds": round(build_seconds, 3)}  # billed with the algorithm
        self.end(**outcome)

    # Steps -------------------------------------------------------------------------

    def algorithm_image(self) -> images.ImageInfo:
        """The algorithm's image: built from the job's Dockerfile when it has one, else found or pulled."""
        ref = ImageRef.from_json(self.record["image"])
        if not self.record.get("build"):
            return self.image(ref)
        return self.built_image(Context.from_json(self.record["build"]))

    def built_image(self, context: Context) -> images.ImageInfo:
        """The image an identical earlier build made, else a new build (BUILDING_IMAGE); BuildFailed."""
        assert self.client is not None
        record = self.runtime.images
        reference = context.image_ref().reference
        with record.lock if record is not None else contextlib.nullcontext():
            found = build.find_built(self.client, context)
            if found is not None and record is not None:
                record.used(reference)
        if found is not None:
            self.note_build(found, cached=True)
            return found
        self.emit_once("BUILDING_IMAGE", "building the algorithm's image from its Dockerfile")
        limits = build.BuildLimits(
            grant=self.grant,
            cpuset=tuple(self.record.get("cpuset") or ()),
            network=context.network,
        )
        # The build counts against the job's time limit, as its time is billed with the algorithm's.
        timeout = min(
            float(self.limits.get("build_timeout_seconds", 600)), float(self.record["time_limit_seconds"])
        )
        started = time.time()
        self.build_run = build.BuildRun()
        if self.stopping():
            self.build_run.stop()
        try:
            built = build.build(
                self.runtime.daemon, context, limits, timeout, self.job.image_log_path, self.build_run
            )
        except (build.BuildFailed, build.BuildStopped):
            self.job.record_step(BUILD, {"state": ENDED, "failed": True, "seconds": time.time() - started})
            raise
        finally:
            self.build_run = None
        if record is not None:
            record.pulled(reference, built.id)
        self.note_build(built, cached=False, seconds=time.time() - started)
        return built

    def stop_build(self) -> None:
        """StopJob's thread: cancels the build running for this job, if one is."""
        run = self.build_run
        if run is not None:
            run.stop()

    def build_seconds(self) -> float:
        """How long building the job's image took (0: no build, or an earlier identical one reused)."""
        return float(self.job.steps().get(BUILD, {}).get("seconds") or 0)

    def note_build(self, image: images.ImageInfo, *, cached: bool, seconds: float = 0.0) -> None:
        """Records how the job got its image (``steps.json``), and says so in ``image.log``."""
        if self.job.steps().get(BUILD, {}).get("state") == ENDED:
            return  # a resumed driver: the first pass recorded it
        if cached:
            with open(self.job.image_log_path, "a", encoding="utf-8") as log:
                log.write(
                    f"cache hit: the image {image.id} built earlier from the same Dockerfile and files is reused\n"
                )
        self.job.record_step(
            BUILD, {"state": ENDED, "cached": cached, "image_id": image.id, "seconds": round(seconds, 3)}
        )

    def image(self, ref: ImageRef, *, pod: bool = False) -> images.ImageInfo:
        assert self.client is not None
        record = None if pod else self.runtime.images
        if record is None:
            found = images.find(self.client, ref)
        else:
            with record.lock:  # a retention check cannot remove it between finding and recording the use
                found = images.find(self.client, ref)
                if found is not None:
                    record.used(ref.reference)
        if found is not None:
            return found
        what = "the pod image" if pod else "the algorithm's image"
        self.emit({"status": "PULLING_IMAGE", "message": f"pulling {what} {ref.reference}"})
        job_auth = None if pod else pullauth.as_docker(self.job_credentials())
        if job_auth is None and not pod and self.record.get(pullauth.RECORD_KEY) and self.stopping():
            raise StoppedBeforePull
        try:
            pulled = images.pull(
                self.runtime.daemon,
                ref,
                pullauth.for_pull(self.runtime.settings, ref, job_auth),
                self.runtime.settings.pull_timeout_seconds,
                lambda progress: self.emit(
                    {
                        "status": "PULLING_IMAGE",
                        "message": f"pulling {ref.reference}",
                        "details": {"progress": progress},
                    }
                ),
            )
        except images.PullFailed as exc:
            if pod:
                raise images.PullFailed(f"{exc} (the node builds the pod image when it starts)") from None
            if job_auth is None and self.record.get(pullauth.RECORD_KEY):
                raise images.PullFailed(f"{exc}{pullauth.LOST_ON_RESTART}") from None
            raise
        if record is not None:
            record.pulled(ref.reference, pulled.id)
        return pulled

    def job_credentials(self) -> pullauth.Credentials | None:
        """The job's own registry credentials, if it came with some: from StartJob, or, after a plugin
        restart, from the RecoverJob the node sends (waited for, bounded; never while stopping)."""
        if not self.record.get(pullauth.RECORD_KEY):
            return None
        found = self.runtime.credentials.get(self.job.job_id)
        if found is not None:
            return found
        self.log.info("waiting for the node to hand over the job's registry credentials again")
        wait = float(self.limits.get(self.backend_wait_key, 120))
        return self.runtime.credentials.wait(
            self.job.job_id, wait, lambda: self.cancelled.is_set() or self.stopping()
        )

    def prepare_volume(self) -> None:
        mode = self.limits["disk_quota"]
        quota = f"a {self.grant.disk_gib:g} GiB filesystem" if mode == volumes.LOOP_EXT4 else "a folder"
        self.emit_once("CONFIGURING_VOLUMES", f"making the job's disk: {quota}")
        volumes.prepare(self.job, mode, self.grant.disk_bytes, self.limits["uid"], self.limits["gid"])

    def configure(self, image: images.ImageInfo | None) -> Record | None:
        """pod-configuration; the job's outcome when it failed (the algorithm is then skipped), else None."""
        state = self.job.steps().get(CONFIGURATION, {})
        if state.get("state") == ENDED:
            return None
        assert image is not None
        self.emit_once("PROVISIONING", "pod-configuration started: fetching the inputs and the algorithm")
        try:
            ran = self.run_container(
                CONFIGURATION,
                lambda: pod_kwargs(self.record, CONFIGURATION, self.paths, image.id),
                float(self.record["pod"]["timeout_seconds"]),
            )
        except CreationFailed as exc:
            return self.settle(
                CONFIGURATION, {"status": "DATA_PROVISIONING_FAILED", "message": f"pod-configuration: {exc}"}
            )
        if ran is None:
            return self.settle(CONFIGURATION, self.stopped("during provisioning"))
        end = ran.end
        if end.reason == STOPPED:
            return self.settle(CONFIGURATION, self.stopped("during provisioning"))
        if end.exit_code == 0 and end.reason is None:
            self.job.record_step(CONFIGURATION, {"state": ENDED, "exit_code": 0})
            return None
        if volumes.is_full(self.job):
            return self.settle(
                CONFIGURATION,
                {
                    "status": "DISK_QUOTA_EXCEEDED",
                    "disk_quota_exceeded": True,
                    "message": f"the inputs do not fit in the job's disk of {self.grant.disk_gib:g} GiB",
                },
            )
        return self.settle(
            CONFIGURATION,
            {"status": "DATA_PROVISIONING_FAILED", "message": pod_failure(CONFIGURATION, end, self.record)},
        )

    def algorithm(self, image: images.ImageInfo) -> Record:
        """The algorithm to its end; the job's outcome so far (recorded before anything else happens)."""
        times: Record = {"image_digest": image.digest}
        built = self.build_seconds()
        limit = float(self.record["time_limit_seconds"]) - built
        if limit < 1 and not self.job.steps().get(ALGORITHM):
            return self.settle(
                ALGORITHM,
                {
                    "status": "TIMED_OUT",
                    "timed_out": True,
                    "message": f"building the image took {built:.0f} s of the job's time limit of "
                    f"{self.record['time_limit_seconds']} s: no time was left for the algorithm",
                    **times,
                },
            )

        def on_started(started: str) -> None:
            times["algorithm_started"] = started
            self.emit_once(
                "RUNNING",
                "the algorithm is running",
                algorithm_started=started,
                image_digest=image.digest,
            )

        try:
            ran = self.run_container(
                ALGORITHM,
                lambda: algorithm_kwargs(self.record, self.paths, image.id),
                max(1.0, limit),
                on_started,
            )
        except CreationFailed as exc:
            return self.settle(
                ALGORITHM, {"status": "CONTAINER_CREATION_FAILED", "message": str(exc), **times}
            )
        if ran is None:
            return self.settle(ALGORITHM, self.stopped("before the algorithm started"))
        end, finished = ran.end, ran.finished
        self.collect_log(ran.container)
        unstartable = self.init_failure(end)
        if unstartable is not None:
            return self.settle(
                ALGORITHM, {"status": "CONTAINER_CREATION_FAILED", "message": unstartable, **times}
            )
        ending = Ending(
            exit_code=end.exit_code,
            oom_killed=end.oom_killed,
            reason=end.reason,
            disk_full=volumes.is_full(self.job),
            file_size_limited=self.limits["disk_quota"] != volumes.LOOP_EXT4,
        )
        outcome = classify(ending, self.record["grant"], int(max(1.0, limit)), self.stop_reason())
        return self.settle(ALGORITHM, {**outcome, **times, "algorithm_finished": finished})

    def publish(self, image: images.ImageInfo | None, outcome: Record) -> Record:
        """pod-publishing; the outcome, changed only when publishing failed or was stopped."""
        state = self.job.steps().get(PUBLISHING, {})
        if state.get("state") == ENDED:
            return dict(state.get(OUTCOME) or outcome)
        assert image is not None
        self.emit_once("PUBLISHING", "pod-publishing started: uploading the results and the logs")
        try:
            ran = self.run_container(
                PUBLISHING,
                lambda: pod_kwargs(self.record, PUBLISHING, self.paths, image.id),
                float(self.record["pod"]["timeout_seconds"]),
            )
        except CreationFailed as exc:
            result = publishing_failed(outcome, f"pod-publishing: {exc}")
        else:
            if ran is None or ran.end.reason == STOPPED:
                result = {**algorithm_times(outcome), **self.stopped("during publishing")}
            elif ran.end.exit_code != 0 or ran.end.reason is not None:
                result = publishing_failed(outcome, pod_failure(PUBLISHING, ran.end, self.record))
            else:
                result = outcome
        self.job.record_step(PUBLISHING, {"state": ENDED, OUTCOME: result})
        return result

    # Containers --------------------------------------------------------------------

    def run_container(
        self,
        role: str,
        make_kwargs: Callable[[], dict[str, Any]],
        limit_seconds: float,
        on_started: Callable[[str], None] | None = None,
    ) -> Ran | None:
        """Runs (or re-attaches to) the role's container to its end: how it ended and when; None if stopped first."""
        assert self.client is not None
        step = self.container_step(role)
        state = self.job.steps().get(role, {})
        container = step.find()
        if container is None:
            if state.get("state") == STARTED:
                raise ContainerVanished(f"the {role} container disappeared while it ran")
            if self.stopping():
                return None
            container = step.create(make_kwargs())
        if container.status == "created":
            state = {"state": STARTED, "started": utc_now(), "started_epoch": time.time()}
            self.job.record_step(role, state)
            step.start(container)
        elif not state:
            state = {"state": STARTED, "started": utc_now(), "started_epoch": time.time()}
        if on_started is not None:
            on_started(str(state["started"]))
        end = step.watch(container, float(state["started_epoch"]) + limit_seconds)
        if role != ALGORITHM:
            with contextlib.suppress(OSError, docker.errors.APIError):
                logs.append_pod_log(container, self.job.pods_log_path, f"pod-{role}")
        finished = str(container.attrs.get("State", {}).get("FinishedAt") or "")
        if not finished or finished.startswith(NEVER_FINISHED[:4]):
            finished = utc_now()
        return Ran(end, finished, container)

    def container_step(self, role: str) -> ContainerStep:
        assert self.client is not None
        return ContainerStep(
            daemon=self.runtime.daemon,
            client=self.client,
            name=container_name(self.job.job_id, role),
            host_id=self.runtime.host_id,
            stopping=self.stopping,
            stop_grace=self.stop_grace,
            timeout_grace=float(self.limits.get("timeout_grace_seconds", 2)),
            daemon_wait_seconds=float(self.limits.get("daemon_wait_seconds", 120)),
            log=self.log,
        )

    def collect_log(self, container: Container) -> None:
        """The algorithm's output, demultiplexed, into the job's log and the copy pod-publishing uploads."""
        try:
            size = logs.collect(container, self.job.log_path)
        except (OSError, docker.errors.APIError) as exc:
            self.log.warning("could not collect the algorithm's log", reason=str(exc))
            return
        logs.publish_copy(self.job, self.limits["uid"], self.limits["gid"])
        self.log.info("algorithm log collected", bytes=size)

    def init_failure(self, end: StepEnd) -> str | None:
        """Docker's init (tini) could not start ``/bin/sh``: the image cannot run commands at all."""
        if end.exit_code != INIT_EXEC_FAILED or end.reason is not None:
            return None
        try:
            with open(self.job.log_path, "rb") as f:
                head = f.read(512).decode(errors="replace")
        except OSError:
            return None
        if not head.startswith(INIT_FATAL):
            return None
        reason = head.splitlines()[0].split("]", 1)[-1].strip()
        return f"the image cannot run the command: {reason}"

    def remove_containers(self) -> None:
        assert self.client is not None
        remove_job_containers(self.client, self.job.job_id)


def remove_job_containers(client: docker.DockerClient, job_id: str) -> None:
    """Removes the job's containers by their names (running ones are killed); missing ones are fine."""
    for role in ROLES:
        try:
            client.containers.get(container_name(job_id, role)).remove(force=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            if exc.status_code != CONFLICT:  # 409: a removal (DestroyJob's or the driver's) is under way
                raise


def pod_failure(role: str, end: StepEnd, record: Record) -> str:
    """What went wrong with a pod, in a few words."""
    name = f"pod-{role}"
    if end.reason == TIMED_OUT:
        return f"{name} ran past its time limit of {record['pod']['timeout_seconds']} s"
    if end.oom_killed:
        return f"{name} ran out of memory"
    if end.reason is not None:
        return f"{name} was ended: the Docker engine restarted"
    return f"{name} exited with code {end.exit_code}"
