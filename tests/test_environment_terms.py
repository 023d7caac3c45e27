"""The operator's ``[environments]`` terms: checked when the config loads, applied the same everywhere.

A malformed table stops ``python -m host`` at start (exit 2, naming the table),
instead of failing every ``GetEnvironments`` later. And what the operator sets
is what the node does: the storage expiry ``GetEnvironments`` advertises is the
one a finished stage's results get (they used to get the engine's default).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from host.config import ConfigError, load_config
from nodeproc import running_node, wait_for

ENV = "stub-local"
EXPIRY = 4321
ENGINE = f"""
[engines.external_stub]
enabled = true

[[engines.external_stub.environments]]
id = "{ENV}"
cpu = 1
ram_gib = 1
disk_gib = 1
"""
MALFORMED = {
    "free is a number": (f'[environments."{ENV}"]\nfree = 3\n', f"environments.{ENV}.free"),
    "unknown free setting": (
        f'[environments."{ENV}".free]\nmax_jobs = 2\n',
        "unknown settings: max_jobs",
    ),
    "negative count": (
        f'[environments."{ENV}".free]\nmax_jobs_per_consumer = -1\n',
        f"environments.{ENV}.free is malformed",
    ),
    "resource amount not a number": (
        f'[environments."{ENV}".free.resources]\ncpu = "all"\n',
        f"environments.{ENV}.free is malformed",
    ),
    "expiry zero": (f'[environments."{ENV}"]\nstorage_expiry_seconds = 0\n', "storage_expiry_seconds"),
    "expiry text": (f'[environments."{ENV}"]\nstorage_expiry_seconds = "1d"\n', "storage_expiry_seconds"),
    "queue limit zero": (f'[environments."{ENV}"]\nmax_queue_seconds = 0\n', "max_queue_seconds must be"),
    "queue limit text": (f'[environments."{ENV}"]\nmax_queue_seconds = "1h"\n', "max_queue_seconds"),
    "queue limit huge": (f'[environments."{ENV}"]\nmax_queue_seconds = 4294967296\n', "between 1 and"),
    "queue limit flag": (f'[environments."{ENV}"]\nmax_queue_seconds = true\n', "max_queue_seconds"),
    "fees not a list": (f'[environments."{ENV}".fees]\nchain_id = 1\n', f"environments.{ENV}.fees"),
    "fees unknown field": (
        f'[[environments."{ENV}".fees]]\nchain_id = 1\nprice = "3"\n',
        f"environments.{ENV}.fees[0] is malformed",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_terms_are_refused_when_the_config_loads(tmp_path: Path, case: str) -> None:
    table, named = MALFORMED[case]
    path = tmp_path / "node.toml"
    path.write_text(ENGINE + table)
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert named in str(refused.value)


def test_the_node_does_not_start_with_malformed_terms(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(ENGINE + MALFORMED["unknown free setting"][0])
    done = subprocess.run(
        [sys.executable, "-m", "host", "--config", str(path), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown settings: max_jobs" in done.stderr
    assert "Traceback" not in done.stderr


def test_results_are_kept_as_long_as_the_environment_says(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        ENGINE
        + f'[environments."{ENV}"]\nstorage_expiry_seconds = {EXPIRY}\n'
        + f'[environments."{ENV}".free]\nmax_job_duration_seconds = 60\n'
    )
    with running_node(tmp_path / "data", config=config) as node:
        node.wait_listening()
        node.wait_environment(ENV)
        with Client(node.address, auth.new_private_key()) as client:
            advertised = next(env for env in client.environments() if env.id == ENV)
            assert advertised.storage_expiry_seconds == EXPIRY
            started = client.start(
                {
                    "environment": ENV,
                    "stages": [
                        {
                            "algorithm": {
                                "rawcode": "echo kept > $C2D_DATA/outputs/out",
                                "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                            }
                        }
                    ],
                }
            )
            (job,) = client.wait(started, timeout=120)
        assert job.status == common_pb2.JOB_STATUS_FINISHED
        kept = job.results_expire.ToNanoseconds() - job.finished.ToNanoseconds()
        assert kept == pytest.approx(EXPIRY * 1e9, abs=1e6)
        node.settle()


def test_results_past_their_expiry_are_removed_by_the_node(tmp_path: Path) -> None:
    """The node sweeps expired results when it starts and every minute after: files and rows go,
    the job itself stays listed."""
    config = tmp_path / "node.toml"
    config.write_text(
        ENGINE
        + f'[environments."{ENV}"]\nstorage_expiry_seconds = 1\n'
        + f'[environments."{ENV}".free]\nmax_job_duration_seconds = 60\n'
    )
    key = auth.new_private_key()
    with running_node(tmp_path / "data", config=config) as node:
        node.wait_listening()
        node.wait_environment(ENV)
        with Client(node.address, key) as client:
            started = client.start(
                {
                    "environment": ENV,
                    "stages": [
                        {
                            "algorithm": {
                                "rawcode": "echo gone > $C2D_DATA/outputs/out",
                                "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                            }
                        }
                    ],
                }
            )
            (job,) = client.wait(started, timeout=120)
        assert job.status == common_pb2.JOB_STATUS_FINISHED and job.results
        node.settle()
    results_dir = tmp_path / "data" / "results" / job.job_id
    assert results_dir.is_dir()
    # The node's clock is this machine's: the restarted node's first sweep must come after expiry.
    time.sleep(max(0.0, job.results_expire.ToNanoseconds() / 1e9 - time.time()))
    with running_node(tmp_path / "data", config=config) as node:  # its first sweep runs at start
        node.wait_listening()
        with Client(node.address, key) as client:
            wait_for(lambda: not client.status(job_id=job.job_id)[0].results, 60, "the results expired")
            assert client.status(job_id=job.job_id)[0].status == common_pb2.JOB_STATUS_FINISHED
        assert not results_dir.exists()
        assert node.log_events("expired results removed")
