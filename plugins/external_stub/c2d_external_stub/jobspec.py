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

from google.protobuf import json_format

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit import jobspec as kit
from c2d.plugin.kit.jobspec import check_job_id, time_limit_of
from c2d_external_stub.config import EnvironmentConfig, StubConfig
from c2d_external_stub.errors import invalid
from c2d_external_stub.jobdir import ALGORITHM_PATH, Record, utc_now
from c2d_external_stub.limits import grant_from, rlimits

SPEC_FORMAT = kit.SPEC_FORMAT

__all__ = ["build_spec", "check_job_id", "environment_of", "image_of", "pod_of", "time_limit_of"]


def build_spec(spec: engine_pb2.JobSpec, config: StubConfig, host_id: str, job_path: Path) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise."""
    check_job_id(spec.job_id)
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
        "created": utc_now(),
    }


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
    """Informational only: the stub runs no image."""
    if container.digest:
        return f"{container.image}@{container.digest}"
    return f"{container.image}:{container.tag}" if container.tag else container.image
