"""The kubernetes engine: the plugin as a real process against the API server double (tests/k8s_double).

The double speaks the Kubernetes REST API to the official client and runs the
pods it receives as Docker containers, so every job here really runs: the
conformance suite, a three-stage workflow through a running node (pods in the
pod image calling the node's PodService), the limits as they reach Docker, the
time limit as ``DeadlineExceeded``, OOM kills, a missing image, deletion
cleanup, orphans, recovery after the plugin is SIGKILLed mid-job, the
fingerprint from the node's allocatable resources and a quota, and an API that
does not answer or refuses the credentials. The unit tests at the end need no
Docker: names, manifests, pod status mapping, config, the algorithm's wrapper.

Most tests share one double and one plugin process (module scope).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kubernetes
import pytest
import yaml

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, Target, describe
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine
from c2d.plugin.kit.errors import EngineError
from c2d_k8s_engine import config as engine_config
from c2d_k8s_engine import manifests, names, podstatus
from c2d_k8s_engine.podwatch import JobPods
from nodeproc import NodeProcess, free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
Status = common_pb2.JobStatus
GIB = 1 << 30
ENVIRONMENT = "small"
GPU = "nvidia.com/gpu"
ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "20Gi", "pods": "110", GPU: "2"}
ENVIRONMENTS = [
    {
        "id": ENVIRONMENT,
        "cpu": 2,
        "ram_gib": 2,
        "disk_gib": 2,
        "gpus": 2,
        "min_cpu": 0.5,
        "min_ram_gib": 0.25,
        "min_disk_gib": 0.1,
        "max_job_duration_seconds": 120,
        "allow_network": True,
    }
]

pytestmark = pytest.mark.timeout(180)


def engine_config_for(kubeconfig: Path, **extra: Any) -> dict[str, Any]:
    return {"kubeconfig": str(kubeconfig), "timeout_grace_seconds": 1, "environments": ENVIRONMENTS, **extra}


def k8s_target(config: dict[str, Any]) -> Target:
    return Target(spec=find_engine("kubernetes").spec, config=config, config_source="tests")


def job_spec(
    command: str,
    *,
    cpu: float = 0.5,
    ram_gib: float = 0.25,
    disk_gib: float = 0.1,
    gpus: int = 0,
    max_duration: int = 0,
    network: bool = False,
    image: str = "c2d-test-busybox",
    tag: str = "1",
    job_id: str | None = None,
) -> engine_pb2.JobSpec:
    job_id = job_id or f"k-{uuid.uuid4().hex[:12]}"
    resources = [
        common_pb2.GrantedResource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, amount=cpu),
        common_pb2.GrantedResource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, amount=ram_gib),
        common_pb2.GrantedResource(id="disk", type=common_pb2.RESOURCE_TYPE_DISK, amount=disk_gib),
    ]
    if gpus:
        resources.append(
            common_pb2.GrantedResource(
                id="gpu",
                type=common_pb2.RESOURCE_TYPE_GPU,
                amount=gpus,
                device_ids=[f"{GPU}-{i}" for i in range(gpus)],
            )
        )
    return engine_pb2.JobSpec(
        job_id=job_id,
        workflow_id=f"wf-{uuid.uuid4().hex[:8]}",
        environment_id=ENVIRONMENT,
        container=engine_pb2.Container(image=image, tag=tag, command=command),
        resources=resources,
        max_duration_seconds=max_duration,
        network=common_pb2.NetworkPolicy(allow_network=network),
    )


def run(engine: EngineProcess, spec: engine_pb2.JobSpec, timeout: float = 60) -> list[engine_pb2.JobEvent]:
    engine.start_job(spec)
    return engine.watch(spec.job_id, timeout=timeout).events


def statuses(events: list[engine_pb2.JobEvent]) -> list[str]:
    return [Status.Name(e.status).removeprefix("JOB_STATUS_") for e in events]


def namespace_of(engine: EngineProcess) -> str:
    return names.default_namespace(engine.host_id)


def job_objects(double: Any, namespace: str, job_id: str) -> dict[str, list[str]]:
    """The job's objects left in the double, by kind (empty lists once it is all gone)."""
    label = names.label_value(job_id)
    found = {}
    for kind in ("pods", "configmaps", "secrets", "persistentvolumeclaims", "networkpolicies"):
        found[kind] = [
            obj["metadata"]["name"]
            for obj in double.objects(kind, namespace)
            if (obj["metadata"].get("labels") or {}).get(names.LABEL_JOB) == label
        ]
    return found


def core_api(url: str, token: str | None = None) -> kubernetes.client.CoreV1Api:
    configuration = type.__call__(kubernetes.client.Configuration)
    configuration.host = url
    if token:
        configuration.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


def write_kubeconfig(path: Path, server: str, token: str | None = None) -> Path:
    user = {"token": token} if token else {}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    return path


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def double(docker_client: Any, busybox_image: str) -> Iterator[Any]:
    """One API server double for the module's tests (``k8s_api`` is per test)."""
    from k8s_double import ApiServerDouble

    server = ApiServerDouble(docker_client, node_allocatable=ALLOCATABLE)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def kubeconfig(double: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return double.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", context="c2d-double")


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def engines(
    loop: EventLoopThread, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineFactory]:
    factory = EngineFactory(k8s_target(engine_config_for(kubeconfig)), loop, tmp_path_factory.mktemp("k8s"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def engine(engines: EngineFactory) -> EngineProcess:
    return engines.start()


# The conformance suite and a workflow through the node ----------------------------------------


def test_kubernetes_passes_the_conformance_suite(kubeconfig: Path, tmp_path: Path) -> None:
    config = tmp_path / "kubernetes.toml"
    config.write_text(f'kubeconfig = "{kubeconfig}"\ntimeout_grace_seconds = 1\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "C2D_CONFORMANCE_"))}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "c2d.conformance",
            "kubernetes",
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
        timeout=170,
        check=False,
    )
    assert result.returncode == 0 and " passed" in result.stdout, f"{result.stdout}\n{result.stderr}"


def node_env(kubeconfig: Path, data_root: Path, pod_image: str) -> dict[str, str]:
    return {
        "C2D_LOAD_PLUGINS": "kubernetes",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",
        "C2D_ASSETS__DATA_ROOT": str(data_root),
        "C2D_ENGINES__KUBERNETES__KUBECONFIG": str(kubeconfig),
        "C2D_ENGINES__KUBERNETES__POD_IMAGE": pod_image,
    }


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


@pytest.fixture
def node(tmp_path: Path, kubeconfig: Path, pod_image: str) -> Iterator[NodeProcess]:
    data_root = tmp_path / "datasets"
    data_root.mkdir()
    (data_root / "numbers.csv").write_text("n\n" + "\n".join(str(i) for i in range(1, 101)) + "\n")
    process = NodeProcess(tmp_path / "node", env=node_env(kubeconfig, data_root, pod_image))
    try:
        process.wait_environment("k8s-cluster", timeout=60)
        with Client(process.address, process.node_key()) as operator:
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
        yield process
    finally:
        process.kill()


def test_three_stage_workflow_on_kubernetes(node: NodeProcess, busybox_image: str, tmp_path: Path) -> None:
    total = "awk 'NR>1 {s+=$1} END {print s}' /data/inputs/0/numbers.csv > /data/outputs/sum.txt; echo summed"
    count = "wc -l < /data/inputs/0/numbers.csv > /data/outputs/count.txt"
    double = "cat /data/inputs/*/sum.txt | awk '{print $1 * 2}' > /data/outputs/double.txt"
    workflow = {
        "environment": "k8s-cluster",
        "stages": [
            stage(0, total, busybox_image, dataset=True),
            stage(1, count, busybox_image, dataset=True),
            stage(2, double, busybox_image, after=[0]),
        ],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        jobs = {j.stage_index: j for j in consumer.wait(started.workflow_id, timeout=120)}
        histories = {i: [(e.status, e.message) for e in j.history] for i, j in jobs.items()}
        assert [jobs[i].status for i in range(3)] == [Status.JOB_STATUS_FINISHED] * 3, histories
        for index, expected in ((0, "5050"), (1, "101"), (2, "10100")):
            paths = consumer.results(jobs[index].job_id, tmp_path / str(index))
            found = {p.name: p.read_text() for p in paths}
            assert [text.strip() for name, text in found.items() if name.endswith(".txt")] == [expected], (
                found
            )
            assert {"algorithm.log", "configuration.log", "publishing.log"} <= set(found), found
        logs = {p.name: p.read_text() for p in consumer.results(jobs[0].job_id, tmp_path / "again")}
        assert logs["algorithm.log"] == "summed\n", "the algorithm's output reaches its published log"


def test_node_sigkilled_while_a_pod_runs_finishes_the_workflow(
    tmp_path: Path, kubeconfig: Path, pod_image: str, busybox_image: str
) -> None:
    """The host (not only the plugin) killed mid-stage: the restarted node and engine find the job by
    its labels and follow it to the end; the same PodService port, so the pods keep calling it."""
    (tmp_path / "datasets").mkdir()
    env = node_env(kubeconfig, tmp_path / "datasets", pod_image)
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        node.wait_environment("k8s-cluster", timeout=60)
        key = auth.new_private_key()
        workflow = {
            "environment": "k8s-cluster",
            "stages": [stage(0, "sleep 4; echo done > /data/outputs/done.txt", busybox_image)],
        }
        with Client(node.address, key) as consumer:
            started = consumer.start(workflow, free=True)
            job_id = started.stages[0].job_id
            running = Status.JOB_STATUS_RUNNING
            wait_for(lambda: consumer.status(job_id=job_id)[0].status == running, 60, "running")
        node.kill()
        node = NodeProcess(tmp_path / "node", env=env, port=node.port)
        node.wait_environment("k8s-cluster", timeout=60)
        with Client(node.address, key) as consumer:
            (job,) = consumer.wait(started.workflow_id, timeout=120)
            assert job.status == Status.JOB_STATUS_FINISHED, [(e.status, e.message) for e in job.history]
            paths = consumer.results(job_id, tmp_path / "out")
            assert [p.read_text().strip() for p in paths if p.name == "done.txt"] == ["done"]
    finally:
        node.kill()


def test_a_stopped_stage_keeps_its_log(node: NodeProcess, busybox_image: str, tmp_path: Path) -> None:
    """Pod-publishing is skipped after a stop; the node keeps the engine's copy of the algorithm's log."""
    workflow = {"environment": "k8s-cluster", "stages": [stage(0, "echo started; sleep 300", busybox_image)]}
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        job_id = started.stages[0].job_id
        wait_for(lambda: b"started" in b"".join(consumer.logs(job_id)), 60, "the first line logged")
        consumer.stop(job_id=job_id)
        (job,) = consumer.wait(started.workflow_id, timeout=60)
        assert job.status == Status.JOB_STATUS_STOPPED
        log_file = wait_for(
            lambda: next(
                (r for r in consumer.status(job_id=job_id)[0].results if r.name == "algorithm.log"), None
            ),
            30,
            "the stopped stage's log",
        )
        assert consumer.result(job_id, log_file.index, tmp_path / "algorithm.log").read_text() == "started\n"


def test_plugin_sigkilled_mid_job_recovers_without_duplicate_events(
    node: NodeProcess, busybox_image: str, tmp_path: Path
) -> None:
    workflow = {
        "environment": "k8s-cluster",
        "stages": [stage(0, "sleep 4; echo done > /data/outputs/done.txt", busybox_image)],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        job_id = started.stages[0].job_id
        wait_for(lambda: consumer.status(job_id=job_id)[0].status == Status.JOB_STATUS_RUNNING, 60, "running")
        (plugin,) = node.plugin_pids()
        os.kill(plugin, signal.SIGKILL)
        wait_for(lambda: node.plugin_pids() and node.plugin_pids() != [plugin], 30, "the plugin restarted")
        (job,) = consumer.wait(started.workflow_id, timeout=90)
        history = [e.status for e in job.history]
        assert job.status == Status.JOB_STATUS_FINISHED, [(e.status, e.message) for e in job.history]
        assert len(history) == len(set(history)), f"a status was reported twice: {history}"
        paths = consumer.results(job_id, tmp_path / "out")
        assert [p.read_text().strip() for p in paths if p.name == "done.txt"] == ["done"]


# Jobs, limits, cleanup ------------------------------------------------------------------------


def test_limits_reach_the_containers_and_destroy_leaves_nothing(engine: EngineProcess, double: Any) -> None:
    spec = job_spec("sleep 60", cpu=0.5, ram_gib=0.25, disk_gib=0.5, gpus=1)
    engine.start_job(spec)
    running = engine.watch_until_running(spec.job_id)
    assert statuses(running.events)[-1] == "RUNNING", describe(running.events)
    namespace = namespace_of(engine)
    pod_name = names.pod_name(spec.job_id, names.ALGORITHM)
    pod = double.get("pods", namespace, pod_name)
    assert pod["spec"]["activeDeadlineSeconds"] == 120
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ConfigMap"
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "500m", "memory": str(GIB // 4), GPU: "1"}
    (container,) = double.containers_for(namespace, pod_name)
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == GIB // 4
    assert (
        host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    )
    assert host["NetworkMode"] == "none", "no egress without network: the NetworkPolicy cuts it"
    assert container.attrs["Config"]["User"].startswith("1000")
    claim = double.get("persistentvolumeclaims", namespace, names.claim_name(spec.job_id))
    assert claim["spec"]["resources"]["requests"]["storage"] == str(GIB // 2)
    assert double.get("networkpolicies", namespace, names.policy_name(spec.job_id)) is not None

    engine.stop_job(spec.job_id, grace_seconds=1)
    events = engine.watch(spec.job_id, timeout=20).events
    assert statuses(events)[-1] == "STOPPED" and events[-1].stopped, describe(events)
    engine.destroy_job(spec.job_id)
    engine.jobs.discard(spec.job_id)
    wait_for(lambda: not any(job_objects(double, namespace, spec.job_id).values()), 20, "the objects gone")
    wait_for(lambda: not double.containers_for(namespace, pod_name), 20, "the containers gone")
    assert spec.job_id not in {j.job_id for j in engine.list_jobs()}


def test_network_allowed_means_no_policy_and_a_network(engine: EngineProcess, double: Any) -> None:
    spec = job_spec("echo online", network=True)
    events = run(engine, spec)
    assert statuses(events)[-1] == "FINISHED", describe(events)
    assert double.get("networkpolicies", namespace_of(engine), names.policy_name(spec.job_id)) is None


def test_time_limit_is_the_pods_deadline(engine: EngineProcess) -> None:
    spec = job_spec("sleep 60", max_duration=2)
    started = time.monotonic()
    events = run(engine, spec, timeout=30)
    assert statuses(events)[-1] == "TIMED_OUT" and events[-1].timed_out, describe(events)
    assert "time limit of 2 s" in events[-1].message
    assert time.monotonic() - started < 15


def test_memory_hog_is_out_of_memory(engine: EngineProcess) -> None:
    events = run(engine, job_spec("tail /dev/zero", ram_gib=0.25))
    last = events[-1]
    assert statuses(events)[-1] == "OUT_OF_MEMORY" and last.oom_killed, describe(events)
    assert "0.25 GiB of memory" in last.message


def test_exit_code_and_log(engine: EngineProcess) -> None:
    spec = job_spec("echo to-out; echo to-err >&2; exit 7")
    events = run(engine, spec)
    assert statuses(events)[-1] == "ALGORITHM_FAILED" and events[-1].exit_code == 7, describe(events)
    log = b"".join(data for _, data in engine.stream_logs(spec.job_id))
    assert b"to-out" in log and b"to-err" in log


def test_missing_image_fails_the_pull(engine: EngineProcess) -> None:
    events = run(engine, job_spec("true", image="c2d-no-such-image", tag="1"))
    assert statuses(events)[-1] == "PULL_IMAGE_FAILED", describe(events)
    assert "c2d-no-such-image:1" in events[-1].message


def test_a_pod_that_cannot_be_scheduled_fails_in_time(engines: EngineFactory, kubeconfig: Path) -> None:
    environments = [{**ENVIRONMENTS[0], "node_selector": {"pool": "no-such-pool"}}]
    process = engines.start(configure=False)
    try:
        process.configure(engine_config_for(kubeconfig, environments=environments, pending_timeout_seconds=2))
        events = run(process, job_spec("true"), timeout=30)
        assert statuses(events)[-1] == "CONTAINER_CREATION_FAILED", describe(events)
        assert "did not start in time" in events[-1].message and "node" in events[-1].message
    finally:
        engines.close([process])


def test_job_ids_that_are_no_names(engine: EngineProcess, double: Any) -> None:
    job_id = "Job:" + "x" * 120 + "@node+1"
    spec = job_spec('echo "$HOME $$"', job_id=job_id)
    events = run(engine, spec)
    assert statuses(events)[-1] == "FINISHED", describe(events)
    root = double.get("configmaps", namespace_of(engine), names.job_base(job_id))
    assert root["metadata"]["annotations"][names.ANNOTATION_JOB] == job_id
    assert len(root["metadata"]["name"]) <= 63 and len(root["metadata"]["labels"][names.LABEL_JOB]) <= 63
    log = b"".join(data for _, data in engine.stream_logs(job_id))
    assert log.startswith(b"/tmp ") and b"$" not in log, "the shell, not Kubernetes, expands $HOME and $$"


def test_orphans_are_listed_and_destroyed(engines: EngineFactory, double: Any) -> None:
    first = engines.start()
    spec = job_spec("sleep 60")
    first.start_job(spec)
    first.watch_until_running(spec.job_id)
    second = engines.start(host_id=first.host_id)  # same node, another state dir: the job is an orphan
    try:
        orphans = {j.job_id: j for j in second.list_jobs()}
        assert spec.job_id in orphans, orphans
        assert orphans[spec.job_id].terminal and orphans[spec.job_id].status == Status.JOB_STATUS_LOST
        assert orphans[spec.job_id].workflow_id == spec.workflow_id
        second.destroy_job(spec.job_id)
        namespace = namespace_of(first)
        wait_for(lambda: not any(job_objects(double, namespace, spec.job_id).values()), 20, "the orphan gone")
    finally:
        engines.close([second, first])


def test_watch_lists_again_after_410_gone(double: Any) -> None:
    namespace = f"watch-{uuid.uuid4().hex[:6]}"
    core = core_api(double.url)
    core.create_namespace({"metadata": {"name": namespace}})
    pods = JobPods(core, namespace, "c2d.job=w", timeout=10)
    pods.refresh()
    stale = pods.version
    for name in ("a", "b"):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": {"c2d.job": "w"}},
                "spec": {"containers": [{"name": "c", "image": "c2d-no-such-image:1"}]},
            },
        )
    double.compact()
    pods.version = stale  # as if the driver had slept through the changes
    found = pods.wait(lambda: sorted(pods.pods) if len(pods.pods) == 2 else None, 10)
    assert found == ["a", "b"]


# Fingerprint and health -----------------------------------------------------------------------


def test_fingerprint_from_node_allocatable_and_quota(
    engines: EngineFactory, double: Any, kubeconfig: Path
) -> None:
    namespace = f"quota-{uuid.uuid4().hex[:6]}"
    core = core_api(double.url)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_resource_quota(
        namespace,
        {
            "metadata": {"name": "operators-limit"},
            "spec": {"hard": {"requests.cpu": "3", "requests.memory": "6Gi", "requests.storage": "5Gi"}},
        },
    )
    process = engines.start(configure=False)
    try:
        process.configure({"kubeconfig": str(kubeconfig), "namespace": namespace})
        fingerprint = process.fingerprint()
        assert fingerprint.health == common_pb2.ENGINE_HEALTH_HEALTHY, fingerprint.health_description
        (env,) = fingerprint.environments
        totals = {r.id: r.total for r in env.resources}
        assert (env.id, totals) == ("k8s-cluster", {"cpu": 3, "ram": 6, "disk": 5, "gpu": 2})
        gpu = next(r for r in env.resources if r.id == "gpu")
        assert [d.vendor for d in gpu.devices] == ["nvidia", "nvidia"]
        assert fingerprint.capabilities.gpu_vendors == ["nvidia"]
        managed = double.get("resourcequotas", namespace, names.QUOTA_NAME)
        assert managed["spec"]["hard"] == {
            "requests.cpu": "3000m",
            "requests.memory": str(6 * GIB),
            "requests.storage": str(5 * GIB),
            f"requests.{GPU}": "2",
        }
    finally:
        engines.close([process])


def test_unreachable_api_and_refused_credentials_are_unhealthy(
    engines: EngineFactory, docker_client: Any, tmp_path: Path
) -> None:
    from k8s_double import ApiServerDouble

    port = free_port()
    process = engines.start(configure=False)
    try:
        process.configure(
            {"kubeconfig": str(write_kubeconfig(tmp_path / "nowhere", f"http://127.0.0.1:{port}"))}
        )
        fingerprint = process.fingerprint()
        assert fingerprint.health == common_pb2.ENGINE_HEALTH_UNDETECTED
        assert f"no Kubernetes API answers at http://127.0.0.1:{port}" in fingerprint.health_description
        assert "refused" in fingerprint.health_description
        with pytest.raises(grpc.RpcError) as refused:
            process.stub.StartJob(engine_pb2.StartJobRequest(spec=job_spec("true")), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()

        guarded = ApiServerDouble(docker_client, node_allocatable=ALLOCATABLE, token="the-right-token")
        try:
            url = guarded.start()
            process.configure({"kubeconfig": str(write_kubeconfig(tmp_path / "wrong", url, "a-wrong-token"))})
            fingerprint = process.fingerprint()
            assert fingerprint.health == common_pb2.ENGINE_HEALTH_UNHEALTHY
            assert "credentials" in fingerprint.health_description and "401" in fingerprint.health_description
        finally:
            guarded.close()
    finally:
        engines.close([process])


def test_an_api_that_goes_away_makes_the_engine_unhealthy(
    engines: EngineFactory, k8s_api: Any, k8s_kubeconfig: Path
) -> None:
    process = engines.start(configure=False)
    try:
        process.configure({"kubeconfig": str(k8s_kubeconfig)})
        assert process.fingerprint().health == common_pb2.ENGINE_HEALTH_HEALTHY
        k8s_api.close()
        stream = process.stub.WatchFingerprint(engine_pb2.WatchFingerprintRequest(), timeout=20)
        try:
            unhealthy = next(
                r.fingerprint for r in stream if r.fingerprint.health == common_pb2.ENGINE_HEALTH_UNHEALTHY
            )
        finally:
            stream.cancel()
        assert f"the Kubernetes API at {k8s_api.url} stopped answering" in unhealthy.health_description
    finally:
        engines.close([process])


def test_configure_without_credentials_says_what_to_set(engines: EngineFactory, tmp_path: Path) -> None:
    process = engines.start(configure=False)
    try:
        for config, words in (
            ({"kubeconfig": str(tmp_path / "missing")}, "no Kubernetes credentials"),
            ({"in_cluster": True}, "in-cluster credentials cannot be used"),
            ({"namespace": "Not_A_Name"}, "not a valid namespace name"),
        ):
            request = engine_pb2.ConfigureRequest(
                api_version=process.api_version,
                config=_struct(config),
                host_id="h",
                state_dir=process.state_dir,
            )
            with pytest.raises(grpc.RpcError) as failed:
                process.stub.Configure(request, timeout=10)
            assert failed.value.code() in (
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.INVALID_ARGUMENT,
            )
            assert words in failed.value.details()
    finally:
        engines.close([process])


def _struct(config: dict[str, Any]) -> Any:
    from c2d.conformance.harness import config_struct

    return config_struct(config)


# Unit tests: no Docker needed -----------------------------------------------------------------


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "job-1",
        "workflow_id": "wf-1",
        "host_id": "0xNode",
        "environment_id": "small",
        "image": {"repository": "busybox", "tag": "1.36", "digest": "", "reference": "busybox:1.36"},
        "command": "echo $HOME $(date) $$",
        "env": {"GREETING": "$(HOME)"},
        "grant": {"cpu": 1.5, "ram_gib": 2, "disk_gib": 3, "gpus": ["nvidia.com/gpu-0"]},
        "time_limit_seconds": 600,
        "network": False,
        "limits": {
            "namespace": "ns",
            "uid": 1000,
            "gid": 1000,
            "tmp_bytes": 64 << 20,
            "log_max_mib": 64,
            "timeout_grace_seconds": 2,
            "pending_timeout_seconds": 600,
            "api_wait_seconds": 120,
            "image_pull_policy": "IfNotPresent",
            "image_pull_secrets": ["regcred"],
            "node_selector": {"pool": "c2d"},
            "runtime_class": "gvisor",
            "storage_class": "fast",
            "volume_access_mode": "ReadWriteOnce",
            "gpu_resource": GPU,
        },
        "pod": {
            "node_peer_id": "0xNode",
            "node_http_api": "10.0.0.1:8471",
            "private_key": "0xsecret",
            "image": {"repository": "c2d-pod", "tag": "abc", "digest": "", "reference": "c2d-pod:abc"},
            "timeout_seconds": 300,
            "cpu": 1.0,
            "ram_bytes": 2 * GIB,
        },
    }
    return {**base, **overrides}


OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "root", "uid": "u-1", "controller": True}


def test_names_fit_kubernetes_and_keep_ids_apart() -> None:
    odd = "Job:" + "X" * 150 + "@node+1"
    for job_id in ("plain-id", odd, "a", "...", "UPPER"):
        for name in (names.job_base(job_id), *(names.pod_name(job_id, s) for s in names.STEPS)):
            assert len(name) <= 63 and names.dns_name(name) == name, name
        assert len(names.label_value(job_id)) <= 63
    assert names.job_base("UPPER") != names.job_base("upper")
    assert names.label_value("conformance-1234") == "conformance-1234"
    assert names.label_value(odd) != odd and names.label_value(odd).endswith(names.digest(odd))
    assert names.default_namespace("0x" + "ab" * 20) == "c2d-0x" + "ab" * 20


def test_algorithm_pod_is_hardened_and_sized_by_the_grant() -> None:
    pod = manifests.algorithm_pod(record(), "ns", OWNER)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 600
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["fsGroup"] == 1000
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    resources = {"cpu": "1500m", "memory": str(2 * GIB), GPU: "1"}
    assert container["resources"] == {"requests": resources, "limits": resources}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/inputs"]["readOnly"] and mounts["/data/transformations"]["readOnly"]
    assert not mounts["/data/outputs"].get("readOnly") and "/tmp" in mounts
    assert container["command"][-1] == "echo $$HOME $$(date) $$$$", "every $ reaches the shell"
    assert {"name": "GREETING", "value": "$$(HOME)"} in container["env"]
    assert spec["nodeSelector"] == {"pool": "c2d"} and spec["runtimeClassName"] == "gvisor"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["metadata"]["labels"][names.LABEL_STEP] == names.ALGORITHM
    assert pod["metadata"]["ownerReferences"] == [OWNER]


def test_pods_request_no_more_than_the_grant_and_keep_the_key_in_the_secret() -> None:
    small = record(grant={"cpu": 0.5, "ram_gib": 0.25, "disk_gib": 1, "gpus": []})
    pod = manifests.step_pod(small, names.PUBLISHING, "ns", OWNER)
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": str(GIB // 4)}
    assert container["resources"]["limits"] == {"cpu": "1000m", "memory": str(2 * GIB)}
    assert container["command"] == ["python3", "-m", "pods.publishing"]
    key = next(e for e in container["env"] if e["name"] == "privateKey")
    assert "value" not in key and key["valueFrom"]["secretKeyRef"]["key"] == "privateKey"
    assert "/data/.publishing" in {m["mountPath"] for m in container["volumeMounts"]}
    everything = repr([pod, manifests.root(small, "ns"), manifests.algorithm_pod(small, "ns", OWNER)])
    assert "0xsecret" not in everything, "the pod key is in the Secret only"
    secret = manifests.pod_key_secret(small, "ns", OWNER)
    assert secret["data"]["privateKey"] == "MHhzZWNyZXQ="


def test_claim_policy_and_quota_manifests() -> None:
    claim = manifests.claim(record(), "ns", OWNER)
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(3 * GIB)}},
        "storageClassName": "fast",
    }
    policy = manifests.no_egress_policy(record(), "ns", OWNER)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy["spec"]
    assert policy["spec"]["podSelector"]["matchLabels"][names.LABEL_STEP] == names.ALGORITHM
    quota = manifests.quota("ns", "0xNode", {"cpu": 2.5, "ram_gib": 4, "disk_gib": 10, "gpus": {GPU: 1}})
    assert quota["spec"]["hard"] == {
        "requests.cpu": "2500m",
        "requests.memory": str(4 * GIB),
        "requests.storage": str(10 * GIB),
        f"requests.{GPU}": "1",
    }


def pod_json(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "status": status}


def terminated(code: int, reason: str, **extra: Any) -> dict[str, Any]:
    state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": "2024-01-01T00:00:00Z", **extra}}
    return {"name": "algorithm", "state": state, "imageID": "docker-pullable://busybox@sha256:abc"}


def test_pod_status_mapping() -> None:
    oom = podstatus.view(
        pod_json(phase="Failed", containerStatuses=[terminated(137, "OOMKilled")]), "algorithm"
    )
    assert oom.ended and oom.oom_killed and oom.exit_code == 137 and oom.started_at
    assert podstatus.image_digest(oom.image_id) == "busybox@sha256:abc"
    late = podstatus.view(pod_json(phase="Failed", reason="DeadlineExceeded"), "algorithm")
    assert late.ended and late.deadline_exceeded and podstatus.exit_code(late) == -1
    waiting = {
        "name": "algorithm",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
    }
    pull = podstatus.view(pod_json(phase="Pending", containerStatuses=[waiting]), "algorithm")
    failure = podstatus.start_failure(pull, "img:1")
    assert failure is not None and failure[0] == "PULL_IMAGE_FAILED" and "no such image" in failure[1]
    no_shell = podstatus.view(
        pod_json(phase="Failed", containerStatuses=[terminated(128, "StartError", message="exec: /bin/sh")]),
        "algorithm",
    )
    assert podstatus.start_failure(no_shell, "img:1") == (
        "CONTAINER_CREATION_FAILED",
        "the container could not be started: exec: /bin/sh",
    )
    unscheduled = podstatus.view(
        pod_json(
            phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "message": "0/1 nodes"}]
        ),
        "algorithm",
    )
    assert unscheduled.unschedulable == "0/1 nodes" and not unscheduled.ended
    assert not podstatus.view(None, "algorithm").exists


def test_config_checks_and_sizes() -> None:
    for bad, words in (
        ({"in_cluster": "maybe"}, "in_cluster must be"),
        ({"gpu_resource": "not a name"}, "not a resource name"),
        ({"image_pull_policy": "Sometimes"}, "image_pull_policy must be one of"),
        ({"environments": [{"id": "e", "gpus": -1}]}, "gpus must be a whole number"),
        ({"environments": [{"id": "e", "colour": "red"}]}, "unknown keys ['colour']"),
        ({"node_selector": {"a": 1}}, "node_selector must be a table of strings"),
    ):
        with pytest.raises(EngineError) as raised:
            engine_config.parse_settings(bad)
        assert words in raised.value.message
    cluster = engine_config.ClusterSize(cpu=4, ram_gib=8, disk_gib=20, gpus={GPU: 2})
    (default,) = engine_config.resolve(engine_config.parse_settings({}), cluster)
    assert (default.id, default.cpu, default.ram_gib, default.disk_gib, default.gpus) == (
        "k8s-cluster",
        4,
        8,
        20,
        2,
    )
    settings = engine_config.parse_settings({"environments": [{"id": "e", "cpu": 16, "ram_gib": 2}]})
    (env,) = engine_config.resolve(settings, cluster)
    assert (env.cpu, env.ram_gib, env.gpus) == (4, 2, 0), (
        "configured sizes are capped by what the cluster has"
    )
    assert engine_config.total_capacity((default, env))["cpu"] == 8


def test_algorithm_wrapper_keeps_the_exit_code_and_copies_the_log(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    env = {"PATH": os.environ["PATH"], "C2D_DATA": str(tmp_path), "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        ["/bin/sh", "-c", manifests.ALGORITHM_WRAPPER, "c2d-algorithm", "echo out; echo err >&2; exit 3"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3 and result.stdout == "out\nerr\n"
    assert (tmp_path / "logs" / "algorithm.log").read_text() == "out\nerr\n"
    (tmp_path / "logs" / "algorithm.log").unlink()
    (tmp_path / "logs").rmdir()
    bare = subprocess.run(
        ["/bin/sh", "-c", manifests.ALGORITHM_WRAPPER, "c2d-algorithm", "exit 5"], env=env, check=False
    )
    assert bare.returncode == 5, "without a logs folder the command runs as it is"


def test_a_namespace_it_may_not_create_is_unhealthy_until_it_exists(
    engines: EngineFactory, double: Any, kubeconfig: Path
) -> None:
    namespace = f"absent-{uuid.uuid4().hex[:6]}"
    process = engines.start(configure=False)
    try:
        config = {"kubeconfig": str(kubeconfig), "namespace": namespace, "create_namespace": False}
        process.configure(config)
        fingerprint = process.fingerprint()
        assert fingerprint.health == common_pb2.ENGINE_HEALTH_UNHEALTHY
        assert f"namespace {namespace} does not exist" in fingerprint.health_description
        core_api(double.url).create_namespace({"metadata": {"name": namespace}})
        process.configure(config)
        assert process.fingerprint().health == common_pb2.ENGINE_HEALTH_HEALTHY
    finally:
        engines.close([process])
