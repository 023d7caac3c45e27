"""The kubernetes engine against a real cluster, when one is given: ``C2D_TEST_KUBECONFIG=path``.

Skipped otherwise (no cluster can run on the development and CI machines; the
double in tests/k8s_double stands in there). Optional settings:

- ``C2D_TEST_K8S_CONTEXT``: the kubeconfig context (default: its current one);
- ``C2D_TEST_K8S_IMAGE``: an image with ``/bin/sh`` the cluster can pull (default ``busybox:1.36``);
- ``C2D_TEST_K8S_STORAGE_CLASS``: the storage class of the job's volume (default: the cluster's).

The test uses a namespace of its own (``c2d-test-<random>``), which the engine
creates and the test deletes, so the credentials need the RBAC rules of
``plugins/k8s_engine/rbac.yaml`` plus creating and deleting namespaces.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from c2d.common.v1 import common_pb2
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, Target, describe
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine

KUBECONFIG = os.environ.get("C2D_TEST_KUBECONFIG", "")
pytestmark = [
    pytest.mark.skipif(
        not KUBECONFIG, reason="no real cluster: set C2D_TEST_KUBECONFIG to a kubeconfig to run"
    ),
    pytest.mark.timeout(600),
]
Status = common_pb2.JobStatus


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"c2d-test-{uuid.uuid4().hex[:8]}"
    yield name
    import kubernetes

    client = kubernetes.config.new_client_from_config(
        config_file=KUBECONFIG, context=os.environ.get("C2D_TEST_K8S_CONTEXT") or None, persist_config=False
    )
    try:
        kubernetes.client.CoreV1Api(client).delete_namespace(name)
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def engine(namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    config: dict[str, Any] = {
        "kubeconfig": str(Path(KUBECONFIG).expanduser()),
        "namespace": namespace,
        "pending_timeout_seconds": 300,
        "environments": [
            {
                "id": "real",
                "cpu": 1,
                "ram_gib": 1,
                "disk_gib": 1,
                "min_cpu": 0.1,
                "min_ram_gib": 0.125,
                "min_disk_gib": 0.1,
                "max_job_duration_seconds": 300,
            }
        ],
    }
    if os.environ.get("C2D_TEST_K8S_CONTEXT"):
        config["context"] = os.environ["C2D_TEST_K8S_CONTEXT"]
    if os.environ.get("C2D_TEST_K8S_STORAGE_CLASS"):
        config["storage_class"] = os.environ["C2D_TEST_K8S_STORAGE_CLASS"]
    loop = EventLoopThread()
    factory = EngineFactory(
        Target(spec=find_engine("kubernetes").spec, config=config, config_source="C2D_TEST_KUBECONFIG"),
        loop,
        tmp_path_factory.mktemp("k8s-real"),
    )
    try:
        yield factory.start()
    finally:
        factory.close()
        loop.close()


def test_a_basic_job_runs_on_the_cluster(engine: EngineProcess) -> None:
    fingerprint = engine.fingerprint()
    assert fingerprint.health == common_pb2.ENGINE_HEALTH_HEALTHY, fingerprint.health_description
    image, _, tag = (os.environ.get("C2D_TEST_K8S_IMAGE") or "busybox:1.36").rpartition(":")
    spec = engine_pb2.JobSpec(
        job_id=f"real-{uuid.uuid4().hex[:12]}",
        workflow_id="real-cluster",
        environment_id="real",
        container=engine_pb2.Container(
            image=image, tag=tag, command='echo hello > "$C2D_DATA/outputs/hello.txt"; echo hello'
        ),
        resources=[
            common_pb2.GrantedResource(id="cpu", type=common_pb2.RESOURCE_TYPE_CPU, amount=0.1),
            common_pb2.GrantedResource(id="ram", type=common_pb2.RESOURCE_TYPE_RAM, amount=0.125),
            common_pb2.GrantedResource(id="disk", type=common_pb2.RESOURCE_TYPE_DISK, amount=0.1),
        ],
        max_duration_seconds=240,
    )
    engine.start_job(spec)
    events = engine.watch(spec.job_id, timeout=400).events
    assert events[-1].status == Status.JOB_STATUS_FINISHED, describe(events)
    log = b"".join(data for _, data in engine.stream_logs(spec.job_id))
    assert b"hello" in log
    engine.destroy_job(spec.job_id)
    engine.jobs.discard(spec.job_id)
    assert spec.job_id not in {j.job_id for j in engine.list_jobs()}
