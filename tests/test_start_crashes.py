"""A stage whose start crashes its engine ends after ``[compute] max_start_crashes`` crashes.

The node runs as a real process with one engine, tests/plugins/start_crasher.py: the stub
engine, except that it dies in StartJob of a stage whose command says ``crash-the-engine``.
Each crash is counted on the stage (in the database, so a node restart keeps the count); the
supervisor restarts the plugin, the stage is granted again, and at the limit it ends with
CONTAINER_CREATION_FAILED instead of crashing the engine after every restart, while other
stages run on the same engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from host.store.stages import start_crash_message
from nodeproc import NodeProcess, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
PLUGINS = Path(__file__).parent / "plugins"
CRASHED = "the engine crashed while starting the stage; will retry"
GAVE_UP = "the engine crashed starting the stage too often; not retried"
FAST_RESTARTS = "0.05"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def crasher_env(tmp_path: Path) -> dict[str, str]:
    """The node's environment under which start_crasher is its one installed engine."""
    site = tmp_path / "site"
    info = site / "c2d_start_crasher-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: c2d-start-crasher\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[c2d.engines]\nstart_crasher = start_crasher\n")
    path = os.pathsep.join(p for p in (str(PLUGINS), str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "C2D_LOAD_PLUGINS": "start_crasher"}


def stage_running(entrypoint: str) -> dict:
    return {
        "index": 0,
        "algorithm": {
            "rawcode": "echo ran",
            "container": {"entrypoint": entrypoint, "image": "busybox", "tag": "1"},
        },
    }


def crashing_workflow() -> dict:
    """The plugin sees the entrypoint as the container's command."""
    return {"environment": ENV, "stages": [stage_running("sh $ALGO crash-the-engine")]}


def history(job: object) -> list[tuple[str, str]]:
    return [(S.Name(e.status), e.message) for e in job.history]  # type: ignore[attr-defined]


def test_a_stage_that_crashes_its_engine_ends_at_the_limit_and_others_run(
    tmp_path: Path, crasher_env: dict[str, str]
) -> None:
    env = {
        **crasher_env,
        "C2D_COMPUTE__MAX_START_CRASHES": "2",
        "C2D_PLUGINS__RESTART_INITIAL_SECONDS": FAST_RESTARTS,
    }
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        node.wait_environment(ENV)
        with Client(node.address, auth.new_private_key()) as client:
            crashing = client.start(crashing_workflow(), free=True)
            (job,) = client.wait(crashing.workflow_id, timeout=120)
            assert job.status == S.JOB_STATUS_CONTAINER_CREATION_FAILED, history(job)
            assert history(job)[-1] == ("JOB_STATUS_CONTAINER_CREATION_FAILED", start_crash_message(2))
            assert not job.HasField("started"), "it never ran, so it costs nothing"
            assert len(node.log_events(CRASHED)) == 1 and len(node.log_events(GAVE_UP)) == 1

            node.wait_environment(ENV)  # the plugin the last crash took is back
            fine = client.start({"environment": ENV, "stages": [stage_running("sh $ALGO")]}, free=True)
            (done,) = client.wait(fine.workflow_id, timeout=120)
            assert done.status == S.JOB_STATUS_FINISHED, history(done)
    finally:
        node.kill()


def test_the_count_survives_a_node_restart(tmp_path: Path, crasher_env: dict[str, str]) -> None:
    """One crash in the first life (the plugin is not restarted there), two in the second: three in all."""
    data_dir = tmp_path / "node"
    slow = {
        **crasher_env,
        "C2D_PLUGINS__RESTART_INITIAL_SECONDS": "3600",
        "C2D_PLUGINS__RESTART_MAX_SECONDS": "3600",
    }
    node = NodeProcess(data_dir, env=slow)
    key = auth.new_private_key()
    try:
        node.wait_environment(ENV)
        with Client(node.address, key) as client:
            crashing = client.start(crashing_workflow(), free=True)
        wait_for(lambda: node.log_events(CRASHED), 60, "the first crash")
        assert len(node.log_events(CRASHED)) == 1
    finally:
        node.kill()

    fast = {**crasher_env, "C2D_PLUGINS__RESTART_INITIAL_SECONDS": FAST_RESTARTS}
    node = NodeProcess(data_dir, env=fast, port=node.port, pod_port=node.pod_port)
    try:
        node.wait_listening()
        with Client(node.address, key) as client:
            (job,) = client.wait(crashing.workflow_id, timeout=120)
        assert history(job)[-1] == ("JOB_STATUS_CONTAINER_CREATION_FAILED", start_crash_message(3))
        assert len(node.log_events(CRASHED)) == 1, "the second life counted on from the first one's crash"
        assert len(node.log_events(GAVE_UP)) == 1
    finally:
        node.kill()
