"""The bacalhau engine against a real orchestrator, when one is given: ``C2D_TEST_BACALHAU_URL=http://host:1234``.

Skipped otherwise (no Bacalhau network runs on the development and CI machines; the double in
tests/bacalhau_double stands in there). Optional settings:

- ``C2D_TEST_BACALHAU_TOKEN``: the bearer token the orchestrator wants (default: none);
- ``C2D_TEST_BACALHAU_WORK_ROOT``: a folder this machine writes and the compute nodes mount,
  allow-listed there (``Compute.AllowListedLocalPaths``); default: a temporary folder, which works
  when a compute node runs on this machine and allow-lists it;
- ``C2D_TEST_BACALHAU_NODE_WORK_ROOT``: the same folder as the compute nodes see it (default: the same path);
- ``C2D_TEST_BACALHAU_IMAGE``: an image with ``/bin/sh`` the nodes can run (default ``busybox:1.36``).

The jobs it submits carry the labels ``c2d-engine=bacalhau`` and ``c2d-node=c2d-test-<random>``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from c2d.common.v1 import common_pb2
from c2d.conformance.harness import EngineFactory, EngineProcess, EventLoopThread, Target, describe
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine

URL = os.environ.get("C2D_TEST_BACALHAU_URL", "")
pytestmark = [
    pytest.mark.skipif(not URL, reason="no real orchestrator: set C2D_TEST_BACALHAU_URL to run"),
    pytest.mark.timeout(600),
]
Status = common_pb2.JobStatus
IMAGE = os.environ.get("C2D_TEST_BACALHAU_IMAGE", "busybox:1.36")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    work_root = os.environ.get("C2D_TEST_BACALHAU_WORK_ROOT") or str(tmp_path_factory.mktemp("bacalhau-work"))
    config: dict[str, Any] = {"url": URL, "work_root": work_root, "poll_seconds": 1}
    for key, variable in (
        ("token", "C2D_TEST_BACALHAU_TOKEN"),
        ("node_work_root", "C2D_TEST_BACALHAU_NODE_WORK_ROOT"),
    ):
        if os.environ.get(variable):
            config[key] = os.environ[variable]
    loop = EventLoopThread()
    factory = EngineFactory(
        Target(spec=find_engine("bacalhau").spec, config=config, config_source="C2D_TEST_BACALHAU_*"),
        loop,
        tmp_path_factory.mktemp("bacalhau-real"),
    )
    try:
        yield factory.start(host_id=f"c2d-test-{uuid.uuid4().hex[:12]}")
    finally:
        factory.close()
        loop.close()


def spec_for(engine: EngineProcess, command: str, **fields: Any) -> engine_pb2.JobSpec:
    name, _, tag = IMAGE.rpartition(":")
    env = engine.fingerprint().environments[0]
    return engine_pb2.JobSpec(
        job_id=f"real-{uuid.uuid4()}",
        workflow_id=f"wf-{uuid.uuid4()}",
        environment_id=env.id,
        container=engine_pb2.Container(image=name, tag=tag, command=command),
        **fields,
    )


def test_the_orchestrator_is_healthy_and_has_a_pool(engine: EngineProcess) -> None:
    fingerprint = engine.fingerprint()
    assert fingerprint.health == common_pb2.ENGINE_HEALTH_HEALTHY, fingerprint.health_description
    assert fingerprint.environments and fingerprint.environments[0].resources


def test_a_job_finishes_fails_and_times_out(engine: EngineProcess) -> None:
    for command, fields, expected in (
        ("echo hello > /data/outputs/hello.txt; echo hello", {}, Status.JOB_STATUS_FINISHED),
        ("exit 3", {}, Status.JOB_STATUS_ALGORITHM_FAILED),
        ("sleep 300", {"max_duration_seconds": 5}, Status.JOB_STATUS_TIMED_OUT),
    ):
        spec = spec_for(engine, command, **fields)
        engine.start_job(spec)
        events = engine.watch(spec.job_id, timeout=300).events
        assert events[-1].status == expected, describe(events)
        if expected == Status.JOB_STATUS_FINISHED:
            assert b"".join(data for _, data in engine.stream_logs(spec.job_id)) == b"hello\n"


def test_a_stop_ends_the_job(engine: EngineProcess) -> None:
    spec = spec_for(engine, "sleep 300")
    engine.start_job(spec)
    engine.watch_until_running(spec.job_id, timeout=300)
    engine.stop_job(spec.job_id)
    events = engine.watch(spec.job_id, timeout=120).events
    assert events[-1].status == Status.JOB_STATUS_STOPPED, describe(events)
