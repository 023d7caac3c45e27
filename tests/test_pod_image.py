"""The pod image (``python -m pods.image``) and the test images of tests/docker_images.py.

Without Docker: the tag is a content hash of exactly what the image is built
from, and the two recipes (pods/Dockerfile and the offline one) agree.
With Docker: the image is built (or reused) and the pods run in it as uid 1000,
hardened as the engine runs them, against a real test PodService that listens
on the bridge gateway: configuration lays out a bind-mounted /data, a Python
algorithm runs in the same image without network, publishing uploads its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import docker_images
import pods.image
from c2d.pod.v1 import pod_pb2, pod_pb2_grpc
from docker_images import TEST_UID, TEST_USER, bridge_gateway
from pods.image import builder, content, offline
from podservice import FakePodService, Kind, Stage, pod_environment, sha256, zip_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
BIG_NODE_FILE = os.urandom(200 * 1024)  # several FetchInput chunks
PREVIOUS_OUTPUTS = {"result.txt": b"from stage 0\n", "deep/data.bin": os.urandom(3000)}
ALGORITHM = b"""\
import os, pathlib
data = pathlib.Path(os.environ["C2D_DATA"])
notes = (data / "inputs" / "0" / "notes.txt").read_text()
size = (data / "inputs" / "0" / "big.bin").stat().st_size
(data / "outputs" / "result.txt").write_text(f"{notes} {size} uid={os.getuid()}")
print("algorithm done")
"""


# Without Docker ------------------------------------------------------------------------------


def test_the_tag_hashes_exactly_the_sources(tmp_path: Path) -> None:
    files = content.source_files()
    names = [name for name, _ in files]
    assert "pods/configuration.py" in names and "pods/publishing.py" in names
    assert "sdk/c2d/auth.py" in names and "sdk/c2d/pod/v1/pod_pb2.py" in names
    assert "pods/image/requirements.txt" in names and "pods/Dockerfile" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    tag = pods.image.expected_tag()
    assert tag == content.expected_tag() and len(tag) == 12 and int(tag, 16) >= 0
    assert pods.image.image_name() == f"c2d-pod:{tag}"

    # One changed byte anywhere makes another tag; the same content the same tag.
    copy = tmp_path / "configuration.py"
    copy.write_bytes(dict(files)["pods/configuration.py"].read_bytes())
    same = [(n, copy if n == "pods/configuration.py" else p) for n, p in files]
    assert content.content_hash(same) == content.content_hash(files)
    copy.write_bytes(copy.read_bytes() + b"\n")
    assert content.content_hash(same) != content.content_hash(files)

    printed = subprocess.run(
        [sys.executable, "-m", "pods.image", "tag"], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert printed.stdout.strip() == tag


def test_the_build_context_holds_the_hashed_files() -> None:
    import tarfile

    with tarfile.open(fileobj=content.context_tar({"extra.Dockerfile": b"FROM x\n"})) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
    assert set(members) == {name for name, _ in content.source_files()} | {"extra.Dockerfile"}
    assert {m.mtime for m in members.values()} == {content.CONTEXT_MTIME}
    assert {m.uid for m in members.values()} == {0}


def test_both_recipes_make_the_same_image() -> None:
    dockerfile = (REPO_ROOT / "pods" / "Dockerfile").read_text()
    final = offline.FINAL_DOCKERFILE.format(base="BASE", source_dir=offline.SOURCE_DIR, uid=1000, gid=1000)
    assert "FROM ${PYTHON_IMAGE}" in dockerfile and "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    for text in (dockerfile, final):
        assert "COPY sdk/c2d /opt/c2d/python/c2d" in text and "COPY pods /opt/c2d/python/pods" in text
        assert 'python3 -c "import pods.configuration, pods.publishing"' in text
        assert "ENV PYTHONUNBUFFERED=1" in text and text.rstrip().endswith("USER 1000:1000")
    assert "--requirement /tmp/c2d-requirements.txt" in dockerfile and "c2d-pod.pth" in dockerfile
    assert "--uid 1000" in dockerfile
    assert offline.SOURCE_DIR == "/opt/c2d/python" and offline.UID == 1000
    assert "python3" in offline.PACKAGES and offline.SUITE == "bookworm"  # bookworm's python3 is 3.11


def test_requirements_lock_pins_everything() -> None:
    lines = [
        line for line in content.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert lines and all("==" in line for line in lines)
    pinned = {line.split("==")[0] for line in lines}
    wanted = {
        re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0]
        for line in (content.REQUIREMENTS.parent / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert wanted and wanted <= pinned, f"not pinned: {wanted - pinned}"


def test_ensure_without_building_says_how_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoImages:
        class images:  # mimics docker.DockerClient.images
            @staticmethod
            def get(name: str) -> None:
                import docker.errors

                raise docker.errors.ImageNotFound(name)

    monkeypatch.setattr(content, "expected_tag", lambda: "0123456789ab")
    with pytest.raises(pods.image.ImageMissing, match=r"c2d-pod:0123456789ab .*python -m pods.image build"):
        pods.image.ensure(NoImages(), build=False)


def test_offline_cache_dir_and_mirror_follow_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2D_CACHE_DIR", str(tmp_path))
    assert offline.cache_dir() == tmp_path / "pod-image" and offline.cache_dir().is_dir()
    monkeypatch.setenv(offline.MIRROR_VARIABLE, "http://mirror.example/debian")
    assert offline.debian_mirror() == "http://mirror.example/debian"
    monkeypatch.delenv(offline.MIRROR_VARIABLE)
    assert offline.debian_mirror().startswith("http")


# With Docker ---------------------------------------------------------------------------------


class BridgePodService(FakePodService):
    """The test PodService listening on the bridge gateway, where containers reach it."""

    def __init__(self, job_id: str, pod_address: str, host: str) -> None:
        super().__init__(job_id, pod_address)
        self.host = host

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> BridgePodService:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pod_pb2_grpc.add_PodServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"{self.host}:0")
        self._server.start()
        return self


def run_container(client: Any, image: str, command: list[str], **options: Any) -> tuple[int, str]:
    """(exit status, output) of a container run to its end, hardened as the engine runs pods."""
    defaults: dict[str, Any] = {
        "user": f"{TEST_UID}:{TEST_UID}",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 256,
        "tmpfs": {"/tmp": "size=16m"},
    }
    container = client.containers.run(image, command, detach=True, **(defaults | options))
    try:
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def image(docker_client: Any) -> str:
    started = time.monotonic()
    name = docker_images.pod_image(docker_client)
    print(f"pod image {name} ready in {time.monotonic() - started:.1f} s")
    return name


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """The job's data root as the engine hands it to the pods: writable by uid 1000."""
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, TEST_UID, TEST_UID)
    else:
        data.chmod(0o777)
    return data


@pytest.fixture
def stage() -> Stage:
    return Stage(job_id="job-pod-image-1")


@pytest.fixture
def service(docker_client: Any, stage: Stage) -> Iterator[BridgePodService]:
    service = BridgePodService(stage.job_id, stage.pod_address, bridge_gateway(docker_client)).start()
    yield service
    service.stop()


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_the_pod_image_is_built_and_reused(docker_client: Any, image: str) -> None:
    tag = pods.image.expected_tag()
    assert image == f"c2d-pod:{tag}"
    attrs = docker_client.images.get(image).attrs
    assert attrs["Config"]["User"] == "1000:1000"
    assert attrs["Config"]["Labels"][builder.LABEL_TAG] == tag
    assert not attrs["Config"].get("Entrypoint")

    started = time.monotonic()
    assert pods.image.ensure(docker_client) == image  # up to date: reused, not rebuilt
    assert docker_images.python_image(docker_client) == image
    assert time.monotonic() - started < 5
    check = subprocess.run(
        [sys.executable, "-m", "pods.image", "check"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    status, output = run_container(
        docker_client,
        image,
        [
            "python3",
            "-c",
            "import os, sys, pwd, pods.configuration, pods.publishing, c2d.auth;"
            "print(sys.version_info[:2], os.getuid(), pwd.getpwuid(os.getuid()).pw_name, pods.__file__)",
        ],
        user=None,  # the image's own user
    )
    assert status == 0, output
    assert output.split() == ["(3,", "11)", "1000", "c2d", "/opt/c2d/python/pods/__init__.py"]


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_the_pods_run_in_the_image(
    docker_client: Any, image: str, stage: Stage, service: BridgePodService, data: Path
) -> None:
    service.node_files = {"tok-big": BIG_NODE_FILE, "tok-zip": zip_bytes(PREVIOUS_OUTPUTS)}
    provisioning = service.provisioning
    provisioning.inputs.add(
        folder="0",
        files=[
            pod_pb2.FileSource(
                type="data", data=b"inline", name="notes.txt", checksum="sha256:" + sha256(b"inline")
            ),
            pod_pb2.FileSource(type="node", url="tok-big", name="big.bin", size=len(BIG_NODE_FILE)),
        ],
    )
    provisioning.inputs.add(
        folder="job-previous", files=[pod_pb2.FileSource(type="node", url="tok-zip", archive=True)]
    )
    provisioning.algorithm.CopyFrom(pod_pb2.FileSource(type="data", data=ALGORITHM, name="algorithm.py"))
    env = pod_environment(stage, service, Path("/data"))
    env = {key: value for key, value in env.items() if key not in {"PATH", "HOME"}}
    assert env["nodeHttpApi"] == f"{bridge_gateway(docker_client)}:{service.port}"
    volumes = {str(data): {"bind": "/data", "mode": "rw"}}

    # pod-configuration
    status, output = run_container(
        docker_client, image, ["python3", "-m", "pods.configuration"], environment=env, volumes=volumes
    )
    assert status == 0, output
    assert service.phases() == ["POD_PHASE_PROVISIONING_STARTED", "POD_PHASE_PROVISIONING_FINISHED"]
    inputs = data / "inputs"
    assert (inputs / "0" / "notes.txt").read_bytes() == b"inline"
    assert (inputs / "0" / "big.bin").read_bytes() == BIG_NODE_FILE
    for name, blob in PREVIOUS_OUTPUTS.items():
        assert (inputs / "job-previous" / name).read_bytes() == blob
    assert (inputs / "0" / "big.bin").stat().st_uid == TEST_UID  # written by the pod's user
    algorithm = data / "transformations" / "algorithm"
    assert algorithm.read_bytes() == ALGORITHM
    log = (data / "logs" / "configuration.log").read_text()
    assert "provisioning finished" in log and service.host not in log

    # The algorithm, in the same image (it has python3), without network.
    status, output = run_container(
        docker_client,
        docker_images.python_image(docker_client),
        ["python3", "/data/transformations/algorithm"],
        environment={"C2D_DATA": "/data"},
        volumes=volumes,
        network_mode="none",
    )
    assert status == 0, output
    (data / "logs" / "algorithm.log").write_text(output)

    # pod-publishing
    status, output = run_container(
        docker_client, image, ["python3", "-m", "pods.publishing"], environment=env, volumes=volumes
    )
    assert status == 0, output
    assert (
        service.upload(Kind.UPLOAD_KIND_OUTPUT, "result.txt")
        == f"inline {len(BIG_NODE_FILE)} uid=1000".encode()
    )
    assert service.upload(Kind.UPLOAD_KIND_ALGORITHM_LOG, "algorithm.log") == b"algorithm done\n"
    assert service.upload_order == ["result.txt", "algorithm.log", "configuration.log", "publishing.log"]
    assert service.phases()[-2:] == ["POD_PHASE_PUBLISHING_STARTED", "POD_PHASE_PUBLISHING_FINISHED"]


@pytest.mark.docker
def test_the_busybox_image(docker_client: Any) -> None:
    started = time.monotonic()
    name = docker_images.busybox_image(docker_client)
    assert name == "c2d-test-busybox:1" and time.monotonic() - started < 5
    first_id = docker_client.images.get(name).id
    assert (
        docker_images.busybox_image(docker_client) == name and docker_client.images.get(name).id == first_id
    )  # reused

    output = docker_client.containers.run(
        name,
        ["sh", "-c", "id -u; id -un; echo ok > /tmp/x && cat /tmp/x; ls /home"],
        user="1000",
        remove=True,
    )
    assert output.decode().split() == ["1000", TEST_USER, "ok", TEST_USER]
    assert docker_client.containers.run(name, ["id", "-u"], remove=True).decode().strip() == "0"
