"""StartJob's JobSpec, checked and turned into the job's ``spec.json``.

The spec file is everything the shim needs and everything a restarted plugin
needs to account for the job (its node, environment and grant), so the plugin
holds no job state of its own that a crash could lose. With ``JobSpec.pod``
set it also holds what the pods need to call the node back, the stage's pod
key included, which is why the file is readable by its owner only (0600) and
the key appears in no log and no handle.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import json_format

from c2d.engine.v1 import engine_pb2
from c2d_external_stub.config import EnvironmentConfig, StubConfig
from c2d_external_stub.errors import invalid
from c2d_external_stub.jobdir import ALGORITHM_PATH, Record, utc_now
from c2d_external_stub.limits import grant_from, rlimits

SPEC_FORMAT = 1
# Job ids name directories: no separators, no dot-only names, bounded length.
JOB_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")
ALGO_VARIABLE = re.compile(r"\$\{ALGO\}|\$ALGO(?![A-Za-z0-9_])")
ENV_NAME = re.compile(r"^[^=\x00]+$")


def check_job_id(job_id: str) -> None:
    if not job_id:
        raise invalid("job_id is empty")
    if not JOB_ID.match(job_id) or set(job_id) == {"."}:
        raise invalid(
            f"job_id {job_id[:80]!r} is not usable as a directory name (letters, digits, _.:@+- only)"
        )


def build_spec(spec: engine_pb2.JobSpec, config: StubConfig, host_id: str, job_path: Path) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise."""
    check_job_id(spec.job_id)
    command = spec.container.command
    if not command.strip():
        raise invalid("container.command is empty")
    if "\x00" in command:
        raise invalid("container.command contains a NUL byte")
    env = environment_of(spec, config)
    for name, value in spec.container.env.items():
        if not ENV_NAME.match(name) or "\x00" in value:
            raise invalid(f"container.env has an unusable variable name or value: {name[:80]!r}")
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
        "command": ALGO_VARIABLE.sub(lambda _: str(job_path / ALGORITHM_PATH), command),
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
    if not spec.HasField("pod"):
        return None
    pod = spec.pod
    if not pod.node_http_api.strip():
        raise invalid("pod.node_http_api is empty: the pods could not reach the node")
    if not pod.private_key.strip():
        raise invalid("pod.private_key is empty: the pods could not sign their calls")
    for name, value in (
        ("node_peer_id", pod.node_peer_id),
        ("node_http_api", pod.node_http_api),
        ("private_key", pod.private_key),
    ):
        if "\x00" in value:
            raise invalid(f"pod.{name} contains a NUL byte")
    return {
        "node_peer_id": pod.node_peer_id,
        "node_http_api": pod.node_http_api,
        "private_key": pod.private_key,
        "python": config.pod_python,
        "timeout_seconds": config.pod_timeout_seconds,
    }


def environment_of(spec: engine_pb2.JobSpec, config: StubConfig) -> EnvironmentConfig:
    env = config.environment(spec.environment_id)
    if env is None:
        known = ", ".join(e.id for e in config.environments)
        raise invalid(f"unknown environment {spec.environment_id!r} (this engine has: {known})")
    return env


def time_limit_of(max_duration_seconds: int, env: EnvironmentConfig) -> int:
    """max_duration_seconds, 0 meaning the environment's maximum."""
    if max_duration_seconds == 0:
        return env.max_job_duration_seconds
    if max_duration_seconds > env.max_job_duration_seconds:
        raise invalid(
            f"max_duration_seconds {max_duration_seconds} is above environment {env.id!r}'s maximum "
            f"of {env.max_job_duration_seconds}"
        )
    return max_duration_seconds


def image_of(container: engine_pb2.Container) -> str:
    """Informational only: the stub runs no image."""
    if container.digest:
        return f"{container.image}@{container.digest}"
    return f"{container.image}:{container.tag}" if container.tag else container.image
