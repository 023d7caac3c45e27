"""The compute node: bids, queues on its capacity, and runs each execution as a Docker container.

Like v1.9's docker executor the container gets the task's image, entrypoint, parameters, working
directory and environment (Task.Env, the engine's ``EnvironmentVariables`` and the
``BACALHAU_*`` system variables), ``NanoCpus``/``Memory`` from the task's resources, the
network (``None`` -> ``none``, ``Host``/``Full`` -> ``host``, ``Bridge``/``Default`` -> ``bridge``;
``HTTP`` is refused), the localDirectory inputs as bind mounts and one writable folder per result
path, and the labels ``bacalhau-executor=<node instance>``, ``bacalhau-jobID``,
``bacalhau-executionID``. Images are never pulled: one missing locally fails the execution.

A container exiting non-zero completes its execution (RunOutput.ExitCode); the execution fails on
an execution timeout (the container is killed: "Execution timed out after <d>"), an OOM kill
("memory limit exceeded"), a container that cannot be created or started, or a refused volume.
A failure reaches the orchestrator as v1.9's ComputeError does: a message and an event, no RunOutput.
Stdout and stderr are returned up to 2 KiB each (``StdoutTruncated`` beyond) and published in full.
The container is removed when its execution ends; :meth:`ComputeNode.close` removes any left.
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import volumes
from .orchestrator import MAX_TIMER_SECONDS
from .records import Event, Execution, RunOutput, go_duration
from .spec import JobSpec, Resources, SpecConfig

if TYPE_CHECKING:
    from .orchestrator import Orchestrator

log = logging.getLogger("bacalhau_double")

RETURN_LIMIT = 2048  # system.MaxStdoutReturnLength / MaxStderrReturnLength (2 KB)
NANO = 1_000_000_000
TOPIC_SCANNING = "Exec Scanning"
TOPIC_PREPARING = "Preparing Environment"
TOPIC_RUNNING = "Running Execution"
LABEL_EXECUTOR = "bacalhau-executor"
LABEL_JOB = "bacalhau-jobID"
LABEL_EXECUTION = "bacalhau-executionID"
NETWORK_MODES = {"None": "none", "Host": "host", "Full": "host", "Bridge": "bridge", "Default": "bridge"}


class ExecutionError(Exception):
    """A system error that fails an execution (its message becomes the ComputeState message)."""

    def __init__(self, message: str, topic: str, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.topic = topic
        self.details = {"IsError": "true", **(details or {})}


@dataclass
class _Running:
    """One execution's worker state: its cancel flag and, once created, its container."""

    execution_id: str
    cancelled: threading.Event = field(default_factory=threading.Event)
    timed_out: threading.Event = field(default_factory=threading.Event)
    container: Any = None
    thread: threading.Thread | None = None


class ComputeNode:
    """The double's one compute node (``NodeType`` Compute, ``bacalhau-executor`` = its instance)."""

    def __init__(
        self,
        lock: threading.Condition,
        docker_client: Any,
        *,
        node_id: str,
        instance_id: str,
        labels: dict[str, str],
        max_capacity: Resources,
        allowed_paths: tuple[volumes.AllowedPath, ...],
        work_dir: Path,
        results_url: Callable[[], str],
    ) -> None:
        self.changed = lock
        self.docker = docker_client
        self.node_id = node_id
        self.instance_id = instance_id
        self.labels = labels
        self.max_capacity = max_capacity
        self.allowed_paths = allowed_paths
        self.work_dir = work_dir
        self.published_dir = work_dir / "published"
        self.published_dir.mkdir(parents=True, exist_ok=True)
        self._results_url = results_url
        self.orchestrator: Orchestrator | None = None
        self._running: dict[str, _Running] = {}
        self._in_use: dict[str, Resources] = {}
        self._cpus: float | None = None
        self._closed = False

    # capacity --------------------------------------------------------------------------------

    @property
    def available(self) -> Resources:
        with self.changed:
            left = self.max_capacity
            for used in self._in_use.values():
                left = left.minus(used)
            return left

    @property
    def running_count(self) -> int:
        with self.changed:
            return len(self._in_use)

    @property
    def enqueued_count(self) -> int:
        with self.changed:
            return len(self._running) - len(self._in_use)

    # orchestrator's calls (lock held) --------------------------------------------------------

    def start(self, execution: Execution) -> None:
        """Ask for a bid and, if accepted, run: all in a worker thread."""
        if self._closed:
            return
        state = _Running(execution.id)
        self._running[execution.id] = state
        spec = execution.job.spec
        state.thread = threading.Thread(
            target=self._work, args=(execution, spec, state), name=f"bacd-{execution.id[:10]}", daemon=True
        )
        state.thread.start()

    def cancel(self, execution_id: str) -> None:
        """Stop an execution: wake it if it waits for capacity, kill its container if it runs."""
        state = self._running.get(execution_id)
        if state is None:
            return
        state.cancelled.set()
        self.changed.notify_all()
        if state.container is not None:
            threading.Thread(target=_kill, args=(state.container,), daemon=True).start()

    # the worker ------------------------------------------------------------------------------

    def _work(self, execution: Execution, spec: JobSpec, state: _Running) -> None:
        orchestrator = self.orchestrator
        assert orchestrator is not None
        try:
            mounts = self._bid(spec)
        except ExecutionError as exc:
            self._finish(state)
            orchestrator.execution_failed(execution.id, str(exc), Event(exc.topic, str(exc), exc.details))
            return
        except Exception as exc:  # the double's own failure
            log.exception("bidding on %s failed in the double", execution.id)
            self._finish(state)
            orchestrator.execution_failed(
                execution.id, f"internal error: {exc}", Event(TOPIC_SCANNING, str(exc))
            )
            return
        wanted = spec.task.resources.to_resources()
        if not orchestrator.bid_accepted(execution.id, wanted) or not self._reserve(state, wanted):
            self._finish(state)
            return
        completed: tuple[RunOutput, SpecConfig | None] | None = None
        failed: tuple[str, Event] | None = None
        try:
            completed = self._execute(execution, spec, mounts, state)
        except ExecutionError as exc:
            if not state.cancelled.is_set():
                failed = (str(exc), Event(exc.topic, str(exc), exc.details))
        except _Cancelled:
            pass
        except Exception as exc:  # the double's own failure: reported as an internal error would be
            log.exception("execution %s failed in the double", execution.id)
            message = f"internal error: {exc}"
            failed = (message, Event(TOPIC_RUNNING, message))
        finally:
            # as v1.9's handler: the container is destroyed before the result is reported
            self._remove_container(state)
            shutil.rmtree(self._execution_dir(execution.id), ignore_errors=True)
            self._finish(state)
        if completed is not None:
            orchestrator.execution_completed(execution.id, *completed)
        elif failed is not None:
            orchestrator.execution_failed(execution.id, *failed)
        orchestrator.capacity_freed()

    def _bid(self, spec: JobSpec) -> list[volumes.Volume]:
        """Semantic and resource bidding: the volumes are checked here (GetVolumeSize)."""
        mounts = []
        for source in spec.task.input_sources:
            try:
                mounts.append(volumes.check(source, self.allowed_paths))
            except volumes.VolumeError as exc:
                details = {"Hint": exc.hint} if exc.hint else {}
                if exc.code:
                    details["ErrorCode"] = f"Bacalhau:{exc.code}"
                raise ExecutionError(
                    f"calculating resource usage of job: {exc}", TOPIC_SCANNING, details
                ) from exc
        return mounts

    def _reserve(self, state: _Running, wanted: Resources) -> bool:
        """The executor buffer: wait until the task fits in the available capacity, or a cancel."""
        with self.changed:
            while not state.cancelled.is_set() and not self._closed and not wanted.fits(self.available):
                self.changed.wait()
            if state.cancelled.is_set() or self._closed:
                return False
            self._in_use[state.execution_id] = wanted
            return True

    def _finish(self, state: _Running) -> None:
        with self.changed:
            self._running.pop(state.execution_id, None)
            self._in_use.pop(state.execution_id, None)
            self.changed.notify_all()

    def _execute(
        self, execution: Execution, spec: JobSpec, mounts: list[volumes.Volume], state: _Running
    ) -> tuple[RunOutput, SpecConfig | None]:
        """Prepare, run, collect and publish: the node's whole run of one accepted execution."""
        outputs = self._prepare(execution, spec, mounts)
        exit_code = self._run(execution, spec, mounts, outputs, state)
        stdout = state.container.logs(stdout=True, stderr=False)
        stderr = state.container.logs(stdout=False, stderr=True)
        output = RunOutput(
            stdout=stdout[:RETURN_LIMIT].decode("utf-8", "replace"),
            stdout_truncated=len(stdout) > RETURN_LIMIT,
            stderr=stderr[:RETURN_LIMIT].decode("utf-8", "replace"),
            stderr_truncated=len(stderr) > RETURN_LIMIT,
            exit_code=exit_code,
        )
        publisher = spec.task.publisher.type.lower()
        if not publisher:
            return output, None
        if state.cancelled.is_set():
            raise _Cancelled
        if publisher == "noop":
            return output, SpecConfig("noop")
        return output, self._publish_local(execution.id, outputs, stdout, stderr, exit_code)

    def _prepare(self, execution: Execution, spec: JobSpec, mounts: list[volumes.Volume]) -> Path:
        """Create missing volumes (CreateAs) and one host folder per result path; the outputs folder."""
        for volume in mounts:
            try:
                volumes.prepare(volume)
            except OSError as exc:
                message = f"could not create volume at {volume.source}: {exc}"
                raise ExecutionError(message, TOPIC_PREPARING) from exc
        outputs = self._execution_dir(execution.id) / "outputs"
        for result in spec.task.result_paths:
            (outputs / result.name).mkdir(parents=True, exist_ok=True)
        return outputs

    def _run(
        self,
        execution: Execution,
        spec: JobSpec,
        mounts: list[volumes.Volume],
        outputs: Path,
        state: _Running,
    ) -> int:
        """Create, start and wait for the container under the execution timeout; its exit code."""
        orchestrator = self.orchestrator
        assert orchestrator is not None
        if not orchestrator.execution_wanted(execution.id):
            raise _Cancelled
        self._create_container(execution, spec, mounts, outputs, state)
        if state.cancelled.is_set():
            raise _Cancelled
        timeout = spec.task.timeouts.effective_execution
        timer = None
        if 0 < timeout <= MAX_TIMER_SECONDS:
            timer = threading.Timer(timeout, self._time_out, args=(state,))
            timer.daemon = True
        try:
            state.container.start()
        except Exception as exc:
            raise ExecutionError(f"failed to start container: {_docker_message(exc)}", TOPIC_RUNNING) from exc
        if state.cancelled.is_set():  # a stop that came between the check above and the start
            _kill(state.container)
        if timer is not None:
            timer.start()
        orchestrator.container_started(execution.id)
        try:
            status = state.container.wait()
        finally:
            if timer is not None:
                timer.cancel()
        if state.cancelled.is_set():
            raise _Cancelled
        if state.timed_out.is_set():
            raise ExecutionError(
                f"Execution timed out after {go_duration(timeout)}",
                TOPIC_RUNNING,
                {"Hint": "Increase the task timeout or allocate more resources", "Retryable": "true"},
            )
        state.container.reload()
        if state.container.attrs.get("State", {}).get("OOMKilled"):
            raise ExecutionError("memory limit exceeded", TOPIC_RUNNING)
        return int(status.get("StatusCode", -1))

    def _create_container(
        self,
        execution: Execution,
        spec: JobSpec,
        mounts: list[volumes.Volume],
        outputs: Path,
        state: _Running,
    ) -> None:
        import docker.errors
        from docker.types import Mount

        task = spec.task
        engine = task.engine
        image = engine.param("Image")
        if not isinstance(image, str) or not image:
            raise ExecutionError("invalid docker engine param: 'Image' cannot be empty", TOPIC_RUNNING)
        network = NETWORK_MODES.get(task.network.type)
        if network is None:
            raise ExecutionError(
                f"unsupported network type {task.network.type!r} (not supported by the double)", TOPIC_RUNNING
            )
        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound as exc:
            message = (
                f"failed to pull docker image {image}: not present locally (the test double never pulls)"
            )
            raise ExecutionError(message, TOPIC_RUNNING) from exc
        wanted = task.resources.to_resources()
        binds = [Mount(v.target, v.source, type="bind", read_only=v.read_only) for v in mounts]
        binds += [
            Mount(r.path, str(outputs / r.name), type="bind", read_only=False) for r in task.result_paths
        ]
        kwargs: dict[str, Any] = {
            "image": image,
            "command": _strings(engine.param("Parameters")) or None,
            "entrypoint": _strings(engine.param("Entrypoint")) or None,
            "environment": self._environment(execution, spec),
            "working_dir": engine.param("WorkingDirectory") or None,
            "labels": {
                LABEL_EXECUTOR: self.instance_id,
                LABEL_JOB: self.instance_id + execution.job.id,
                LABEL_EXECUTION: self.instance_id + execution.id,
            },
            "name": f"bacalhau-{self.instance_id}-{execution.id}",
            "network_mode": network,
            "network_disabled": network == "none",
            "mounts": binds,
            "detach": True,
        }
        if wanted.cpu:
            # Docker refuses more CPUs than the machine has; the node's nominal capacity may be larger.
            kwargs["nano_cpus"] = max(1, int(min(wanted.cpu, self._host_cpus()) * NANO))
        if wanted.memory:
            kwargs["mem_limit"] = wanted.memory
        try:
            state.container = self.docker.containers.create(**kwargs)
        except Exception as exc:
            raise ExecutionError(f"creating container: {_docker_message(exc)}", TOPIC_RUNNING) from exc

    def _host_cpus(self) -> float:
        if self._cpus is None:
            self._cpus = float(self.docker.info().get("NCPU") or 1)
        return self._cpus

    def _environment(self, execution: Execution, spec: JobSpec) -> list[str]:
        """Task env, then the engine's K=V list, then the system variables (which win)."""
        merged = dict(spec.task.env)
        for item in _strings(spec.task.engine.param("EnvironmentVariables")):
            key, _, value = item.partition("=")
            if key.upper().startswith("BACALHAU_"):
                raise ExecutionError(
                    f"invalid docker engine param: environment variable '{key}' cannot start with BACALHAU_",
                    TOPIC_RUNNING,
                )
            merged[key] = value
        merged |= {
            "BACALHAU_EXECUTION_ID": execution.id,
            "BACALHAU_JOB_ID": execution.job.id,
            "BACALHAU_JOB_TYPE": spec.type,
            "BACALHAU_PARTITION_INDEX": "0",
            "BACALHAU_PARTITION_COUNT": str(spec.count),
        }
        return [f"{key}={value}" for key, value in merged.items()]

    def _time_out(self, state: _Running) -> None:
        state.timed_out.set()
        if state.container is not None:
            _kill(state.container)

    def _publish_local(
        self, execution_id: str, outputs: Path, stdout: bytes, stderr: bytes, exit_code: int
    ) -> SpecConfig:
        """The local publisher: ``<execution>.tar.gz`` served by the double's results server."""
        name = f"{execution_id}.tar.gz"
        target = self.published_dir / name
        with tarfile.open(target, "w:gz") as archive:
            for member, data in (
                ("stdout", stdout),
                ("stderr", stderr),
                ("exitCode", str(exit_code).encode()),
            ):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            if outputs.is_dir():
                for child in sorted(outputs.iterdir()):
                    archive.add(child, arcname=child.name)
        return SpecConfig("urlDownload", (("URL", f"{self._results_url()}/{name}"),))

    def _execution_dir(self, execution_id: str) -> Path:
        return self.work_dir / "executions" / execution_id

    def _remove_container(self, state: _Running) -> None:
        if state.container is None:
            return
        try:
            state.container.remove(force=True)
        except Exception as exc:  # already gone
            log.debug("removing %s: %s", state.execution_id, exc)

    def close(self) -> None:
        """Cancel everything, then remove every container this node made (by its executor label)."""
        with self.changed:
            self._closed = True
            states = list(self._running.values())
            for state in states:
                self.cancel(state.execution_id)
        for state in states:
            if state.thread is not None:
                state.thread.join(timeout=30)
        for container in self.docker.containers.list(
            all=True, filters={"label": f"{LABEL_EXECUTOR}={self.instance_id}"}
        ):
            try:
                container.remove(force=True)
            except Exception as exc:
                log.debug("removing %s: %s", container.name, exc)


class _Cancelled(Exception):
    """The execution was stopped while it ran: the orchestrator already recorded it."""


def _kill(container: Any) -> None:
    try:
        container.kill()
    except Exception as exc:  # it exited meanwhile
        log.debug("kill %s: %s", getattr(container, "name", "?"), exc)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list) else []


def _docker_message(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
