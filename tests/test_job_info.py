"""What a job carries besides its status: the start's metadata, how its algorithm ended, and when it ran.

Real parts: ``python -m host`` on the external_stub engine (its pods and algorithms are local
processes), SQLite, the SDK over gRPC with signed requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from nodeproc import NodeProcess, running_node

S = common_pb2.JobStatus
ENV = "stub-local"
ENV_SETTINGS = {
    "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]'
}
LIMIT = 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("node"), env=ENV_SETTINGS) as node:
        node.wait_environment(ENV)
        yield node


@pytest.fixture
def consumer(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client


def workflow(*scripts: str) -> dict:
    return {
        "environment": ENV,
        "stages": [
            {
                "index": index,
                "runAfter": [index - 1] if index else None,
                "algorithm": {
                    "rawcode": script,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
            for index, script in enumerate(scripts)
        ],
    }


def sized(size: int) -> dict:
    """Metadata of exactly ``size`` bytes as compact JSON, with every kind of value in it."""
    base = {
        "name": "run 7",
        "tags": ["a", "é"],
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "note": "",
    }
    padding = size - len(json.dumps(base, separators=(",", ":"), ensure_ascii=False).encode())
    assert padding >= 0
    return {**base, "note": "x" * padding}


def metadata_of(job: compute_pb2.JobInfo) -> dict | None:
    if not job.HasField("metadata"):
        return None
    data = json_format.MessageToDict(job.metadata)
    # Struct numbers are doubles: compare as the consumer wrote them.
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in data.items()}


def seconds(stamp: object) -> float:
    return stamp.ToNanoseconds() / 1e9  # type: ignore[attr-defined]


def test_metadata_of_1024_bytes_comes_back_in_every_status_and_after_a_restart(tmp_path: Path) -> None:
    metadata = sized(LIMIT)
    with running_node(tmp_path / "node", env=ENV_SETTINGS) as node:
        node.wait_environment(ENV)
        key = auth.new_private_key()
        with Client(node.address, key) as client:
            started = client.start(workflow("true", "true"), free=True, metadata=metadata)
            for job in client.status(workflow_id=started.workflow_id) + client.status(all=True):
                assert metadata_of(job) == metadata
            ended = client.wait(started.workflow_id, timeout=60)
            assert [metadata_of(job) for job in ended] == [metadata, metadata]
            (without,) = client.wait(client.start(workflow("true"), free=True).workflow_id, timeout=60)
            assert metadata_of(without) is None
        node.kill()  # SIGKILL: nothing is flushed on the way out
        with running_node(node.data_dir, env=ENV_SETTINGS, port=node.port, pod_port=node.pod_port) as again:
            again.wait_listening()
            with Client(again.address, key) as client:
                jobs = client.status(job_id=started.job_ids[1])
                assert [metadata_of(job) for job in jobs] == [metadata]


def test_metadata_over_1024_bytes_is_refused_and_nothing_is_stored(consumer: Client) -> None:
    with pytest.raises(C2DError) as refused:
        consumer.start(workflow("true"), free=True, metadata=sized(LIMIT + 1))
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.message == f"metadata is {LIMIT + 1} bytes as compact JSON; at most {LIMIT} are kept"
    with pytest.raises(C2DError) as huge:
        consumer.start(workflow("true"), free=True, metadata={"blob": "y" * 100_000})
    assert huge.value.code == "INVALID_ARGUMENT" and "larger than 1024 bytes" in huge.value.message
    assert consumer.status(all=True) == []


def test_a_failing_algorithm_reports_its_exit_code_and_no_out_of_memory(consumer: Client) -> None:
    jobs = consumer.wait(consumer.start(workflow("exit 3", "true"), free=True).workflow_id, timeout=60)
    failed, skipped = sorted(jobs, key=lambda job: job.stage_index)
    assert failed.status == S.JOB_STATUS_ALGORITHM_FAILED
    assert failed.HasField("termination")
    assert (failed.termination.exit_code, failed.termination.oom_killed) == (3, False)
    assert failed.exit_code == 3
    assert skipped.status == S.JOB_STATUS_SKIPPED
    assert not skipped.HasField("termination") and not skipped.HasField("algorithm_finished")


def test_the_algorithms_times_are_ordered_and_within_the_stages(consumer: Client) -> None:
    (job,) = consumer.wait(consumer.start(workflow("sleep 1"), free=True).workflow_id, timeout=60)
    assert job.status == S.JOB_STATUS_FINISHED
    assert (job.termination.exit_code, job.termination.oom_killed) == (0, False)
    assert job.HasField("started") and job.HasField("algorithm_finished")
    created, started = seconds(job.created), seconds(job.started)
    stopped, finished = seconds(job.algorithm_finished), seconds(job.finished)
    assert created <= started < stopped <= finished
