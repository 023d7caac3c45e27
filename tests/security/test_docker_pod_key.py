"""The pod key is never readable by the algorithm on the Docker engine (issue 10, class 4).

A real node runs a stage on the Docker engine with its pods in the pod image. The
algorithm dumps what it can read (its environment, every process's environment,
every file under /data but its own outputs) into one output file; the test reads the
stage's pod key where the engine received it (the job's ``spec.json`` on the host)
and checks that the dump holds neither the key nor its variable's name.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import NodeProcess, free_port, wait_for

pytestmark = pytest.mark.docker

S = common_pb2.JobStatus
ENV = "docker-local"
# Waits (at most 120 s) until the test has read the key, then dumps everything it can read.
DUMP = (
    "i=0; while [ ! -e /data/outputs/go ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done; "
    "{ env; cat /proc/*/environ; find /data -path /data/outputs -prune -o -type f -exec cat {} +; "
    "} > /data/outputs/dump.txt 2>/dev/null; true"
)


def readable(path: Path) -> bytes:
    """A result's bytes, an outputs archive's members unpacked."""
    if not zipfile.is_zipfile(path):
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        return b"".join(archive.read(name) for name in archive.namelist())


def test_the_docker_algorithm_cannot_read_its_pod_key(
    tmp_path: Path, pod_image: str, busybox_image: str
) -> None:
    env = {
        "C2D_LOAD_PLUGINS": "docker",
        "C2D_PODS__LISTEN": f"auto:{free_port()}",
        "C2D_ENGINES__DOCKER__POD_IMAGE": pod_image,
    }
    name, _, tag = busybox_image.partition(":")
    workflow = {
        "environment": ENV,
        "stages": [
            {
                "index": 0,
                "algorithm": {
                    "rawcode": DUMP,
                    "container": {"entrypoint": "sh $ALGO", "image": name, "tag": tag},
                },
            }
        ],
    }
    node = NodeProcess(tmp_path / "node", env=env)
    try:
        node.wait_environment(ENV, timeout=60)
        with Client(node.address, auth.new_private_key()) as consumer:
            (stage,) = consumer.start(workflow, free=True).stages
            job_dir = node.data_dir / "engines" / "docker" / "jobs" / stage.job_id
            wait_for(
                lambda: consumer.status(job_id=stage.job_id)[0].status == S.JOB_STATUS_RUNNING,
                120,
                "the algorithm to run",
            )
            key = str(json.loads((job_dir / "spec.json").read_text())["pod"]["private_key"])
            (job_dir / "data" / "outputs" / "go").write_text("")
            (job,) = consumer.wait([stage.job_id], timeout=180)
            assert job.status == S.JOB_STATUS_FINISHED, [(e.status, e.message) for e in job.history]
            paths = consumer.results(stage.job_id, tmp_path / "results")
        outputs = b"".join(readable(p) for p in paths)
        assert b"HOME=" in outputs  # the dump ran and came back
        for secret in (key, key.removeprefix("0x"), "privateKey"):
            assert secret.encode() not in outputs, f"the algorithm could read {secret[:6]}…"
    finally:
        node.kill()
