"""Workflows on the Docker engine, through the whole node: real containers, pods in the pod image.

The node's PodService listens on the Docker bridge gateway (``pods.listen =
auto``), which is how pod containers reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import NodeProcess, free_port, wait_for

pytestmark = pytest.mark.docker

S = common_pb2.JobStatus
ENV = "docker-local"


def node_env(data_root: Path, pod_image: str) -> dict[str, str]:
    return {
        "C2D_LOAD_PLUGINS": "docker",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__DOCKER__POD_IMAGE": pod_image,
    }


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "datasets"
    root.mkdir()
    (root / "numbers.csv").write_text("n\n" + "\n".join(str(i) for i in range(1, 101)) + "\n")
    return root


@pytest.fixture
def node(tmp_path: Path, data_root: Path, pod_image: str, busybox_image: str) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path / "node", env=node_env(data_root, pod_image))
    try:
        node.wait_environment(ENV, timeout=60)
        with Client(node.address, node.node_key()) as operator:
            operator.register_asset(
                {
                    "did": "did:op:numbers",
                    "services": [
                        {
                            "serviceId": "compute",
                            "kind": "KIND_DATASET",
                            "files": {
                                "files": [{"type": "local", "path": "numbers.csv", "name": "numbers.csv"}]
                            },
                            "policy": {"allowRawCode": True},
                        }
                    ],
                }
            )
        yield node
    finally:
        node.kill()


def stage(
    index: int, script: str, image: str, *, after: list[int] | None = None, dataset: bool = False
) -> dict:
    name, _, tag = image.partition(":")
    return {
        "index": index,
        "runAfter": after,
        "input": [{"index": 0, "did": "did:op:numbers", "serviceId": "compute"}] if dataset else [],
        "algorithm": {"rawcode": script, "container": {"entrypoint": "sh $ALGO", "image": name, "tag": tag}},
    }


def first_time(job: object, status: int) -> float:
    return next(e.time.ToNanoseconds() for e in job.history if e.status == status) / 1e9  # type: ignore[attr-defined]


def test_three_stage_workflow_on_docker(node: NodeProcess, busybox_image: str, tmp_path: Path) -> None:
    total = "awk 'NR>1 {s+=$1} END {print s}' /data/inputs/0/numbers.csv > /data/outputs/sum.txt; sleep 1"
    count = "wc -l < /data/inputs/0/numbers.csv > /data/outputs/count.txt"
    double = "cat /data/inputs/*/sum.txt | awk '{print $1 * 2}' > /data/outputs/double.txt"
    workflow = {
        "environment": ENV,
        "stages": [
            stage(0, total, busybox_image, dataset=True),
            stage(1, count, busybox_image, dataset=True),
            stage(2, double, busybox_image, after=[0]),
        ],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        jobs = {j.stage_index: j for j in consumer.wait(started.workflow_id, timeout=180)}
        histories = {i: [(e.status, e.message) for e in j.history] for i, j in jobs.items()}
        assert [jobs[i].status for i in range(3)] == [S.JOB_STATUS_FINISHED] * 3, histories
        for index, expected in ((0, "5050"), (1, "101"), (2, "10100")):
            paths = consumer.results(jobs[index].job_id, tmp_path / str(index))
            assert [p.read_text().strip() for p in paths if p.suffix == ".txt"] == [expected], histories[
                index
            ]
    assert first_time(jobs[2], S.JOB_STATUS_RUNNING) > first_time(jobs[0], S.JOB_STATUS_FINISHED)


def test_node_sigkilled_while_a_container_runs_finishes_the_workflow(
    tmp_path: Path, data_root: Path, pod_image: str, busybox_image: str
) -> None:
    env = node_env(data_root, pod_image)  # the same PodService port after the restart: pods keep calling it
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        node.wait_environment(ENV, timeout=60)
        key = auth.new_private_key()
        workflow = {
            "environment": ENV,
            "stages": [stage(0, "sleep 4; echo done > /data/outputs/done.txt", busybox_image)],
        }
        with Client(node.address, key) as consumer:
            started = consumer.start(workflow, free=True)
            job_id = started.stages[0].job_id
            wait_for(lambda: consumer.status(job_id=job_id)[0].status == S.JOB_STATUS_RUNNING, 90, "running")
        node.kill()
        node = NodeProcess(tmp_path / "node", env=env, port=node.port)
        node.wait_environment(ENV, timeout=60)
        with Client(node.address, key) as consumer:
            (job,) = consumer.wait(started.workflow_id, timeout=120)
            assert job.status == S.JOB_STATUS_FINISHED, [(e.status, e.message) for e in job.history]
            paths = consumer.results(job_id, tmp_path / "out")
            assert [p.read_text().strip() for p in paths if p.name == "done.txt"] == ["done"]
    finally:
        node.kill()


def test_readme_hello_example_runs_on_docker(
    node: NodeProcess, busybox_image: str, docker_client: object
) -> None:
    """README: the quick-start workflow on docker-local, with busybox:1.36 tagged locally (no registry)."""
    import json

    docker_client.images.get(busybox_image).tag("busybox", "1.36")  # type: ignore[attr-defined]
    workflow = json.loads((Path(__file__).parent.parent / "examples" / "hello.json").read_text())
    workflow["environment"] = ENV
    with Client(node.address, auth.new_private_key()) as consumer:
        jobs = consumer.wait(consumer.start(workflow, free=True).workflow_id, timeout=120)
        assert [j.status for j in jobs] == [S.JOB_STATUS_FINISHED] * 2, [
            [e.message for e in j.history] for j in jobs
        ]


def test_a_stopped_stage_keeps_its_log(node: NodeProcess, busybox_image: str, tmp_path: Path) -> None:
    """Pod-publishing is skipped after a stop; the node keeps the engine's copy of the algorithm's log."""
    workflow = {"environment": ENV, "stages": [stage(0, "echo started; sleep 300", busybox_image)]}
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        job_id = started.stages[0].job_id
        wait_for(lambda: consumer.status(job_id=job_id)[0].status == S.JOB_STATUS_RUNNING, 90, "running")
        wait_for(lambda: b"started" in b"".join(consumer.logs(job_id)), 30, "the first line logged")
        consumer.stop(job_id=job_id)
        (job,) = consumer.wait(started.workflow_id, timeout=60)
        assert job.status == S.JOB_STATUS_STOPPED
        log_file = wait_for(
            lambda: next(
                (r for r in consumer.status(job_id=job_id)[0].results if r.name == "algorithm.log"), None
            ),
            30,
            "the stopped stage's log",
        )
        assert consumer.result(job_id, log_file.index, tmp_path / "algorithm.log").read_text() == "started\n"


def test_an_algorithm_past_its_memory_limit_is_reported_killed_for_memory(
    node: NodeProcess, busybox_image: str
) -> None:
    """Docker's OOMKilled reaches the consumer: the job's termination says so, with the exit code."""
    workflow = {
        "environment": ENV,
        "resources": [{"id": "ram", "amount": 1}],  # the least a stage may ask for
        "stages": [stage(0, "tail /dev/zero", busybox_image)],  # one endless line: memory until killed
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        (job,) = consumer.wait(consumer.start(workflow, free=True).workflow_id, timeout=180)
    history = [(e.status, e.message) for e in job.history]
    assert job.status == S.JOB_STATUS_OUT_OF_MEMORY, history
    assert job.termination.oom_killed and job.termination.exit_code == 137, job.termination
    assert job.HasField("started") and job.HasField("algorithm_finished"), history
    times = [t.ToNanoseconds() for t in (job.created, job.started, job.algorithm_finished, job.finished)]
    assert times == sorted(times), times
