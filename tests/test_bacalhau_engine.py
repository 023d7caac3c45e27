"""The bacalhau engine: the plugin as a real process against the orchestrator double (tests/bacalhau_double).

The double speaks Bacalhau v1.9's REST API to the official client and runs the
jobs it receives as Docker containers, so every job here really runs: the
conformance suite, what a job's Bacalhau job carries (grant, time limit, no
network, labels, no pod key), a StartJob sent twice running once, recovery
after the plugin is SIGKILLed mid-job, orphans found by label and destroyed,
an orchestrator that does not answer, goes away, or refuses the credentials.
The pieces that need no orchestrator are tests/test_bacalhau_units.py.

Most tests share one double and one plugin process (module scope).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.conformance.harness import (
    EngineFactory,
    EngineProcess,
    EventLoopThread,
    Target,
    config_struct,
    describe,
)
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine
from c2d_bacalhau_engine import names
from nodeproc import NodeProcess, free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
Status = common_pb2.JobStatus
Health = common_pb2.EngineHealth
GIB = 1 << 30
ENVIRONMENT = "double"
ENVIRONMENTS = [
    {
        "id": ENVIRONMENT,
        "node_labels": {"c2d-node": "double"},
        "cpu": 2,
        "ram_gib": 2,
        "disk_gib": 2,
        "min_cpu": 0.5,
        "min_ram_gib": 0.25,
        "min_disk_gib": 0.1,
        "max_job_duration_seconds": 120,
        "allow_network": True,
    }
]

pytestmark = pytest.mark.timeout(240)


def engine_config(url: str, work_root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "url": url,
        "work_root": str(work_root),
        "poll_seconds": 0.2,
        "environments": ENVIRONMENTS,
        **extra,
    }


def bacalhau_target(config: dict[str, Any]) -> Target:
    return Target(spec=find_engine("bacalhau").spec, config=config, config_source="tests")


def job_spec(
    command: str, image: str, *, cpu: float = 0.5, ram_gib: float = 0.25, **fields: Any
) -> engine_pb2.JobSpec:
    name, _, tag = image.rpartition(":")
    return engine_pb2.JobSpec(
        job_id=f"bacalhau-{uuid.uuid4()}",
        workflow_id=f"wf-{uuid.uuid4()}",
        environment_id=ENVIRONMENT,
        container=engine_pb2.Container(image=name, tag=tag, command=command),
        resources=[
            common_pb2.GrantedResource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, amount=cpu),
            common_pb2.GrantedResource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, amount=ram_gib),
            common_pb2.GrantedResource(id="disk", type=common_pb2.RESOURCE_TYPE_DISK, amount=0.5),
        ],
        **fields,
    )


def handle_state(handle: engine_pb2.JobHandle) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(handle.state)
    return state


def started_container(double: Any, bacalhau_id: str, since: int) -> Any:
    """The container of the Bacalhau job, once Docker has started it (its start event, not a poll)."""
    label = f"bacalhau-jobID={double.instance_id}{bacalhau_id}"
    events = double.docker.events(
        since=since, decode=True, filters={"type": "container", "event": "start", "label": label}
    )
    try:
        started = next(iter(events))
    finally:
        events.close()
    return double.docker.containers.get(started["id"])


def statuses(events: list[engine_pb2.JobEvent]) -> list[str]:
    return [Status.Name(e.status).removeprefix("JOB_STATUS_") for e in events]


def ours(double: Any, job_id: str) -> list[Any]:
    """The double's Bacalhau jobs of one c2d job (by the labels the engine puts on them)."""
    wanted = names.label_value(job_id)
    return [
        j for j in double.orchestrator.list_jobs("", []) if j.spec.label_map.get(names.LABEL_JOB) == wanted
    ]


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bacalhau-allowed")


@pytest.fixture(scope="module")
def double(docker_client: Any, busybox_image: str, allowed: Path) -> Iterator[Any]:
    from bacalhau_double import BacalhauDouble

    server = BacalhauDouble(
        docker_client, allowed_paths=[f"{allowed}/**:rw"], node_labels={"c2d-node": "double"}
    )
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def engines(
    loop: EventLoopThread, double: Any, allowed: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineFactory]:
    target = bacalhau_target(engine_config(double.url, allowed / "work"))
    factory = EngineFactory(target, loop, tmp_path_factory.mktemp("bacalhau"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def engine(engines: EngineFactory) -> EngineProcess:
    return engines.start()


# The conformance suite -------------------------------------------------------------------------


def test_bacalhau_passes_the_conformance_suite(double: Any, allowed: Path, tmp_path: Path) -> None:
    config = tmp_path / "bacalhau.toml"
    config.write_text(f'url = "{double.url}"\nwork_root = "{allowed / "conformance"}"\npoll_seconds = 0.2\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "C2D_CONFORMANCE_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "c2d.conformance",
            "bacalhau",
            "--config",
            str(config),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0 and " passed" in result.stdout, f"{result.stdout}\n{result.stderr}"


# What a job's Bacalhau job carries ---------------------------------------------------------------


def test_the_grant_the_limit_and_no_network_reach_the_container(
    engine: EngineProcess, double: Any, busybox_image: str
) -> None:
    spec = job_spec("sleep 60", busybox_image, cpu=0.5, ram_gib=0.25, max_duration_seconds=90)
    since = int(time.time()) - 1
    handle = engine.start_job(spec)
    running = engine.watch_until_running(spec.job_id)
    assert statuses(running.events)[-1] == "RUNNING", describe(running.events)
    (job,) = ours(double, spec.job_id)
    assert handle_state(handle)["bacalhau_jobs"] == f"algorithm={job.id}"
    task = job.spec.to_json()["Tasks"][0]
    assert task["Timeouts"]["ExecutionTimeout"] == 90
    assert task["Network"]["Type"] == "None"
    labels = job.spec.label_map
    assert (
        labels[names.LABEL_NODE] == names.label_value(engine.host_id)
        and labels[names.LABEL_STEP] == "algorithm"
    )
    container = started_container(double, job.id, since)
    host_config = container.attrs["HostConfig"]
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["Memory"] == GIB // 4
    assert host_config["NetworkMode"] == "none"
    engine.stop_job(spec.job_id, grace_seconds=1)
    ended = engine.watch(spec.job_id).events
    assert statuses(ended)[-1] == "STOPPED", describe(ended)
    assert double.job(job.id).state.value == "Stopped"


def test_a_start_job_sent_twice_runs_once(engine: EngineProcess, double: Any, busybox_image: str) -> None:
    spec = job_spec("echo once; echo done > /data/outputs/done.txt", busybox_image)
    first = engine.start_job(spec)
    again = engine.start_job(spec)
    assert first == again
    events = engine.watch(spec.job_id).events
    assert statuses(events)[-1] == "FINISHED", describe(events)
    (job,) = ours(double, spec.job_id)
    assert len(double.executions(job.id)) == 1
    logs = b"".join(
        r.data for r in engine.stub.StreamJobLogs(engine_pb2.StreamJobLogsRequest(job_id=spec.job_id))
    )
    assert logs == b"once\n"


def test_a_submission_sent_again_reaches_the_same_bacalhau_job(double: Any, allowed: Path) -> None:
    """v1.9 ignores the IdempotencyToken: the job's name (unique per submission) makes a PUT idempotent."""
    from c2d_bacalhau_engine.api import Connection, Orchestrator
    from c2d_bacalhau_engine.tasks import idempotency_token, job_body

    folder = allowed / "resubmitted"
    for name in ("", "inputs", "transformations", "outputs", "logs"):
        (folder / name).mkdir(exist_ok=True)
    job_id = f"resubmitted-{uuid.uuid4()}"
    record: dict[str, Any] = {
        "job_id": job_id,
        "workflow_id": "wf",
        "host_id": "0xNode",
        "created": "2026-12-04T22:00:00Z",
        "image": {"reference": "c2d-test-busybox:1"},
        "command": "sleep 1",
        "env": {},
        "grant": {"cpu": 0.5, "ram_gib": 0.25, "disk_gib": 0.5, "gpus": []},
        "time_limit_seconds": 60,
        "network": False,
        "limits": {"local_folder": str(folder), "node_folder": str(folder), "node_labels": {}},
    }
    orchestrator = Orchestrator(Connection(double.url, None, 10.0))
    body, token = job_body(record, names.ALGORITHM), idempotency_token(record, names.ALGORITHM)
    first = orchestrator.put_job(body, token)
    assert orchestrator.put_job(body, token) == first
    assert [j.id for j in ours(double, job_id)] == [first]
    double.wait_for_job(first, timeout=60)
    assert len(double.executions(first)) == 1


def test_the_exit_code_and_a_missing_image(engine: EngineProcess, busybox_image: str) -> None:
    spec = job_spec("echo failing >&2; exit 7", busybox_image)
    engine.start_job(spec)
    events = engine.watch(spec.job_id).events
    assert statuses(events)[-1] == "ALGORITHM_FAILED" and events[-1].exit_code == 7, describe(events)
    missing = job_spec("true", "c2d-no-such-image:1")
    engine.start_job(missing)
    events = engine.watch(missing.job_id).events
    assert statuses(events)[-1] == "PULL_IMAGE_FAILED", describe(events)


def test_a_memory_hog_is_out_of_memory(engine: EngineProcess, busybox_image: str) -> None:
    spec = job_spec("tail /dev/zero", busybox_image, ram_gib=0.25)
    engine.start_job(spec)
    events = engine.watch(spec.job_id).events
    last = events[-1]
    assert statuses(events)[-1] == "OUT_OF_MEMORY" and last.oom_killed, describe(events)
    assert "0.25 GiB of memory" in last.message


# A workflow through a node: the pods as Bacalhau jobs -------------------------------------------


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


def node_env(tmp_path: Path, double: Any, allowed: Path, pod_image: str) -> dict[str, str]:
    """A node of the bacalhau engine alone, against the double, with the numbers dataset's folder."""
    data_root = tmp_path / "datasets"
    data_root.mkdir(exist_ok=True)
    (data_root / "numbers.csv").write_text("n\n" + "\n".join(str(i) for i in range(1, 101)) + "\n")
    return {
        "C2D_LOAD_PLUGINS": "bacalhau",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__BACALHAU__URL": double.url,
        "C2D_ENGINES__BACALHAU__WORK_ROOT": str(allowed / "node"),
        "C2D_ENGINES__BACALHAU__POD_IMAGE": pod_image,
        "C2D_ENGINES__BACALHAU__POLL_SECONDS": "0.2",
    }


def start_node(data_dir: Path, env: dict[str, str]) -> NodeProcess:
    """A node on ``env`` once its environment is offered, the numbers dataset registered."""
    process = NodeProcess(data_dir, env=env)
    try:
        process.wait_environment("bacalhau", timeout=60)
        with Client(process.address, process.node_key()) as operator:
            operator.register_asset(NUMBERS, replace=True)
    except BaseException:
        process.kill()
        raise
    return process


NUMBERS = {
    "did": "did:op:numbers",
    "services": [
        {
            "serviceId": "compute",
            "kind": "KIND_DATASET",
            "files": {"files": [{"type": "local", "path": "numbers.csv", "name": "numbers.csv"}]},
            "policy": {"allowRawCode": True},
        }
    ],
}


@pytest.fixture
def node(tmp_path: Path, double: Any, allowed: Path, pod_image: str) -> Iterator[NodeProcess]:
    process = start_node(tmp_path / "node", node_env(tmp_path, double, allowed, pod_image))
    try:
        yield process
    finally:
        process.kill()


def test_a_workflow_runs_its_pods_as_bacalhau_jobs_and_keeps_the_key_out_of_them(
    node: NodeProcess, double: Any, busybox_image: str, tmp_path: Path
) -> None:
    total = "awk 'NR>1 {s+=$1} END {print s}' /data/inputs/0/numbers.csv > /data/outputs/sum.txt; echo summed"
    twice = "cat /data/inputs/*/sum.txt | awk '{print $1 * 2}' > /data/outputs/double.txt; ls -a /data"
    workflow = {
        "environment": "bacalhau",
        "stages": [stage(0, total, busybox_image, dataset=True), stage(1, twice, busybox_image, after=[0])],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        jobs = {j.stage_index: j for j in consumer.wait(started.workflow_id, timeout=180)}
        histories = {i: [(e.status, e.message) for e in j.history] for i, j in jobs.items()}
        assert [jobs[i].status for i in range(2)] == [Status.JOB_STATUS_FINISHED] * 2, histories
        for index, expected in ((0, "5050"), (1, "10100")):
            found = {
                p.name: p.read_text() for p in consumer.results(jobs[index].job_id, tmp_path / str(index))
            }
            assert [text.strip() for name, text in found.items() if name.endswith(".txt")] == [expected], (
                found
            )
            assert {"algorithm.log", "configuration.log", "publishing.log"} <= set(found), found
        logs = {p.name: p.read_text() for p in consumer.results(jobs[1].job_id, tmp_path / "again")}
        assert ".pod" not in logs["algorithm.log"], (
            "the algorithm must not see the folder holding the pod key"
        )
    steps = [ours(double, jobs[i].job_id) for i in range(2)]
    assert [sorted(j.spec.label_map[names.LABEL_STEP] for j in s) for s in steps] == [sorted(names.STEPS)] * 2
    for bacalhau_job in (j for s in steps for j in s):
        assert double.job(bacalhau_job.id).state.value == "Completed"
        spec = json.dumps(bacalhau_job.spec.to_json())
        variables = bacalhau_job.spec.to_json()["Tasks"][0]["Engine"]["Params"].get(
            "EnvironmentVariables", []
        )
        assert not [v for v in variables if v.startswith("privateKey=")], variables
        assert not re.search(r"\b(0x)?[0-9a-fA-F]{64}\b", spec), (
            f"a private key in a Bacalhau job's spec: {spec}"
        )


def test_a_three_stage_workflow_finishes_across_a_sigkill_of_the_node(
    double: Any, allowed: Path, busybox_image: str, pod_image: str, tmp_path: Path
) -> None:
    """The node is SIGKILLed while the middle stage's algorithm runs on Bacalhau (it waits for a
    file the test writes only after the restart); the restarted node re-attaches and the
    workflow finishes, each step of each stage one Bacalhau job, none submitted twice."""
    total = "awk 'NR>1 {s+=$1} END {print s}' /data/inputs/0/numbers.csv > /data/outputs/sum.txt"
    held = (
        "while [ ! -e /data/outputs/go ]; do sleep 0.1; done; rm /data/outputs/go; "
        "cat /data/inputs/*/sum.txt | awk '{print $1 * 2}' > /data/outputs/double.txt"
    )
    plus = "cat /data/inputs/*/double.txt | awk '{print $1 + 1}' > /data/outputs/plus.txt"
    workflow = {
        "environment": "bacalhau",
        "stages": [
            stage(0, total, busybox_image, dataset=True),
            stage(1, held, busybox_image, after=[0]),
            stage(2, plus, busybox_image, after=[1]),
        ],
    }
    key = auth.new_private_key()
    env = node_env(tmp_path, double, allowed, pod_image)  # the same PodService port after the restart
    node = start_node(tmp_path / "node", env)
    with Client(node.address, key) as consumer:
        started = consumer.start(workflow, free=True)
        middle = started.job_ids[1]
        wait_for(
            lambda: consumer.status(job_id=middle)[0].status == Status.JOB_STATUS_RUNNING,
            180,
            "the middle stage running",
        )
    node.kill()
    restarted = NodeProcess(tmp_path / "node", env=env)
    try:
        restarted.wait_environment("bacalhau", timeout=60)
        outputs = wait_for(lambda: _outputs_folder(allowed, middle), 30, "the middle stage's folder")
        (outputs / "go").write_text("")
        with Client(restarted.address, key) as consumer:
            jobs = {j.stage_index: j for j in consumer.wait(started.workflow_id, timeout=240)}
            histories = {i: [(e.status, e.message) for e in j.history] for i, j in jobs.items()}
            assert [jobs[i].status for i in range(3)] == [Status.JOB_STATUS_FINISHED] * 3, histories
            found = {p.name: p.read_text() for p in consumer.results(jobs[2].job_id, tmp_path / "last")}
            assert found["plus.txt"].strip() == "10101", found  # (5050 * 2) + 1
            assert {"algorithm.log", "configuration.log", "publishing.log"} <= set(found), found
    finally:
        restarted.kill()
    for job_id in started.job_ids:
        steps = sorted(j.spec.label_map[names.LABEL_STEP] for j in ours(double, job_id))
        assert steps == sorted(names.STEPS), f"{job_id}: {steps}"


def test_a_stage_past_its_time_limit_through_a_node_ends_timed_out(
    node: NodeProcess, double: Any, busybox_image: str
) -> None:
    workflow = {
        "environment": "bacalhau",
        "stages": [{**stage(0, "sleep 600", busybox_image), "maxJobDuration": 2}],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        (job,) = consumer.wait(started.workflow_id, timeout=180)
        assert job.status == Status.JOB_STATUS_TIMED_OUT, [(e.status, e.message) for e in job.history]
    (algorithm,) = [j for j in ours(double, job.job_id) if j.spec.label_map[names.LABEL_STEP] == "algorithm"]
    assert algorithm.spec.to_json()["Tasks"][0]["Timeouts"]["ExecutionTimeout"] <= 2 + 60


def _outputs_folder(allowed: Path, job_id: str) -> Path | None:
    """The outputs folder of ``job_id``'s stage on the shared work root, once the engine made it."""
    return next((p for p in (allowed / "node").rglob("outputs") if job_id in str(p.parent)), None)


# Recovery and orphans ---------------------------------------------------------------------------


def test_plugin_sigkilled_mid_job_reattaches_to_its_bacalhau_job(
    engines: EngineFactory, double: Any, busybox_image: str
) -> None:
    first = engines.start()
    spec = job_spec("sleep 3; echo done", busybox_image)
    handle = first.start_job(spec)
    before = first.watch_until_running(spec.job_id)
    first.kill()
    (bacalhau_job,) = ours(double, spec.job_id)
    double.wait_for_job(bacalhau_job.id, timeout=60)  # it ends while no plugin runs
    second = engines.start(state_dir=first.state_dir, host_id=first.host_id)
    try:
        recovered = second.recover_job(handle)
        assert handle_state(recovered.handle)["bacalhau_jobs"] == handle_state(handle)["bacalhau_jobs"]
        after = second.watch(spec.job_id, after=before.last_sequence).events
        events = before.events + after
        history = statuses(events)
        assert history[-1] == "FINISHED" and len(history) == len(set(history)), describe(events)
        assert len(double.executions(bacalhau_job.id)) == 1
        assert second.recover_job(handle).last_event.status == Status.JOB_STATUS_FINISHED
    finally:
        engines.close([second, first])


def test_orphans_are_found_by_label_and_destroyed(
    engines: EngineFactory, double: Any, busybox_image: str
) -> None:
    first = engines.start()
    spec = job_spec("sleep 60", busybox_image)
    first.start_job(spec)
    first.watch_until_running(spec.job_id)
    second = engines.start(host_id=first.host_id)  # the same node, another state dir: the job is an orphan
    try:
        orphans = {j.job_id: j for j in second.list_jobs()}
        assert spec.job_id in orphans, orphans
        assert orphans[spec.job_id].terminal and orphans[spec.job_id].status == Status.JOB_STATUS_LOST
        assert orphans[spec.job_id].workflow_id == spec.workflow_id
        other = engines.start()  # another node sees no orphan of ours
        assert spec.job_id not in {j.job_id for j in other.list_jobs()}
        engines.close([other])
        second.destroy_job(spec.job_id)
        (job,) = ours(double, spec.job_id)
        double.wait_for_job(job.id, ("Stopped",), timeout=30)
        assert spec.job_id not in {j.job_id for j in second.list_jobs()}
    finally:
        engines.close([second, first])


# Health ------------------------------------------------------------------------------------------


def test_no_orchestrator_is_undetected_and_start_job_unavailable(
    engines: EngineFactory, allowed: Path, busybox_image: str
) -> None:
    port = free_port()
    process = engines.start(configure=False)
    try:
        process.configure({"url": f"http://127.0.0.1:{port}", "work_root": str(allowed / "work")})
        fingerprint = process.fingerprint()
        assert fingerprint.health == Health.ENGINE_HEALTH_UNDETECTED
        assert (
            f"no Bacalhau orchestrator answers at http://127.0.0.1:{port}" in fingerprint.health_description
        )
        with pytest.raises(grpc.RpcError) as refused:
            process.stub.StartJob(
                engine_pb2.StartJobRequest(spec=job_spec("true", busybox_image)), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
    finally:
        engines.close([process])


def test_no_url_and_no_orchestrator_at_the_default_is_undetected(engines: EngineFactory) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 1234)) == 0:
            pytest.skip("something listens on 127.0.0.1:1234, the default orchestrator address")
    process = engines.start(configure=False)
    try:
        request = engine_pb2.ConfigureRequest(
            api_version=process.api_version,
            config=config_struct({}),
            host_id="h",
            state_dir=process.state_dir,
        )
        with pytest.raises(grpc.RpcError) as failed:
            process.stub.Configure(request, timeout=20)
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = failed.value.details() or ""
        assert (
            "none answers at http://127.0.0.1:1234" in details and "set url in [engines.bacalhau]" in details
        )
    finally:
        engines.close([process])


def test_an_orchestrator_that_goes_away_is_unhealthy_until_it_is_back(
    engines: EngineFactory, docker_client: Any, allowed: Path
) -> None:
    from bacalhau_double import BacalhauDouble

    with BacalhauDouble(docker_client, allowed_paths=[f"{allowed}/**:rw"]) as flaky:
        process = engines.start(configure=False)
        try:
            config = {"url": flaky.url, "work_root": str(allowed / "work"), "api_timeout_seconds": 1}
            process.configure(config)
            assert process.fingerprint().health == Health.ENGINE_HEALTH_HEALTHY
            for mode, words in (("refuse", "connection refused"), ("hang", "timed out")):
                flaky.suspend(mode)
                unhealthy = next_fingerprint(process, Health.ENGINE_HEALTH_UNHEALTHY).health_description
                assert f"the Bacalhau orchestrator at {flaky.url} stopped answering: {words}" in unhealthy
                flaky.resume()
                healthy = next_fingerprint(process, Health.ENGINE_HEALTH_HEALTHY)
                assert healthy.health == Health.ENGINE_HEALTH_HEALTHY
        finally:
            engines.close([process])


def test_a_job_outlasts_an_orchestrator_outage(
    engines: EngineFactory, docker_client: Any, allowed: Path, busybox_image: str
) -> None:
    from bacalhau_double import BacalhauDouble

    with BacalhauDouble(
        docker_client, allowed_paths=[f"{allowed}/**:rw"], node_labels={"c2d-node": "double"}
    ) as flaky:
        process = engines.start(configure=False)
        try:
            process.configure(engine_config(flaky.url, allowed / "outage"))
            spec = job_spec("sleep 3; echo done", busybox_image)
            process.start_job(spec)
            before = process.watch_until_running(spec.job_id)
            flaky.suspend()
            next_fingerprint(process, Health.ENGINE_HEALTH_UNHEALTHY)  # the engine saw it go
            (bacalhau_job,) = ours(flaky, spec.job_id)
            flaky.wait_for_job(bacalhau_job.id, timeout=60)  # it ends while nobody can ask
            flaky.resume()
            events = before.events + process.watch(spec.job_id, after=before.last_sequence).events
            history = statuses(events)
            assert history[-1] == "FINISHED" and history.count("RUNNING") == 1, describe(events)
        finally:
            engines.close([process])


def test_refused_credentials_are_unhealthy(engines: EngineFactory, docker_client: Any, allowed: Path) -> None:
    from bacalhau_double import BacalhauDouble

    with BacalhauDouble(
        docker_client, allowed_paths=[f"{allowed}/**:rw"], token="the-right-token"
    ) as guarded:
        process = engines.start(configure=False)
        try:
            for token in (None, "a-wrong-token"):
                config = {"url": guarded.url, "work_root": str(allowed / "work")}
                process.configure({**config, "token": token} if token else config)
                fingerprint = process.fingerprint()
                assert fingerprint.health == Health.ENGINE_HEALTH_UNHEALTHY, fingerprint.health_description
                assert "refused the credentials" in fingerprint.health_description
                assert "401" in fingerprint.health_description
            process.configure(
                {"url": guarded.url, "work_root": str(allowed / "work"), "token": "the-right-token"}
            )
            assert process.fingerprint().health == Health.ENGINE_HEALTH_HEALTHY
        finally:
            engines.close([process])


def next_fingerprint(process: EngineProcess, health: int) -> engine_pb2.Fingerprint:
    """The first fingerprint WatchFingerprint sends with ``health``."""
    stream = process.stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest(), timeout=30)
    try:
        return next(r.fingerprint for r in stream if r.fingerprint.health == health)
    finally:
        stream.cancel()


def test_the_fingerprint_sizes_the_pool_from_its_nodes(engine: EngineProcess) -> None:
    fingerprint = engine.fingerprint()
    assert fingerprint.health == Health.ENGINE_HEALTH_HEALTHY, fingerprint.health_description
    assert not fingerprint.capabilities.log_streaming
    (env,) = fingerprint.environments
    resources = {r.id: r for r in env.resources}
    assert env.id == ENVIRONMENT and resources["cpu"].total == 2 and resources["ram"].total == 2
    assert env.extra["node_labels"] == "c2d-node=double"


def test_one_environment_per_pool_of_node_labels(
    engines: EngineFactory, docker_client: Any, allowed: Path
) -> None:
    from bacalhau_double import BacalhauDouble

    pools = [
        {"id": "here", "node_labels": {"c2d-node": "double"}},
        {"id": "elsewhere", "node_labels": {"c2d-node": "no-such-node"}, "cpu": 8},
    ]
    with BacalhauDouble(
        docker_client, allowed_paths=[f"{allowed}/**:rw"], node_labels={"c2d-node": "double"}
    ) as idle:
        process = engines.start(configure=False)
        try:
            process.configure({"url": idle.url, "work_root": str(allowed / "pools"), "environments": pools})
            fingerprint = process.fingerprint()
            environments = {e.id: {r.id: r.total for r in e.resources} for e in fingerprint.environments}
            assert environments["here"] == {
                "cpu": 4,
                "ram": 8,
                "disk": 20,
            }  # the idle node's available capacity
            assert environments["elsewhere"]["cpu"] == 0, "a pool no connected node is in offers nothing"
        finally:
            engines.close([process])
