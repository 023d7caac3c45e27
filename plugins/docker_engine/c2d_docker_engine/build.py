"""Algorithm images built from a consumer's Dockerfile: the cache and the build itself.

The image is tagged by the content hash of its context (:mod:`c2d_docker_engine.buildcontext`),
so a second job with the same Dockerfile and files runs the image the first one built, without
building again. A failed build leaves no tag, so it is never reused.

The build runs as the job's algorithm would: without a network unless the job may use one
(``network_mode="none"``), with the job's memory and CPU share, without the daemon's layer cache
(another consumer's layers are never reused), and for at most ``build_timeout_seconds``: the
Docker API gives no build timeout, so the build runs in a thread of its own and its connection
is closed at the limit, which makes the daemon cancel it. Everything the build printed goes to
the job's ``image.log``, which the pods publish as the result ``image.log``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from c2d.plugin.kit.jobspec import ImageRef
from c2d_docker_engine.buildcontext import Context
from c2d_docker_engine.daemon import Daemon, describe
from c2d_docker_engine.grant import Grant
from c2d_docker_engine.images import ImageInfo, find

MAX_ERROR_CHARS = 2000


class BuildFailed(Exception):
    """The image could not be built; the message says why, for the consumer."""


class BuildStopped(Exception):
    """StopJob stopped the job while its image was being built; the build was cancelled."""


@dataclass(frozen=True)
class BuildLimits:
    """What the build's containers get: the job's memory, its cores (when pinned), its network."""

    grant: Grant
    cpuset: tuple[int, ...] = ()
    network: bool = False

    def container_limits(self) -> dict[str, Any]:
        """Docker's build ``container_limits``: memory without swap, and the job's cores if it has some."""
        limits: dict[str, Any] = {"memory": self.grant.ram_bytes, "memswap": self.grant.ram_bytes}
        if self.cpuset:
            limits["cpusetcpus"] = ",".join(str(core) for core in self.cpuset)
        return limits


@dataclass
class BuildRun:
    """One build running in its own thread: its outcome, and a way to stop it from another thread."""

    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stopped: bool = False

    def stop(self) -> None:
        """Ends the wait in :func:`build`, which then cancels the build (StopJob's thread calls it)."""
        self.stopped = True
        self.done.set()


def find_built(client: docker.DockerClient, context: Context) -> ImageInfo | None:
    """The image an identical build made earlier, if the daemon still has it."""
    return find(client, context.image_ref())


def build(
    daemon: Daemon,
    context: Context,
    limits: BuildLimits,
    timeout_seconds: float,
    log_path: Path,
    state: BuildRun,
) -> ImageInfo:
    """Builds and tags the image, writing the build's output to ``log_path``; BuildFailed otherwise,
    BuildStopped when ``state.stop()`` was called first."""
    ref = context.image_ref()
    client = daemon.new_client(timeout=max(1, int(timeout_seconds)))
    with open(log_path, "a", encoding="utf-8", errors="replace") as log:
        thread = threading.Thread(
            target=_build_into,
            args=(client, context, ref, limits, log, state),
            name=f"build-{ref.tag[:12]}",
            daemon=True,
        )
        thread.start()
        finished = state.done.wait(timeout_seconds)
        client.close()  # at the limit or on a stop this ends the build: the daemon cancels it when its client goes
        if state.stopped:
            log.write("\nthe job was stopped: the build was cancelled\n")
            raise BuildStopped("the job was stopped while its image was being built")
        if not finished:
            state.done.wait(5)  # let the thread stop writing to the log before it is closed
            log.write(f"\nthe build took longer than {timeout_seconds:g} s and was cancelled\n")
            raise BuildFailed(f"building the image took longer than {timeout_seconds:g} s")
        if state.error is not None:
            log.write(f"\nthe build failed: {state.error}\n")
            raise BuildFailed(
                f"building the image from the Dockerfile failed: {state.error[:MAX_ERROR_CHARS]}"
            )
    found = find(daemon.client, ref)
    if found is None:
        raise BuildFailed("the image was built but the Docker engine does not list it")
    return found


def _build_into(
    client: docker.DockerClient,
    context: Context,
    ref: ImageRef,
    limits: BuildLimits,
    log: Any,
    state: BuildRun,
) -> None:
    started = time.monotonic()
    try:
        stream = client.api.build(
            fileobj=context.tar(),
            custom_context=True,
            tag=ref.reference,
            network_mode="bridge" if limits.network else "none",
            nocache=True,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
            container_limits=limits.container_limits(),  # type: ignore[arg-type]  # the stub's TypedDict
        )
        for message in stream:
            if not isinstance(message, dict):
                continue
            if isinstance(message.get("stream"), str):
                log.write(message["stream"])
                log.flush()
            if message.get("error"):
                detail = message.get("errorDetail") or {}
                state.error = str(detail.get("message") or message["error"]).strip()
        if state.error is None:
            log.write(f"built image {ref.reference} in {time.monotonic() - started:.1f} s\n")
    except Exception as exc:
        state.error = describe(exc)
    finally:
        state.done.set()
