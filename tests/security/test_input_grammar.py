"""Consumer image references follow Docker's reference grammar, checked before anything is stored; offsets
and indexes out of range get a clean refusal, with no traceback in the node's or the engine's log.

Out-of-range positions answer INVALID_ARGUMENT ("past the end", as results always did; the SDK also
accepts OUT_OF_RANGE), an index that names nothing NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from c2d.compute.v1 import compute_pb2
from c2d.conformance.harness import EngineProcess
from c2d.engine.v1 import engine_pb2
from c2d.quoting import MESSAGE_LIMIT
from security.hostile import Caller, NodeSetup, engine_jobs, hostile_node, row_counts, stub_engine, tracebacks
from security.walk import SERVICES

C = grpc.StatusCode
COMPUTE = SERVICES["ComputeService"].methods_by_name
BAD_IMAGES = [
    "Busybox",  # upper case is for registry hosts only
    "busybox:1",  # the tag goes in tag
    "busybox@sha256:" + "a" * 64,  # the digest goes in checksum
    "a//b",
    "-busybox",
    "busy box",
    "busybox/",
    "../../etc/passwd",
    "busybox\n",
    "registry:port/busybox",
    "x" * 300,
]
BAD_TAGS = [".1", "-1", "a" * 129, "1 2", "é", "1\x00"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSetup]:
    with hostile_node(tmp_path_factory.mktemp("grammar")) as node_setup:
        yield node_setup


@pytest.fixture
def caller(setup: NodeSetup) -> Iterator[Caller]:
    c = Caller(setup)
    yield c
    c.close()
    assert not tracebacks(setup.node.raw_lines), tracebacks(setup.node.raw_lines)


def _start(caller: Caller, image: str, tag: str) -> tuple[grpc.StatusCode, str]:
    method = COMPUTE["FreeStartCompute"]
    request = caller.base(method)
    container = request.workflow.stages[0].algorithm.container
    container.image, container.tag = image, tag
    caller.sign(method, request)
    return caller.send(method, request)


@pytest.mark.parametrize(
    ("image", "tag"), [(i, "1") for i in BAD_IMAGES] + [("busybox", t) for t in BAD_TAGS]
)
def test_a_malformed_image_reference_is_refused_before_anything_is_stored(
    setup: NodeSetup, caller: Caller, image: str, tag: str
) -> None:
    before = row_counts(setup.node.data_dir)
    code, message = _start(caller, image, tag)
    assert code == C.INVALID_ARGUMENT, (code, message)
    assert "image" in message and ("name" in message or "tag" in message), message
    assert row_counts(setup.node.data_dir) == before


@pytest.mark.parametrize(
    "image", ["busybox", "library/busybox", "registry.example:5000/team/algo_v2", "a.b-c__d"]
)
def test_a_well_formed_reference_passes(caller: Caller, image: str) -> None:
    method = COMPUTE["InitializeCompute"]
    request = caller.base(method)
    request.workflow.stages[0].algorithm.container.image = image
    request.workflow.stages[0].algorithm.container.tag = "1.2-rc_3"
    assert caller.send(method, request) == (C.OK, "")


def _signed(caller: Caller, name: str, **fields: object) -> tuple[grpc.StatusCode, str]:
    method = COMPUTE[name]
    request = caller.base(method)
    for key, value in fields.items():
        setattr(request, key, value)
    caller.sign(method, request)
    return caller.send(method, request)


def test_result_and_log_positions_out_of_range(setup: NodeSetup, caller: Caller) -> None:
    assert _signed(caller, "GetComputeResult", index=999)[0] == C.NOT_FOUND
    code, message = _signed(caller, "GetComputeResult", index=0, offset=2**40)
    assert code == C.INVALID_ARGUMENT and "past the end" in message, (code, message)
    code, message = _signed(caller, "GetComputeResult", index=2**32 - 1)
    assert code == C.INVALID_ARGUMENT and "index" in message, (code, message)
    code, message = _signed(caller, "GetComputeResult", offset=2**64 - 1)
    assert code == C.INVALID_ARGUMENT and "offset" in message, (code, message)
    # A finished stage's log ends where it ends: a position past it is an error, not an empty log.
    code, message = _signed(caller, "StreamComputeLogs", offset=2**40)
    assert code == C.INVALID_ARGUMENT and "past the end of the log" in message, (code, message)
    assert _signed(caller, "StreamComputeLogs", offset=0)[0] == C.OK


def test_upload_positions_and_kinds_out_of_range(setup: NodeSetup, caller: Caller) -> None:
    methods = SERVICES["PodService"].methods_by_name
    offset = caller.base(methods["GetUploadOffset"])
    offset.kind = 77  # type: ignore[attr-defined]
    caller.sign(methods["GetUploadOffset"], offset)
    code, message = caller.send(methods["GetUploadOffset"], offset)
    assert code == C.INVALID_ARGUMENT and "kind" in message, (code, message)
    for field, value in (("size", 2**64 - 1), ("offset", 2**63)):
        publish = caller.base(methods["PublishResult"])
        setattr(publish.header, field, value)  # type: ignore[attr-defined]
        caller.sign(methods["PublishResult"], publish)
        code, message = caller.send(methods["PublishResult"], publish)
        assert code == C.INVALID_ARGUMENT and f"header.{field}" in message, (code, message)
    fetch = caller.base(methods["FetchInput"])
    fetch.offset = 2**64 - 1  # type: ignore[attr-defined]
    caller.sign(methods["FetchInput"], fetch)
    code, message = caller.send(methods["FetchInput"], fetch)
    assert code == C.INVALID_ARGUMENT and "offset" in message, (code, message)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with stub_engine(tmp_path_factory.mktemp("grammar-engine")) as process:
        yield process


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[EngineProcess]:
    """The Docker engine: the one that pulls what an image reference names (the stub runs none)."""
    with stub_engine(tmp_path_factory.mktemp("grammar-docker"), "docker") as process:
        yield process


@pytest.mark.parametrize(
    ("image", "tag"),
    [("Bad Image", "1"), ("busybox\x00", "1"), ("busybox", ".."), ("a" * 5000, "1")],
    ids=["space", "nul", "dots-tag", "5000-chars"],
)
def test_an_engine_refuses_a_bad_image_without_a_traceback(
    docker_engine: EngineProcess, image: str, tag: str
) -> None:
    before = engine_jobs(docker_engine)
    spec = docker_engine.job_spec("true")
    spec.container.image, spec.container.tag = image, tag
    with pytest.raises(grpc.RpcError) as caught:
        docker_engine.stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=30)
    assert caught.value.code() == C.INVALID_ARGUMENT, caught.value.details()
    assert len(caught.value.details().encode()) <= MESSAGE_LIMIT
    assert engine_jobs(docker_engine) == before
    assert not tracebacks(docker_engine.plugin.stderr_text().splitlines())


def test_an_engine_log_offset_out_of_range_is_refused(engine: EngineProcess) -> None:
    request = engine_pb2.StreamJobLogsRequest(job_id="conformance-no-such-job", offset=2**63)
    with pytest.raises(grpc.RpcError) as caught:
        list(engine.stub.StreamJobLogs(request, timeout=30))
    assert caught.value.code() == C.INVALID_ARGUMENT and "offset" in caught.value.details()
    assert not tracebacks(engine.plugin.stderr_text().splitlines())


def test_status_of_no_job_stays_empty(caller: Caller) -> None:
    """Nothing a refusal above stored shows up for the consumer either."""
    method = COMPUTE["GetComputeStatus"]
    request = compute_pb2.GetComputeStatusRequest(all=True)
    caller.sign(method, request)
    assert len(caller.compute.GetComputeStatus(request, timeout=20).jobs) == 2  # the fixture's two stages
