"""Algorithm images built from a Dockerfile by the docker engine: the plugin as a real process
against a real Docker engine, offline.

Every Dockerfile starts FROM the tests' busybox image, which is already on the daemon, so no
build reaches a registry. A build that succeeds runs the algorithm in the image it made and
leaves its ``image.log``; an identical build is not made again (the engine records the reuse);
a failing build ends the job IMAGE_BUILD_FAILED with the builder's error; a build has no network
unless the job may use one; bad build inputs are refused at StartJob. Through the whole node, the
build's log is a result of the stage (kind IMAGE_LOG, published by pod-publishing, after a failed
build too), and the free tier builds only where the operator allows it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_docker_engine import CONFIG, docker_target, job_dir, job_spec, log_of, run, statuses

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread
from c2d.engine.v1 import engine_pb2
from c2d_docker_engine.buildcontext import REPOSITORY, Context
from nodeproc import NodeProcess, free_port, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def busybox(docker_client: Any) -> str:
    from docker_images import busybox_image

    return busybox_image(docker_client)


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def engine(
    loop: EventLoopThread, tmp_path_factory: pytest.TempPathFactory, busybox: str
) -> Iterator[EngineProcess]:
    factory = EngineFactory(docker_target(CONFIG), loop, tmp_path_factory.mktemp("docker-builds"))
    yield factory.start()
    factory.close()


def built_spec(
    engine: EngineProcess,
    command: str,
    dockerfile: str,
    files: dict[str, bytes] | None = None,
    *,
    network: bool = False,
) -> engine_pb2.JobSpec:
    """A job whose image is built from ``dockerfile`` (with a line that makes its content unique to
    this test run, so no earlier run's image is reused) and ``files``."""
    spec = job_spec(engine, command, image="", tag="", network=network)
    spec.container.dockerfile = dockerfile
    spec.container.additional_files.update(files or {})
    return spec


def unique(dockerfile: str) -> str:
    return f"# run {uuid.uuid4().hex}\n{dockerfile}"


def build_step(engine: EngineProcess, job_id: str) -> dict[str, Any]:
    steps = json.loads((job_dir(engine, job_id) / "steps.json").read_text())
    return dict(steps["build"])


def image_log(engine: EngineProcess, job_id: str) -> str:
    return (job_dir(engine, job_id) / "image.log").read_text()


def test_the_engine_says_it_builds_images(engine: EngineProcess) -> None:
    assert engine.fingerprint().capabilities.image_build


def test_an_image_built_from_a_dockerfile_runs_the_algorithm_and_an_identical_build_is_reused(
    engine: EngineProcess, busybox: str, docker_client: Any
) -> None:
    dockerfile = unique(
        f"FROM {busybox}\nCOPY greeting.txt /opt/greeting.txt\nRUN echo built >> /opt/greeting.txt\n"
    )
    files = {"greeting.txt": b"hello from the build context\n"}

    first = built_spec(engine, "cat /opt/greeting.txt", dockerfile, files)
    events = run(engine, first)
    assert statuses(events)[0] == "BUILDING_IMAGE"
    assert statuses(events)[-1] == "FINISHED", events[-1].message
    assert log_of(engine, first.job_id) == b"hello from the build context\nbuilt\n"
    built = build_step(engine, first.job_id)
    assert built["cached"] is False
    assert events[-1].build_seconds == built["seconds"] > 0  # billed with the algorithm
    assert "Successfully built" in image_log(engine, first.job_id)
    tag = Context(dockerfile, files, network=False).content_tag()
    assert docker_client.images.get(f"{REPOSITORY}:{tag}").id == built["image_id"]

    second = built_spec(engine, "cat /opt/greeting.txt", dockerfile, files)
    events = run(engine, second)
    assert "BUILDING_IMAGE" not in statuses(events)
    assert statuses(events)[-1] == "FINISHED", events[-1].message
    reused = build_step(engine, second.job_id)
    assert reused == {"state": "ended", "cached": True, "image_id": built["image_id"], "seconds": 0}
    assert events[-1].build_seconds == 0
    assert "cache hit" in image_log(engine, second.job_id)
    assert log_of(engine, second.job_id) == b"hello from the build context\nbuilt\n"


def test_a_failing_build_ends_the_job_image_build_failed_with_the_error(
    engine: EngineProcess, busybox: str
) -> None:
    spec = built_spec(engine, "true", unique(f"FROM {busybox}\nRUN echo about to fail && exit 3\n"))
    events = run(engine, spec)
    assert statuses(events) == ["BUILDING_IMAGE", "IMAGE_BUILD_FAILED"]
    assert events[-1].terminal
    assert "returned a non-zero code: 3" in events[-1].message
    log = image_log(engine, spec.job_id)
    assert "about to fail" in log and "returned a non-zero code: 3" in log


def test_a_build_has_no_network_unless_the_job_may_use_one(engine: EngineProcess, busybox: str) -> None:
    # Without a network the build's container has only a loopback interface; with one it has eth0.
    dockerfile = unique(f"FROM {busybox}\nRUN ls /sys/class/net && test -e /sys/class/net/eth0\n")
    offline = built_spec(engine, "true", dockerfile)
    events = run(engine, offline)
    assert statuses(events)[-1] == "IMAGE_BUILD_FAILED", events[-1].message
    assert "returned a non-zero code: 1" in events[-1].message

    online = built_spec(engine, "true", dockerfile, network=True)
    events = run(engine, online)
    assert statuses(events)[-1] == "FINISHED", events[-1].message
    assert build_step(engine, online.job_id)["cached"] is False

    # The image built with a network is not handed to a job whose build would have had none.
    events = run(engine, built_spec(engine, "true", dockerfile))
    assert statuses(events)[-1] == "IMAGE_BUILD_FAILED", events[-1].message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"image": "c2d-test-busybox", "tag": "1"}, "both an image and a dockerfile"),
        ({"dockerfile": "FROM x\n" + "#" * 65536}, "larger than 65536 bytes"),
        ({"files": {"../x": b"x"}}, "'../x' is not a plain relative path"),
        ({"files": {"/etc/passwd": b"x"}}, "is not a plain relative path"),
        ({"files": {"Dockerfile": b"x"}}, "named Dockerfile"),
        ({"files": {"big": b"x" * (1024 * 1024 + 1)}}, "more than 1048576 bytes"),
        ({"dockerfile": "", "files": {"a": b"x"}}, "dockerfile is empty"),
    ],
)
def test_bad_build_inputs_are_refused_at_start(
    engine: EngineProcess, busybox: str, change: dict[str, Any], words: str, tmp_path: Path
) -> None:
    spec = built_spec(engine, "true", change.get("dockerfile", f"FROM {busybox}\n"), change.get("files"))
    spec.container.image = change.get("image", "")
    spec.container.tag = change.get("tag", "")
    with pytest.raises(grpc.RpcError) as raised:
        engine.stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in str(raised.value.details())
    assert not job_dir(engine, spec.job_id).exists()


# Through the node ------------------------------------------------------------------------------

NODE_ENV = "docker-local"


def node_config(tmp_path: Path, allow_build: bool) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(f'[environments."{NODE_ENV}".free]\nallow_image_build = {str(allow_build).lower()}\n')
    return config


@pytest.fixture
def node(tmp_path: Path, pod_image: str, busybox: str) -> Iterator[NodeProcess]:
    env = {
        "C2D_LOAD_PLUGINS": "docker",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",
        "C2D_ENGINES__DOCKER__POD_IMAGE": pod_image,
    }
    node = NodeProcess(tmp_path / "node", config=node_config(tmp_path, allow_build=True), env=env)
    try:
        node.wait_environment(NODE_ENV, timeout=60)
        yield node
    finally:
        node.kill()


def built_workflow(dockerfile: str, files: dict[str, str] | None = None) -> dict[str, Any]:
    container = {"entrypoint": "sh $ALGO", "dockerfile": dockerfile, "additionalFiles": files or {}}
    return {
        "environment": NODE_ENV,
        "stages": [{"index": 0, "algorithm": {"rawcode": "cat /opt/note.txt", "container": container}}],
    }


def image_log_result(job: compute_pb2.JobInfo) -> compute_pb2.ResultFile:
    return next(r for r in job.results if r.kind == compute_pb2.RESULT_KIND_IMAGE_LOG)


def test_a_built_stage_publishes_its_image_log_and_a_failed_build_does_too(
    node: NodeProcess, busybox: str, tmp_path: Path
) -> None:
    good = built_workflow(unique(f"FROM {busybox}\nCOPY note.txt /opt/note.txt\n"), {"note.txt": "noted\n"})
    bad = built_workflow(unique(f"FROM {busybox}\nRUN echo broken build && false\n"))
    with Client(node.address, auth.new_private_key()) as consumer:
        (job,) = consumer.wait(consumer.start(good, free=True).workflow_id, timeout=150)
        history = [(e.status, e.message) for e in job.history]
        assert job.status == common_pb2.JOB_STATUS_FINISHED, history
        assert common_pb2.JOB_STATUS_BUILDING_IMAGE in [e.status for e in job.history]
        log = consumer.result(job.job_id, image_log_result(job).index, tmp_path / "good.log").read_text()
        assert "Successfully built" in log
        algorithm_log = next(r for r in job.results if r.kind == compute_pb2.RESULT_KIND_ALGORITHM_LOG)
        assert consumer.result(job.job_id, algorithm_log.index, tmp_path / "a.log").read_text() == "noted\n"

        (failed,) = consumer.wait(consumer.start(bad, free=True).workflow_id, timeout=150)
        assert failed.status == common_pb2.JOB_STATUS_IMAGE_BUILD_FAILED, failed.status_text
        assert "returned a non-zero code: 1" in failed.history[-1].message
        log = consumer.result(failed.job_id, image_log_result(failed).index, tmp_path / "bad.log").read_text()
        assert "broken build" in log


def test_a_stage_naming_a_registered_algorithm_builds_the_operators_dockerfile(
    node: NodeProcess, busybox: str, tmp_path: Path
) -> None:
    """The operator registers an algorithm made of a Dockerfile and its files with ``c2d admin assets
    register`` (the asset's JSON form: the files' bytes in base64); a consumer's stage naming it by
    did builds that image on Docker and runs in it. A bad Dockerfile is refused at registration."""
    operator_key = tmp_path / "operator.key"
    operator_key.write_text(node.node_key() + "\n")
    operator_key.chmod(0o600)
    note = f"registered {uuid.uuid4().hex}\n"
    container = {
        "entrypoint": "cat /opt/note.txt",
        "dockerfile": unique(f"FROM {busybox}\nCOPY note.txt /opt/note.txt\n"),
        "additionalFiles": {"note.txt": base64.b64encode(note.encode()).decode()},
    }
    asset = {
        "did": "did:op:built",
        "services": [{"serviceId": "run", "kind": "algorithm", "container": container}],
    }

    def register(doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "asset.json"
        path.write_text(json.dumps(doc))
        argv = [
            "--node",
            node.address,
            "--key-file",
            str(operator_key),
            "admin",
            "assets",
            "register",
            str(path),
        ]
        return subprocess.run(
            [sys.executable, "-m", "c2d.cli", *argv], capture_output=True, text=True, timeout=60, check=False
        )

    bad = {**container, "additionalFiles": {"../escape": base64.b64encode(b"x").decode()}}
    refused = register({**asset, "services": [{**asset["services"][0], "container": bad}]})
    assert refused.returncode != 0 and "not a plain relative path" in refused.stderr, refused.stderr
    done = register(asset)
    assert done.returncode == 0, done.stderr
    workflow = {
        "environment": NODE_ENV,
        "stages": [{"index": 0, "algorithm": {"did": "did:op:built", "serviceId": "run"}}],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        (job,) = consumer.wait(consumer.start(workflow, free=True).workflow_id, timeout=150)
        history = [(common_pb2.JobStatus.Name(e.status), e.message) for e in job.history]
        assert job.status == common_pb2.JOB_STATUS_FINISHED, history
        assert common_pb2.JOB_STATUS_BUILDING_IMAGE in [e.status for e in job.history]
        algorithm_log = next(r for r in job.results if r.kind == compute_pb2.RESULT_KIND_ALGORITHM_LOG)
        assert consumer.result(job.job_id, algorithm_log.index, tmp_path / "a.log").read_text() == note


def test_the_free_tier_refuses_builds_unless_the_environment_allows_them(
    tmp_path: Path, pod_image: str, busybox: str
) -> None:
    env = {"C2D_LOAD_PLUGINS": "docker", "C2D_ENGINES__DOCKER__POD_IMAGE": pod_image}
    node = NodeProcess(tmp_path / "node", config=node_config(tmp_path, allow_build=False), env=env)
    try:
        node.wait_environment(NODE_ENV, timeout=60)
        with Client(node.address, auth.new_private_key()) as consumer:
            with pytest.raises(C2DError) as caught:
                consumer.start(built_workflow(f"FROM {busybox}\n"), free=True)
            assert "does not build images from a Dockerfile" in caught.value.message
            assert consumer.status(all=True) == []
    finally:
        node.kill()


def test_a_build_past_its_time_limit_is_cancelled_and_fails_the_job(
    loop: EventLoopThread, tmp_path: Path, busybox: str, docker_client: Any
) -> None:
    factory = EngineFactory(docker_target({**CONFIG, "build_timeout_seconds": 2}), loop, tmp_path)
    try:
        engine = factory.start()
        marker = uuid.uuid4().hex
        spec = built_spec(engine, "true", f"FROM {busybox}\nRUN echo {marker} && sleep 100000\n")
        events = run(engine, spec)
        assert statuses(events) == ["BUILDING_IMAGE", "IMAGE_BUILD_FAILED"]
        assert "took longer than 2 s" in events[-1].message
        assert "was cancelled" in image_log(engine, spec.job_id)
    finally:
        factory.close()

    def build_containers_left() -> list[Any]:
        return [
            c
            for c in docker_client.containers.list(all=True)
            if marker in " ".join(c.attrs["Config"]["Cmd"] or [])
        ]

    wait_for(lambda: not build_containers_left(), 60, "the cancelled build's container to be removed")


def test_stopping_a_job_while_its_image_builds_cancels_the_build(
    engine: EngineProcess, busybox: str, docker_client: Any
) -> None:
    marker = uuid.uuid4().hex
    spec = built_spec(engine, "true", f"FROM {busybox}\nRUN echo {marker} && sleep 100000\n")
    engine.start_job(spec)
    log = job_dir(engine, spec.job_id) / "image.log"
    wait_for(lambda: log.exists() and marker in log.read_text(), 60, "the build's RUN to start")
    engine.stop_job(spec.job_id, grace_seconds=1)
    events = engine.watch(spec.job_id, timeout=30).events
    assert statuses(events) == ["BUILDING_IMAGE", "STOPPED"] and events[-1].stopped
    assert "while the image was being built" in events[-1].message

    def build_containers_left() -> list[Any]:
        return [
            c
            for c in docker_client.containers.list(all=True)
            if marker in " ".join(c.attrs["Config"]["Cmd"] or [])
        ]

    wait_for(lambda: not build_containers_left(), 60, "the cancelled build's container to be removed")


# Paid: the build is billed -----------------------------------------------------------------------


def test_a_paid_stage_is_billed_for_its_image_build(
    tmp_path: Path, pod_image: str, busybox: str, anvil: Any
) -> None:
    from paidnode import fund_node, new_consumer, payment, wait_payment

    prices = '[{resource_id = "cpu", price_per_unit_minute = "1000"}]'
    fees = f'[{{chain_id = {anvil.chain_id}, token_address = "{anvil.token_address}", prices = {prices}}}]'
    env = {
        "C2D_LOAD_PLUGINS": "docker",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",
        "C2D_ENGINES__DOCKER__POD_IMAGE": pod_image,
        f"C2D_ENVIRONMENTS__{NODE_ENV.upper()}__FEES": fees,
        "C2D_CHAIN__ESCROW_ADDRESS": anvil.escrow_address,
        "C2D_CHAIN__CHAIN_ID": str(anvil.chain_id),
        "C2D_CHAIN__RPC_URL": anvil.rpc_url,
        "C2D_CHAIN__RETRY_MAX_SECONDS": "1",
        "C2D_CHAIN__DEV": "off",
    }
    node = NodeProcess(tmp_path / "node", config=node_config(tmp_path, allow_build=False), env=env)
    try:
        node.wait_environment(NODE_ENV, timeout=60)
        consumer = new_consumer(anvil, fund_node(anvil, node.node_key()))
        workflow = built_workflow(
            unique(f"FROM {busybox}\nCOPY note.txt /opt/note.txt\n"), {"note.txt": "n\n"}
        )
        workflow["maxJobDuration"] = 180
        with Client(node.address, consumer.key) as client:
            started = client.start(workflow, payment=payment(anvil))
            (job,) = client.wait(started.workflow_id, timeout=150)
            assert job.status == common_pb2.JOB_STATUS_FINISHED, [e.message for e in job.history]
            wait_payment(client, started.workflow_id, {compute_pb2.PAYMENT_STATUS_CLAIMED})
            records = json.loads(client.payment_proof(started.workflow_id).records)
        (stage,) = records["stages"]
        assert stage["build_seconds"] > 0
        ran = stage["algorithm_finished_at"] - stage["algorithm_started_at"]
        assert stage["billed_seconds"] == pytest.approx(stage["build_seconds"] + ran, abs=0.002)
    finally:
        node.kill()


def test_a_build_cut_off_by_a_plugin_sigkill_is_built_again_by_the_next_plugin(
    loop: EventLoopThread, tmp_path: Path, busybox: str, docker_client: Any
) -> None:
    factory = EngineFactory(docker_target(CONFIG), loop, tmp_path)
    try:
        first = factory.start()
        marker = uuid.uuid4().hex
        spec = built_spec(first, "true", f"FROM {busybox}\nRUN echo {marker} && sleep 100000\n")
        handle = first.start_job(spec)
        log = job_dir(first, spec.job_id) / "image.log"
        wait_for(lambda: log.exists() and log.read_text().count(marker) == 1, 60, "the build's RUN to start")
        first.kill()

        def build_containers() -> list[Any]:
            return [
                c
                for c in docker_client.containers.list(all=True)
                if marker in " ".join(c.attrs["Config"]["Cmd"] or [])
            ]

        wait_for(lambda: not build_containers(), 60, "the daemon to cancel the build whose client died")
        second = factory.start(state_dir=first.state_dir, host_id=first.host_id)
        second.jobs.add(spec.job_id)
        assert second.recover_job(handle).last_event.status == common_pb2.JOB_STATUS_BUILDING_IMAGE
        wait_for(lambda: log.read_text().count(marker) == 2, 60, "the next plugin's build to start")
        second.stop_job(spec.job_id, grace_seconds=1)
        events = second.watch(spec.job_id, timeout=30).events
        assert statuses(events) == ["BUILDING_IMAGE", "STOPPED"]  # the build reported once
    finally:
        factory.close()
