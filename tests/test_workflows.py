"""Workflows end to end: a consumer with the SDK against ``python -m host`` on the external_stub engine.

Everything is real: the node process, the engine plugin process, the pods
running as local processes and calling back over gRPC, SQLite, signatures.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2, compute_pb2_grpc
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
SECRET_DIR = "very-secret-location"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    (root / SECRET_DIR).mkdir()
    (root / SECRET_DIR / "numbers.csv").write_text("n\n" + "\n".join(str(i) for i in range(1, 101)) + "\n")
    return root


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[NodeProcess]:
    env = {
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]',
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


@pytest.fixture(scope="module")
def operator(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, node.node_key()) as client:
        client.register_asset(
            {
                "did": "did:op:numbers",
                "name": "private numbers",
                "services": [
                    {
                        "serviceId": "compute",
                        "kind": "KIND_DATASET",
                        "files": {
                            "files": [
                                {"type": "local", "path": f"{SECRET_DIR}/numbers.csv", "name": "numbers.csv"}
                            ]
                        },
                        "policy": {"allowRawCode": True},
                    }
                ],
            },
            replace=True,
        )
        yield client


@pytest.fixture
def consumer(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client


def stage(index: int, script: str, *, after: list[int] | None = None, dataset: bool = False) -> dict:
    return {
        "index": index,
        "runAfter": after,
        "input": [{"index": 0, "did": "did:op:numbers", "serviceId": "compute"}] if dataset else [],
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
        },
    }


def built(index: int, container: dict | None = None, *, files: dict | None = None) -> dict:
    """A stage whose image is built from a Dockerfile; ``container`` overrides its fields."""
    fields = {
        "entrypoint": "sh $ALGO",
        "dockerfile": "FROM busybox:1\n",
        **((files and {"additionalFiles": files}) or {}),
    }
    return {"index": index, "algorithm": {"rawcode": "true", "container": {**fields, **(container or {})}}}


def consumer_key(client: Client) -> str:
    return client._key  # type: ignore[return-value]  # the test built it; no public accessor on purpose


def wait_until(client: Client, job_id: str, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (job,) = client.status(job_id=job_id)
        if job.status == status:
            return
        assert not job.terminal, f"job ended as {job.status_text} before reaching {status}"
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach status {status} in {timeout}s")


def by_index(jobs: list[compute_pb2.JobInfo]) -> dict[int, compute_pb2.JobInfo]:
    return {job.stage_index: job for job in jobs}


def first_time(job: compute_pb2.JobInfo, status: int) -> float:
    return next(e.time.ToNanoseconds() for e in job.history if e.status == status) / 1e9


def test_three_stage_workflow_over_a_private_dataset(
    node: NodeProcess, operator: Client, consumer: Client, tmp_path: Path
) -> None:
    sum_numbers = (
        'awk \'NR>1 {s+=$1} END {print s}\' "$C2D_DATA/inputs/0/numbers.csv" > "$C2D_DATA/outputs/sum.txt"'
    )
    count_lines = 'wc -l < "$C2D_DATA/inputs/0/numbers.csv" > "$C2D_DATA/outputs/count.txt"; echo counted'
    double = 'cat "$C2D_DATA"/inputs/*/sum.txt | awk \'{print $1 * 2}\' > "$C2D_DATA/outputs/double.txt"'
    workflow = {
        "environment": ENV,
        "stages": [
            stage(0, f"sleep 1; {sum_numbers}", dataset=True),
            stage(1, count_lines, dataset=True),
            stage(2, double, after=[0]),
        ],
    }
    started = consumer.start(workflow, free=True)
    jobs = by_index(consumer.wait(started.workflow_id, timeout=60))
    assert {i: j.status for i, j in jobs.items()} == {
        0: S.JOB_STATUS_FINISHED,
        1: S.JOB_STATUS_FINISHED,
        2: S.JOB_STATUS_FINISHED,
    }

    out = tmp_path / "results"
    for index, expected in ((0, "5050"), (1, "101"), (2, "10100")):
        paths = consumer.results(jobs[index].job_id, out / str(index))
        outputs = [p for p in paths if p.suffix == ".txt"]
        assert [p.read_text().strip() for p in outputs] == [expected], f"stage {index}"
        assert any(p.name == "algorithm.log" for p in paths)

    # Stage 2 found stage 0's outputs under inputs/<its job id>/ and started only after it finished.
    assert first_time(jobs[2], S.JOB_STATUS_RUNNING) > first_time(jobs[0], S.JOB_STATUS_FINISHED)
    # Stages 0 and 1 ran side by side.
    assert first_time(jobs[1], S.JOB_STATUS_RUNNING) < first_time(jobs[0], S.JOB_STATUS_FINISHED)


def test_a_failing_stage_skips_what_runs_after_it(consumer: Client) -> None:
    workflow = {
        "environment": ENV,
        "stages": [stage(0, "exit 4"), stage(1, "true", after=[0]), stage(2, "true", after=[1])],
    }
    jobs = by_index(consumer.wait(consumer.start(workflow, free=True).workflow_id, timeout=60))
    assert jobs[0].status == S.JOB_STATUS_ALGORITHM_FAILED and jobs[0].exit_code == 4
    assert jobs[1].status == S.JOB_STATUS_SKIPPED and jobs[2].status == S.JOB_STATUS_SKIPPED
    assert not any(e.status == S.JOB_STATUS_RUNNING for e in jobs[1].history)


def test_stop_a_running_workflow(consumer: Client, tmp_path: Path) -> None:
    started = consumer.start(
        {"environment": ENV, "stages": [stage(0, "echo started; sleep 300"), stage(1, "true", after=[0])]},
        free=True,
    )
    wait_until(consumer, started.stages[0].job_id, S.JOB_STATUS_RUNNING)
    consumer.stop(workflow_id=started.workflow_id)
    jobs = by_index(consumer.wait(started.workflow_id, timeout=30))
    assert jobs[0].status == S.JOB_STATUS_STOPPED
    assert jobs[1].status == S.JOB_STATUS_SKIPPED
    # The pods publish nothing after a stop; the node keeps the engine's copy of the log instead.
    first = started.stages[0].job_id
    log_file = wait_for(
        lambda: next(
            (r for r in consumer.status(job_id=first)[0].results if r.name == "algorithm.log"), None
        ),
        15,
        "the stopped stage's log",
    )
    assert log_file.kind == compute_pb2.RESULT_KIND_ALGORITHM_LOG
    assert consumer.result(first, log_file.index, tmp_path / "algorithm.log").read_text() == "started\n"


def test_stages_queue_when_capacity_is_full(consumer: Client) -> None:
    whole_machine = [{"id": "cpu", "amount": 2}]
    workflow = {
        "environment": ENV,
        "resources": whole_machine,
        "stages": [stage(0, "sleep 2"), stage(1, "sleep 2")],
    }
    jobs = by_index(consumer.wait(consumer.start(workflow, free=True).workflow_id, timeout=60))
    assert all(j.status == S.JOB_STATUS_FINISHED for j in jobs.values())
    first, second = sorted(jobs.values(), key=lambda j: first_time(j, S.JOB_STATUS_RUNNING))
    assert first_time(second, S.JOB_STATUS_RUNNING) >= first_time(first, S.JOB_STATUS_FINISHED)


INVALID = [
    (compute_pb2.Workflow(environment_id=ENV), "no stages"),  # the SDK refuses this one itself
    ({"environment": "nowhere", "stages": [stage(0, "true")]}, "unknown environment 'nowhere'"),
    ({"environment": ENV, "stages": [stage(0, "true", after=[1]), stage(1, "true", after=[0])]}, "cycle"),
    ({"environment": ENV, "stages": [stage(0, "true", after=[7])]}, "not in this workflow"),
    (
        {
            "environment": ENV,
            "stages": [
                {"index": 0, "algorithm": {"container": {"entrypoint": "x", "image": "b", "tag": "1"}}}
            ],
        },
        "algorithm is empty",
    ),
    (
        {
            "environment": ENV,
            "stages": [
                {"index": 0, "algorithm": {"rawcode": "x", "container": {"entrypoint": "x", "image": "b"}}}
            ],
        },
        "needs a tag or a digest",
    ),
    (
        {"environment": ENV, "resources": [{"id": "cpu", "amount": 64}], "stages": [stage(0, "true")]},
        "above the maximum",
    ),
    (
        {"environment": ENV, "maxJobDuration": 10**7, "stages": [stage(0, "true")]},
        "above the environment's maximum",
    ),
    (
        {
            "environment": ENV,
            "stages": [{**stage(0, "true"), "input": [{"index": 0, "did": "did:op:none", "serviceId": "x"}]}],
        },
        "did:op:none",
    ),
    (
        {"environment": ENV, "stages": [built(0, {"image": "busybox", "tag": "1"})]},
        "both an image and a dockerfile",
    ),
    ({"environment": ENV, "stages": [built(0, {"dockerfile": "FROM x\n" + "#" * 65536})]}, "at most 65536"),
    (
        {"environment": ENV, "stages": [built(0, {"additionalFiles": {"../x": "x"}})]},
        "'../x' is not a plain relative path",
    ),
    (
        {"environment": ENV, "stages": [built(0, {"additionalFiles": {"/etc/x": "x"}})]},
        "not a plain relative path",
    ),
    (
        {"environment": ENV, "stages": [built(0, {"dockerfile": ""}, files={"a": "x"})]},
        "additional_files but no dockerfile",
    ),
    ({"environment": ENV, "stages": [built(0)]}, "'external_stub' engine does not build images"),
]


@pytest.mark.parametrize(("workflow", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_workflows_are_refused_and_nothing_is_stored(
    consumer: Client, workflow: dict, message: str
) -> None:
    with pytest.raises(C2DError) as caught:
        consumer.start(workflow, free=True)
    assert caught.value.code in ("INVALID_ARGUMENT", "NOT_FOUND"), caught.value
    assert message in caught.value.message
    assert consumer.status(all=True) == []


def test_a_registered_algorithm_built_from_a_dockerfile_is_refused_by_an_engine_that_does_not_build(
    operator: Client, consumer: Client
) -> None:
    container = {"entrypoint": "true", "dockerfile": "FROM busybox:1\n"}
    operator.register_asset(
        {
            "did": "did:op:built",
            "services": [{"serviceId": "run", "kind": "algorithm", "container": container}],
        },
        replace=True,
    )
    workflow = {
        "environment": ENV,
        "stages": [{"index": 0, "algorithm": {"did": "did:op:built", "serviceId": "run"}}],
    }
    with pytest.raises(C2DError) as caught:
        consumer.start(workflow, free=True)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "'external_stub' engine does not build images" in caught.value.message, caught.value.message
    assert consumer.status(all=True) == []


def raw_stub(node: NodeProcess) -> compute_pb2_grpc.ComputeServiceStub:
    return compute_pb2_grpc.ComputeServiceStub(grpc.insecure_channel(node.address))


METHOD = "/c2d.compute.v1.ComputeService/GetComputeStatus"


def test_bad_signature_replayed_nonce_and_other_consumers_jobs_are_refused(
    node: NodeProcess, consumer: Client
) -> None:
    started = consumer.start({"environment": ENV, "stages": [stage(0, "true")]}, free=True)
    stub = raw_stub(node)
    owner_key, stranger_key = consumer_key(consumer), auth.new_private_key()

    request = compute_pb2.GetComputeStatusRequest(job_id=started.stages[0].job_id)
    auth.sign_request(stranger_key, METHOD, request)
    request.auth.address = auth.address_of(owner_key)  # claims to be the owner
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetComputeStatus(request)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    request = compute_pb2.GetComputeStatusRequest(job_id=started.stages[0].job_id)
    auth.sign_request(owner_key, METHOD, request)
    assert stub.GetComputeStatus(request).jobs
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetComputeStatus(request)  # the same signed request again
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in caught.value.details()
    # ... and said for programs too: the last nonce accepted, as a google.rpc.ErrorInfo
    assert C2DError.from_rpc_error(caught.value).stale_nonce == request.auth.nonce

    tampered = compute_pb2.GetComputeStatusRequest(all=True)
    auth.sign_request(owner_key, METHOD, tampered)
    tampered.ClearField("all")
    tampered.job_id = started.stages[0].job_id  # signature moved to another body
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetComputeStatus(tampered)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    request = compute_pb2.GetComputeStatusRequest(job_id=started.stages[0].job_id)
    auth.sign_request(stranger_key, METHOD, request)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetComputeStatus(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # no hint that the job exists

    with Client(node.address, stranger_key) as stranger, pytest.raises(C2DError) as stop_error:
        stranger.stop(job_id=started.stages[0].job_id)
    assert stop_error.value.code == "NOT_FOUND"


def test_admin_calls_need_the_node_key(consumer: Client) -> None:
    with pytest.raises(C2DError) as caught:
        consumer.list_assets()
    assert caught.value.code == "PERMISSION_DENIED"


def test_interrupted_download_resumes_from_offset_with_identical_bytes(
    node: NodeProcess, consumer: Client, tmp_path: Path
) -> None:
    script = 'head -c 3000000 /dev/urandom > "$C2D_DATA/outputs/blob.bin"'
    started = consumer.start({"environment": ENV, "stages": [stage(0, script)]}, free=True)
    job = consumer.wait(started.workflow_id, timeout=60)[0]
    output = next(r for r in job.results if r.kind == compute_pb2.RESULT_KIND_OUTPUT)
    whole = consumer.result(job.job_id, output.index, tmp_path / "whole.bin").read_bytes()
    assert hashlib.sha256(whole).hexdigest() == output.sha256

    # A download cut off after 1234567 bytes: the raw stream from that offset completes it.
    cut = 1_234_567
    request = compute_pb2.GetComputeResultRequest(job_id=job.job_id, index=output.index, offset=cut)
    auth.sign_request(consumer_key(consumer), "/c2d.compute.v1.ComputeService/GetComputeResult", request)
    replies = list(raw_stub(node).GetComputeResult(request))
    assert replies[0].offset == cut
    assert whole[:cut] + b"".join(r.data for r in replies) == whole

    # The SDK does the same from a partial file it finds.
    (tmp_path / "resumed.bin.part").write_bytes(whole[:cut])
    assert consumer.result(job.job_id, output.index, tmp_path / "resumed.bin").read_bytes() == whole


def test_private_locations_appear_in_no_consumer_visible_output(
    node: NodeProcess, operator: Client, consumer: Client, tmp_path: Path
) -> None:
    workflow = {
        "environment": ENV,
        "stages": [stage(0, 'cat "$C2D_DATA/inputs/0/numbers.csv" | wc -l', dataset=True)],
    }
    started = consumer.start(workflow, free=True)
    jobs = consumer.wait(started.workflow_id, timeout=60)
    consumer.results(jobs[0].job_id, tmp_path)
    visible = [str(jobs), json.dumps([str(a) for a in operator.list_assets()])]
    visible += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    visible += [b"".join(consumer.logs(jobs[0].job_id)).decode(errors="replace")]
    for text in visible:
        assert SECRET_DIR not in text


def test_stopping_right_after_starting_stops_every_stage(consumer: Client) -> None:
    """A stop that races the engine's StartJob must still stop the stage, and say so."""
    started = [
        consumer.start({"environment": ENV, "stages": [stage(0, "sleep 20")]}, free=True) for _ in range(6)
    ]
    for workflow in started:
        consumer.stop(workflow_id=workflow.workflow_id)
    for workflow in started:
        (job,) = consumer.wait(workflow.workflow_id, timeout=60)
        assert job.status == S.JOB_STATUS_STOPPED, [(e.status, e.message) for e in job.history]


def test_on_postgresql_a_workflow_runs_and_a_second_node_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    env = {
        "C2D_STORAGE__DATABASE_URL": postgres_url,
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]',
    }
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_environment(ENV)
        with Client(node.address, auth.new_private_key()) as client:
            workflow = {"environment": ENV, "stages": [stage(0, "exit 4"), stage(1, "true", after=[0])]}
            jobs = by_index(client.wait(client.start(workflow, free=True).workflow_id, timeout=60))
        assert jobs[0].status == S.JOB_STATUS_ALGORITHM_FAILED and jobs[0].exit_code == 4
        assert jobs[1].status == S.JOB_STATUS_SKIPPED
        assert not (tmp_path / "node" / "node.db").exists()
        second = NodeProcess(tmp_path / "second", env=env)  # another data dir, the same database
        assert second.process.wait(30) == 1
        second.stop()  # joins its log reader
        assert any("another node is running on the PostgreSQL database" in line for line in second.raw_lines)
