"""StartJob's JobSpec, checked the same way by every engine, and the fields every job record holds.

Engines turn a JobSpec into a record (their ``spec.json``) with the checks
here: the job id names directories and objects, the command must be there,
the image needs a tag or a digest, the time limit and the network must fit the
environment, and the pods need a reachable PodService and a key. Each failure
is INVALID_ARGUMENT with a message naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Protocol

from google.protobuf import json_format

from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit.errors import invalid
from c2d.plugin.kit.grant import Grant
from c2d.plugin.kit.jobdir import Record, utc_now
from c2d.quoting import quoted

SPEC_FORMAT = 1
DATA_ROOT = "/data"
ALGORITHM_PATH = f"{DATA_ROOT}/transformations/algorithm"
# Job ids name directories and containers: no separators, no dot-only names, bounded length.
JOB_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")
ALGO_VARIABLE = re.compile(r"\$\{ALGO\}|\$ALGO(?![A-Za-z0-9_])")
ENV_NAME = re.compile(r"^[^=\x00]+$")
# Docker's reference grammar, loosely: a name, then a tag or a digest.
IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:[._:/-][A-Za-z0-9]+|__[a-z0-9]+)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
# Docker's limit on a repository name.
MAX_IMAGE_NAME = 255
MIB = 1 << 20
TMP_MAX_BYTES = 1 << 30
TMP_MIN_BYTES = 16 * MIB


class Durations(Protocol):
    """What the time limit check reads of an environment."""

    @property
    def id(self) -> str: ...
    @property
    def max_job_duration_seconds(self) -> int: ...


class JobLimits(Durations, Protocol):
    """What every check reads of an environment."""

    @property
    def allow_network(self) -> bool: ...


@dataclass(frozen=True)
class ImageRef:
    """An image by name and tag, or by name and digest (the digest wins)."""

    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"

    @property
    def pull_tag(self) -> str:
        """What the pull API's ``tag`` parameter takes: the tag or the digest."""
        return self.digest or self.tag

    def to_json(self) -> Record:
        return {
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "reference": self.reference,
        }

    @classmethod
    def from_json(cls, data: Record) -> ImageRef:
        return cls(str(data.get("repository", "")), str(data.get("tag", "")), str(data.get("digest", "")))

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        """``name:tag`` or ``name@digest`` in one string (as pod images are configured)."""
        if "@" in reference:
            name, digest = reference.split("@", 1)
            return cls(name, digest=digest)
        name, sep, tag = reference.rpartition(":")
        if sep and "/" not in tag:
            return cls(name, tag=tag)
        return cls(reference, tag="latest")


def check_job_id(job_id: str) -> None:
    if not job_id:
        raise invalid("job_id is empty")
    if not JOB_ID.match(job_id) or set(job_id) == {"."}:
        raise invalid(
            f"job_id {job_id[:80]!r} is not usable as a directory name (letters, digits, _.:@+- only)"
        )


def image_of(container: engine_pb2.Container) -> ImageRef:
    """The algorithm's image: ``image`` with ``tag`` or ``digest`` (or either written into ``image``)."""
    if container.dockerfile:
        raise invalid("this engine does not build images from a Dockerfile: give container.image")
    image, tag, digest = container.image.strip(), container.tag.strip(), container.digest.strip()
    if not tag and not digest and image:
        embedded = ImageRef.parse(image)
        if embedded.digest or image.rpartition(":")[2] == embedded.tag:
            image, tag, digest = embedded.repository, embedded.tag, embedded.digest
    if not image:
        raise invalid("container.image is empty")
    if len(image) > MAX_IMAGE_NAME or not IMAGE_NAME.match(image):
        raise invalid(f"container.image {quoted(image)} is not a valid image name")
    if digest and not DIGEST.match(digest):
        raise invalid(f"container.digest {digest[:100]!r} is not a digest like sha256:<hex>")
    if not digest and not tag:
        raise invalid(f"container.image {quoted(image)} needs a tag or a digest")
    if tag and not TAG.match(tag):
        raise invalid(f"container.tag {tag[:100]!r} is not a valid tag")
    return ImageRef(image, tag=tag, digest=digest)


def check_command(container: engine_pb2.Container) -> str:
    """The command, with its environment variables checked; INVALID_ARGUMENT when unusable."""
    command = container.command
    if not command.strip():
        raise invalid("container.command is empty")
    if "\x00" in command:
        raise invalid("container.command contains a NUL byte")
    for name, value in container.env.items():
        if not ENV_NAME.match(name) or "\x00" in value:
            raise invalid(f"container.env has an unusable variable name or value: {name[:80]!r}")
    return command


def with_algorithm_path(command: str, path: str = ALGORITHM_PATH) -> str:
    """``$ALGO`` (or ``${ALGO}``) replaced by where the algorithm file is."""
    return ALGO_VARIABLE.sub(lambda _: path, command)


def tmp_bytes(grant: Grant) -> int:
    """The size of the algorithm's ``/tmp`` (in memory: it counts against the memory limit):
    a quarter of the memory, at most 1 GiB."""
    return max(TMP_MIN_BYTES, min(TMP_MAX_BYTES, grant.ram_bytes // 4))


def time_limit_of(max_duration_seconds: int, env: Durations) -> int:
    """max_duration_seconds, 0 meaning the environment's maximum."""
    if max_duration_seconds == 0:
        return env.max_job_duration_seconds
    if max_duration_seconds > env.max_job_duration_seconds:
        raise invalid(
            f"max_duration_seconds {max_duration_seconds} is above environment {env.id!r}'s maximum "
            f"of {env.max_job_duration_seconds}"
        )
    return max_duration_seconds


def network_of(spec: engine_pb2.JobSpec, env: JobLimits, engine: str) -> bool:
    """Whether the algorithm gets a network: only when both the stage and the environment allow it."""
    policy = spec.network
    if not policy.allow_network:
        return False
    if not env.allow_network:
        raise invalid(f"environment {env.id!r} does not allow algorithms network access")
    if policy.allowed_hosts:
        raise invalid(f"network.allowed_hosts cannot be enforced by the {engine}: allow all network or none")
    return True


def pod_access(spec: engine_pb2.JobSpec) -> Record | None:
    """What the pods need to call the node back (the stage's key included); None for a job without pods."""
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
    }


def is_loopback(node_http_api: str) -> bool:
    """Whether ``host:port`` (or ``http://host:port/``) names this machine's loopback interface."""
    target = node_http_api.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
    host = target.rpartition(":")[0] if ":" in target else target
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_record(
    spec: engine_pb2.JobSpec, env: JobLimits, host_id: str, grant: Grant, image: ImageRef, network: bool
) -> Record:
    """The fields every container engine's job record holds; the engine adds its limits and pods."""
    command = check_command(spec.container)
    return {
        "format": SPEC_FORMAT,
        "job_id": spec.job_id,
        "workflow_id": spec.workflow_id,
        "host_id": host_id,
        "environment_id": env.id,
        "owner": spec.owner,
        "image": image.to_json(),
        "command_template": command,
        "command": with_algorithm_path(command),
        "env": dict(spec.container.env),
        "grant": grant.to_json(),
        "max_duration_seconds": spec.max_duration_seconds,
        "time_limit_seconds": time_limit_of(spec.max_duration_seconds, env),
        "network": network,
        "labels": dict(spec.labels),
        "options": json_format.MessageToDict(spec.options),
        "created": utc_now(),
    }
