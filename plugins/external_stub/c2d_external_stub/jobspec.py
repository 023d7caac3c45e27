"""StartJob's JobSpec, checked and turned into the job's ``spec.json``.

The spec file is everything the shim needs and everything a restarted plugin
needs to account for the job (its node, environment and grant), so the plugin
holds no job state of its own that a crash could lose. With ``JobSpec.pod``
set it also holds what the pods need to call the node back, the stage's pod
key included, which is why the file is readable by its owner only (0600) and
the key appears in no log and no handle.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import json_format

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import jobspec as kit
from c2d.plugin.kit.jobspec import check_job_id, time_limit_of
from c2d_external_stub.config import EnvironmentConfig, StubConfig
from c2d_external_stub.errors import EngineError, invalid
from c2d_external_stub.jobdir import ALGORITHM_PATH, Record, utc_now
from c2d_external_stub.limits import grant_from, rlimits
from c2d_external_stub.sandbox import Sandbox

SPEC_FORMAT = kit.SPEC_FORMAT
UNCONFINED_MESSAGE = (
    "external_stub cannot confine algorithms on this machine, so it runs only the node operator's "
    "own jobs; the operator can install bubblewrap (apt-get install bubblewrap) or allow user "
    "namespaces, or set unsafe_unconfined = true in [engines.external_stub]"
)

__all__ = ["build_spec", "check_job_id", "environment_of", "image_of", "pod_of", "time_limit_of"]


def build_spec(
    spec: engine_pb2.JobSpec,
    config: StubConfig,
    host_id: str,
    job_path: Path,
    sandbox: Sandbox | None = None,
) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise.

    ``sandbox`` is what Configure found confines algorithms here (None: nothing does);
    an unconfined job is refused (FAILED_PRECONDITION) unless it is the operator's own
    or the operator set ``unsafe_unconfined``.
    """
    check_job_id(spec.job_id)
    sandbox = sandbox or Sandbox("none")
    check_confinable(spec, config, sandbox)
    command = kit.check_command(spec.container)
    env = environment_of(spec, config)
    time_limit = time_limit_of(spec.max_duration_seconds, env)
    grant = grant_from(spec.resources, env)
    return {
        "format": SPEC_FORMAT,
        "job_id": spec.job_id,
        "workflow_id": spec.workflow_id,
        "host_id": host_id,
        "environment_id": env.id,
        "owner": spec.owner,
        "image": image_of(spec.container),
        "command_template": command,
        "command": kit.with_algorithm_path(command, str(job_path / ALGORITHM_PATH)),
        "env": dict(spec.container.env),
        "grant": grant.to_json(),
        "max_duration_seconds": spec.max_duration_seconds,
        "time_limit_seconds": time_limit,
        "rlimits": rlimits(grant, time_limit),
        "labels": dict(spec.labels),
        "options": json_format.MessageToDict(spec.options),
        "pod": pod_of(spec, config),
        "sandbox": sandbox.to_json(),
        "allow_network": bool(spec.network.allow_network) and env.allow_network,
        "created": utc_now(),
    }


def check_confinable(spec: engine_pb2.JobSpec, config: StubConfig, sandbox: Sandbox) -> None:
    """Unconfined, the algorithm could read the node's key and the stage's pod key: only the
    operator's own jobs run so (the pod access names the node's address), unless the operator
    accepted the risk with ``unsafe_unconfined = true``."""
    if sandbox.confined or config.unsafe_unconfined:
        return
    operator = spec.pod.node_peer_id.lower() if spec.HasField("pod") else ""
    if operator and spec.owner.lower() == operator:
        return
    raise EngineError(grpc.StatusCode.FAILED_PRECONDITION, UNCONFINED_MESSAGE)


def pod_of(spec: engine_pb2.JobSpec, config: StubConfig) -> Record | None:
    """What the shim needs to run the pods around the algorithm; None when the job runs without pods."""
    access = kit.pod_access(spec)
    if access is None:
        return None
    return {**access, "python": config.pod_python, "timeout_seconds": config.pod_timeout_seconds}


def environment_of(spec: engine_pb2.JobSpec, config: StubConfig) -> EnvironmentConfig:
    env = config.environment(spec.environment_id)
    if env is None:
        known = ", ".join(e.id for e in config.environments)
        raise invalid(f"unknown environment {spec.environment_id!r} (this engine has: {known})")
    return env


def image_of(container: engine_pb2.Container) -> str:
    """Informational only: the stub runs no image, and builds none (its capabilities say so)."""
    if container.dockerfile or container.additional_files:
        raise invalid(
            "the external_stub engine does not build images from a Dockerfile: give container.image"
        )
    if container.digest:
        return f"{container.image}@{container.digest}"
    return f"{container.image}:{container.tag}" if container.tag else container.image
