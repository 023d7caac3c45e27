"""pod-configuration and pod-publishing as real processes against a real (test) PodService.

The service (tests/podservice.py) checks every call's signature and nonce as
the node does; an HTTP server on 127.0.0.1 plays the private dataset host.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d.pod.v1 import pod_pb2
from pods.failures import SourceFailure
from pods.unzip import unpack
from pods.upload import CHUNK_BYTES
from podservice import (
    FakePodService,
    FileServer,
    Kind,
    Stage,
    files_under,
    pod_environment,
    run_pod,
    sha256,
    zip_bytes,
)

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-token"
TABLE = b"id,value\n1,2\n"
ALGORITHM = b"#!/bin/sh\necho hello\n"
PREVIOUS_OUTPUTS = {"result.txt": b"from stage 0\n", "deep/er/data.bin": os.urandom(3000)}
BIG_NODE_FILE = os.urandom(200 * 1024)  # several FetchInput chunks


@pytest.fixture
def stage() -> Stage:
    return Stage(job_id="job-pods-1")


@pytest.fixture
def service(stage: Stage) -> Iterator[FakePodService]:
    service = FakePodService(stage.job_id, stage.pod_address).start()
    yield service
    service.stop()


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer({"/private/dataset/table.csv": TABLE, "/algo.sh": ALGORITHM}, TOKEN) as server:
        yield server


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """The data root, as the engine creates it before the pods run."""
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def source(**fields: object) -> pod_pb2.FileSource:
    """An operator's source (its private URLs may be internal, here 127.0.0.1)."""
    return pod_pb2.FileSource(**{"origin": pod_pb2.SOURCE_ORIGIN_OPERATOR, **fields})


def provision(service: FakePodService, files: FileServer) -> None:
    """Every kind of source: inline data, a private http URL with a header, node files, a node zip."""
    table_url = files.url("/private/dataset/table.csv")
    service.node_files = {"tok-big": BIG_NODE_FILE, "tok-zip": zip_bytes(PREVIOUS_OUTPUTS)}
    response = service.provisioning
    response.inputs.add(
        folder="0",
        files=[
            source(type="data", data=b"inline", name="notes.txt", checksum="sha256:" + sha256(b"inline")),
            source(type="url", url=table_url, headers={"Authorization": f"Bearer {TOKEN}"}),
            source(type="node", url="tok-big", name="big.bin", size=len(BIG_NODE_FILE)),
        ],
    )
    response.inputs.add(folder="job-previous", files=[source(type="node", url="tok-zip", archive=True)])
    response.algorithm.CopyFrom(
        source(type="url", url=files.url("/algo.sh"), headers={"Authorization": f"Bearer {TOKEN}"})
    )
    response.algorithm_custom_data.update({"threshold": 3, "label": "x"})


# pod-configuration ----------------------------------------------------------------------------


def test_configuration_provisions_every_source(
    stage: Stage, service: FakePodService, files: FileServer, data: Path
) -> None:
    provision(service, files)
    service.fail_calls["GetProvisioning"] = 1  # the node restarts once: retried
    service.break_streams["FetchInput"] = 1  # a stream breaks after its first chunk: resumed

    result = run_pod("pods.configuration", pod_environment(stage, service, data))

    assert result.returncode == 0, result.stderr
    inputs = data / "inputs"
    assert (inputs / "0" / "notes.txt").read_bytes() == b"inline"
    assert (inputs / "0" / "file-1").read_bytes() == TABLE  # named by its index: the URL is private
    assert (inputs / "0" / "big.bin").read_bytes() == BIG_NODE_FILE
    for name, content in PREVIOUS_OUTPUTS.items():
        assert (inputs / "job-previous" / name).read_bytes() == content
    assert sorted(files_under(inputs / "job-previous")) == [
        "deep",
        "deep/er",
        "deep/er/data.bin",
        "result.txt",
    ]
    algorithm = data / "transformations" / "algorithm"
    assert algorithm.read_bytes() == ALGORITHM and algorithm.stat().st_mode & 0o777 == 0o755
    assert json.loads((inputs / "algoCustomData.json").read_text()) == {"threshold": 3, "label": "x"}
    assert (data / "outputs").is_dir() and list((data / "outputs").iterdir()) == []
    assert service.phases() == ["POD_PHASE_PROVISIONING_STARTED", "POD_PHASE_PROVISIONING_FINISHED"]
    assert service.calls["GetProvisioning"] == 2 and service.calls["FetchInput"] == 3
    log = (data / "logs" / "configuration.log").read_text()
    assert "input 0/file-1" in log and "provisioning finished" in log
    assert "table" not in log
    assert "127.0.0.1" not in log and TOKEN not in log and str(data) not in log


@pytest.mark.parametrize(
    ("case", "phase", "label"),
    [
        ("bad-checksum", "POD_PHASE_DATA_PROVISIONING_FAILED", "0/file-0"),
        ("missing-url", "POD_PHASE_DATA_PROVISIONING_FAILED", "0/file-0"),
        ("algorithm-forbidden", "POD_PHASE_ALGORITHM_PROVISIONING_FAILED", "algorithm"),
    ],
)
def test_failures_name_the_input_but_never_its_location(
    stage: Stage, service: FakePodService, files: FileServer, data: Path, case: str, phase: str, label: str
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    table = source(type="url", url=files.url("/private/dataset/table.csv"), headers=headers)
    if case == "bad-checksum":
        table.checksum = "sha256:" + sha256(b"something else")
    elif case == "missing-url":
        table.url = files.url("/private/dataset/gone.csv")
    else:
        service.provisioning.algorithm.CopyFrom(source(type="url", url=files.url("/algo.sh")))  # no token
    service.provisioning.inputs.add(folder="0", files=[table])

    result = run_pod("pods.configuration", pod_environment(stage, service, data))

    assert result.returncode == 1
    assert service.phases() == ["POD_PHASE_PROVISIONING_STARTED", phase]
    message = service.statuses[-1][1]
    assert label in message
    log = (data / "logs" / "configuration.log").read_text()
    for secret in ("http", "127.0.0.1", "/private", "dataset", TOKEN, "Bearer", str(data)):
        assert secret not in message and secret not in log, (secret, message)
    if case == "bad-checksum":
        assert list(files_under(data / "inputs" / "0")) == []  # a file that failed never looks like an input


@pytest.mark.parametrize(
    ("entries", "links"),
    [
        ({"../escaped.txt": b"x"}, None),
        ({"/tmp/absolute-escape.txt": b"x"}, None),
        ({"ok.txt": b"fine", "sub/../../escaped.txt": b"x"}, None),
        ({"ok.txt": b"fine"}, {"passwd": "/etc/passwd"}),
    ],
    ids=["dot-dot", "absolute", "nested-dot-dot", "symlink"],
)
def test_unsafe_archives_are_rejected(
    stage: Stage,
    service: FakePodService,
    data: Path,
    entries: dict[str, bytes],
    links: dict[str, str] | None,
) -> None:
    service.node_files = {"tok": zip_bytes(entries, links)}
    service.provisioning.inputs.add(folder="0", files=[source(type="node", url="tok", archive=True)])

    result = run_pod("pods.configuration", pod_environment(stage, service, data))

    assert result.returncode == 1
    assert service.phases()[-1] == "POD_PHASE_DATA_PROVISIONING_FAILED"
    assert "unsafe entry" in service.statuses[-1][1]
    assert list(files_under(data / "inputs" / "0")) == []  # nothing written, the archive removed
    assert not (data / "inputs" / "escaped.txt").exists() and not (data / "escaped.txt").exists()
    assert not Path("/tmp/absolute-escape.txt").exists()


def test_zip_bomb_is_capped(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_bytes({"zeros": bytes(1 << 20)}))
    with pytest.raises(SourceFailure, match="unpacks to more than 1000 bytes"):
        unpack(archive, tmp_path / "out", 1000, "0/bomb.zip")
    assert not (tmp_path / "out").exists()
    # An archive whose declared size lies is refused too, with no more than the declared bytes written.
    lying = bytearray(archive.read_bytes())
    _patch_declared_size(lying, "zeros", 10)
    archive.write_bytes(bytes(lying))
    with pytest.raises(SourceFailure):
        unpack(archive, tmp_path / "out", 1000, "0/bomb.zip")
    assert (tmp_path / "out" / "zeros").stat().st_size <= 10


def _patch_declared_size(data: bytearray, name: str, size: int) -> None:
    """Rewrites the uncompressed size of ``name`` in its local header and its central directory entry."""
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = data.find(signature)
        while start != -1:
            if data[start + name_at : start + name_at + len(encoded)] == encoded:
                data[start + size_at : start + size_at + 4] = size.to_bytes(4, "little")
            start = data.find(signature, start + 4)


# pod-publishing ----------------------------------------------------------------------------------


def lay_out(data: Path, outputs: dict[str, bytes]) -> None:
    for folder in ("outputs", "logs"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    for name, content in outputs.items():
        (data / "outputs" / name).parent.mkdir(parents=True, exist_ok=True)
        (data / "outputs" / name).write_bytes(content)
    (data / "logs" / "algorithm.log").write_bytes(b"algorithm says hi\n")
    (data / "logs" / "configuration.log").write_bytes(b"configured\n")


def test_publishing_one_file_as_is(stage: Stage, service: FakePodService, data: Path) -> None:
    lay_out(data, {"result.json": b'{"answer": 42}'})

    result = run_pod("pods.publishing", pod_environment(stage, service, data))

    assert result.returncode == 0, result.stderr
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "result.json") == b'{"answer": 42}'
    assert not service.uploads[(Kind.UPLOAD_KIND_OUTPUT, "result.json")].header.archive
    assert service.upload(Kind.UPLOAD_KIND_ALGORITHM_LOG, "algorithm.log") == b"algorithm says hi\n"
    assert service.upload(Kind.UPLOAD_KIND_CONFIGURATION_LOG, "configuration.log") == b"configured\n"
    published_log = service.upload(Kind.UPLOAD_KIND_PUBLISHING_LOG, "publishing.log")
    assert published_log is not None and b"uploaded result.json" in published_log
    assert service.upload_order == ["result.json", "algorithm.log", "configuration.log", "publishing.log"]
    assert service.phases() == ["POD_PHASE_PUBLISHING_STARTED", "POD_PHASE_PUBLISHING_FINISHED"]


def test_publishing_many_files_as_a_zip_without_links(
    stage: Stage, service: FakePodService, data: Path
) -> None:
    lay_out(data, {"a.txt": b"a", "sub/b.txt": b"b"})
    (data / "outputs" / "empty").mkdir()
    os.symlink("/etc/passwd", data / "outputs" / "passwd")
    os.symlink("/etc", data / "outputs" / "etc")
    os.mkfifo(data / "outputs" / "fifo")

    result = run_pod("pods.publishing", pod_environment(stage, service, data))

    assert result.returncode == 0, result.stderr
    archive = service.upload(Kind.UPLOAD_KIND_OUTPUT, "outputs.zip")
    assert archive is not None and service.uploads[(Kind.UPLOAD_KIND_OUTPUT, "outputs.zip")].header.archive
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert sorted(zf.namelist()) == ["a.txt", "empty/", "sub/", "sub/b.txt"]
        assert zf.read("sub/b.txt") == b"b"
    assert not (data / ".publishing").exists()


def test_publishing_nothing_uploads_only_logs(stage: Stage, service: FakePodService, data: Path) -> None:
    lay_out(data, {})

    result = run_pod("pods.publishing", pod_environment(stage, service, data))

    assert result.returncode == 0, result.stderr
    assert [kind for kind, _ in service.uploads] == [
        Kind.UPLOAD_KIND_ALGORITHM_LOG,
        Kind.UPLOAD_KIND_CONFIGURATION_LOG,
        Kind.UPLOAD_KIND_PUBLISHING_LOG,
    ]


def test_upload_resumes_after_the_node_fails(stage: Stage, service: FakePodService, data: Path) -> None:
    big = os.urandom(CHUNK_BYTES + 123)
    lay_out(data, {"model.bin": big})
    service.break_streams["PublishResult"] = 1  # the stream dies after its first chunk arrived
    service.fail_calls["GetUploadOffset"] = 1  # and the node is away for one more call

    result = run_pod("pods.publishing", pod_environment(stage, service, data))

    assert result.returncode == 0, result.stderr
    assert service.upload(Kind.UPLOAD_KIND_OUTPUT, "model.bin") == big
    assert service.calls["PublishResult"] == 1 + 4  # the output twice, then three logs
    assert service.upload_offsets[:2] == [("model.bin", 0), ("model.bin", CHUNK_BYTES)]  # resumed, not redone
    log = service.upload(Kind.UPLOAD_KIND_PUBLISHING_LOG, "publishing.log")
    assert log is not None and b"UNAVAILABLE" in log


def test_publishing_failure_is_reported(stage: Stage, service: FakePodService, data: Path) -> None:
    lay_out(data, {"result.txt": b"r"})
    service.fail_calls["PublishResult"] = 1000  # the node never takes it

    env = pod_environment(stage, service, data) | {"C2D_POD_RETRY_SECONDS": "0.5"}
    result = run_pod("pods.publishing", env)

    assert result.returncode == 1
    assert service.phases() == ["POD_PHASE_PUBLISHING_STARTED", "POD_PHASE_PUBLISHING_FAILED"]
    assert "result.txt" in service.statuses[-1][1] and "127.0.0.1" not in service.statuses[-1][1]
