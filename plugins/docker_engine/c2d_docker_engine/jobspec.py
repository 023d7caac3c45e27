"""StartJob's JobSpec, checked and turned into the job's ``spec.json``.

The spec file holds everything the job driver needs, and the limits are
taken from the config *now*: a job recovered after the operator changed the
config runs on with what it was started with. With ``JobSpec.pod`` set it
also holds what the pods need to call the node back, the stage's pod key
included, which is why the file is readable by its owner only (0600) and
the key appears in no log, no handle and no container label.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from google.protobuf import json_format

from c2d.engine.v1 import engine_pb2
from c2d_docker_engine.config import DockerSettings, EnvironmentConfig
from c2d_docker_engine.errors import invalid
from c2d_docker_engine.grant import Grant, grant_from
from c2d_docker_engine.jobdir import Record, utc_now

SPEC_FORMAT = 1
GIB = 1 << 30
MIB = 1 << 20
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
TMP_MAX_BYTES = GIB
TMP_MIN_BYTES = 16 * MIB


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
    image, tag, digest = container.image.strip(), container.tag.strip(), container.digest.strip()
    if not tag and not digest and image:
        embedded = ImageRef.parse(image)
        if embedded.digest or image.rpartition(":")[2] == embedded.tag:
            image, tag, digest = embedded.repository, embedded.tag, embedded.digest
    if not image:
        raise invalid("container.image is empty")
    if not IMAGE_NAME.match(image):
        raise invalid(f"container.image {image[:100]!r} is not a valid image name")
    if digest and not DIGEST.match(digest):
        raise invalid(f"container.digest {digest[:100]!r} is not a digest like sha256:<hex>")
    if not digest and not tag:
        raise invalid(f"container.image {image!r} needs a tag or a digest")
    if tag and not TAG.match(tag):
        raise invalid(f"container.tag {tag[:100]!r} is not a valid tag")
    return ImageRef(image, tag=tag, digest=digest)


def build_spec(
    spec: engine_pb2.JobSpec,
    settings: DockerSettings,
    env: EnvironmentConfig,
    host_id: str,
    disk_quota: str,
    pod_image: str | None,
) -> Record:
    """The checked spec; INVALID_ARGUMENT with what is wrong otherwise. ``cpuset`` is filled in later."""
    check_job_id(spec.job_id)
    command = spec.container.command
    if not command.strip():
        raise invalid("container.command is empty")
    if "\x00" in command:
        raise invalid("container.command contains a NUL byte")
    for name, value in spec.container.env.items():
        if not ENV_NAME.match(name) or "\x00" in value:
            raise invalid(f"container.env has an unusable variable name or value: {name[:80]!r}")
    image = image_of(spec.container)
    grant = grant_from(spec.resources, env)
    return {
        "format": SPEC_FORMAT,
        "job_id": spec.job_id,
        "workflow_id": spec.workflow_id,
        "host_id": host_id,
        "environment_id": env.id,
        "owner": spec.owner,
        "image": image.to_json(),
        "command_template": command,
        "command": ALGO_VARIABLE.sub(ALGORITHM_PATH, command),
        "env": dict(spec.container.env),
        "grant": grant.to_json(),
        "cpuset": None,
        "max_duration_seconds": spec.max_duration_seconds,
        "time_limit_seconds": time_limit_of(spec.max_duration_seconds, env),
        "network": network_of(spec, env),
        "labels": dict(spec.labels),
        "options": json_format.MessageToDict(spec.options),
        "limits": limits_of(settings, grant, disk_quota),
        "pod": pod_of(spec, settings, pod_image),
        "created": utc_now(),
    }


def limits_of(settings: DockerSettings, grant: Grant, disk_quota: str) -> Record:
    """The container settings from the config, frozen into the job."""
    return {
        "uid": settings.uid,
        "gid": settings.gid,
        "pids_limit": settings.pids_limit,
        "tmp_bytes": tmp_bytes(grant),
        "disk_quota": disk_quota,
        "log_max_mib": settings.log_max_mib,
        "init": settings.init,
        "timeout_grace_seconds": settings.timeout_grace_seconds,
        "network_name": settings.network,
        "daemon_wait_seconds": settings.daemon_wait_seconds,
    }


def tmp_bytes(grant: Grant) -> int:
    """The size of ``/tmp`` (a tmpfs, which counts against the memory limit): a quarter of it, at most 1 GiB."""
    return max(TMP_MIN_BYTES, min(TMP_MAX_BYTES, grant.ram_bytes // 4))


def network_of(spec: engine_pb2.JobSpec, env: EnvironmentConfig) -> bool:
    """Whether the algorithm gets a network: only when both the stage and the environment allow it."""
    policy = spec.network
    if not policy.allow_network:
        return False
    if not env.allow_network:
        raise invalid(f"environment {env.id!r} does not allow algorithms network access")
    if policy.allowed_hosts:
        raise invalid(
            "network.allowed_hosts cannot be enforced by the docker engine: allow all network or none"
        )
    return True


def pod_of(spec: engine_pb2.JobSpec, settings: DockerSettings, pod_image: str | None) -> Record | None:
    """What the pods need; None when the job runs without pods (engine tests)."""
    if not spec.HasField("pod"):
        return None
    pod = spec.pod
    if not pod_image:
        raise invalid("this job needs pods, but the docker engine has no pod image: set pod_image")
    if not pod.node_http_api.strip():
        raise invalid("pod.node_http_api is empty: the pods could not reach the node")
    if not pod.private_key.strip():
        raise invalid("pod.private_key is empty: the pods could not sign their calls")
    if settings.pod_network != "host" and is_loopback(pod.node_http_api):
        raise invalid(
            f"pod.node_http_api {pod.node_http_api!r} is a loopback address, which the pods' containers cannot "
            'reach: serve the PodService on the Docker bridge (the node\'s pods.listen = "auto:PORT")'
        )
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
        "image": ImageRef.parse(pod_image).to_json(),
        "timeout_seconds": settings.pod_timeout_seconds,
        "ram_bytes": int(settings.pod_ram_gib * GIB),
        "network_name": settings.pod_network,
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
