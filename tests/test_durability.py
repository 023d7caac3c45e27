"""The node is SIGKILLed in the middle of workflows and restarted: every workflow still completes.

Stages are caught in provisioning (a slow dataset download), while the
algorithm runs, and while results are being published. Each algorithm
appends a line to a marker file, so a stage that ran twice would show.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import NodeProcess, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves a small CSV after a delay, so provisioning lasts long enough to be interrupted."""

    delay = 3.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = b"n\n1\n2\n3\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    server.shutdown()


# The slow server stands in for a consumer's public server: the operator allows it. The marker
# file that counts runs lies outside the job's folders, where a confined algorithm cannot write:
# these tests are about restarts, so the stub runs unconfined (tests/security covers confinement).
LOCAL_URLS = {
    "C2D_SECURITY__ALLOW_HOSTS": '["127.0.0.1"]',
    "C2D_ENGINES__EXTERNAL_STUB__SANDBOX": '"none"',
    "C2D_ENGINES__EXTERNAL_STUB__UNSAFE_UNCONFINED": "true",
}


def algorithm(script: str) -> dict:
    return {"rawcode": script, "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"}}


def status_of(client: Client, job_id: str) -> int:
    return client.status(job_id=job_id)[0].status


def kill_and_restart(node: NodeProcess, data_dir: Path, env: dict[str, str] = LOCAL_URLS) -> NodeProcess:
    node.kill()
    restarted = NodeProcess(data_dir, env=env, port=node.port, pod_port=node.pod_port)
    restarted.wait_environment(ENV)
    return restarted


@pytest.mark.parametrize("moment", ["provisioning", "running", "publishing"])
def test_node_killed_mid_stage_finishes_the_workflow(tmp_path: Path, slow_server: str, moment: str) -> None:
    killed_mid_stage(tmp_path, slow_server, moment, LOCAL_URLS)


def test_node_on_postgresql_killed_mid_stage_finishes_the_workflow(
    tmp_path: Path, slow_server: str, postgres_url: str
) -> None:
    """The same on PostgreSQL (storage.database_url), for the moment that matters most."""
    killed_mid_stage(
        tmp_path, slow_server, "running", {**LOCAL_URLS, "C2D_STORAGE__DATABASE_URL": postgres_url}
    )


def killed_mid_stage(tmp_path: Path, slow_server: str, moment: str, env: dict[str, str]) -> None:
    data_dir, marker = tmp_path / "node", tmp_path / "runs.txt"
    stage0 = (
        f'echo ran >> "{marker}"; sleep 2; cp "$C2D_DATA/inputs/0/data.csv" "$C2D_DATA/outputs/"; '
        'head -c 40000000 /dev/zero > "$C2D_DATA/outputs/big.bin"'
    )
    workflow = {
        "environment": ENV,
        "stages": [
            {
                "index": 0,
                "input": [{"index": 0, "files": {"type": "url", "url": slow_server}}],
                "algorithm": algorithm(stage0),
            },
            {
                "index": 1,
                "runAfter": 0,
                "algorithm": algorithm('ls -R "$C2D_DATA/inputs" > "$C2D_DATA/outputs/seen.txt"'),
            },
        ],
    }
    wanted = {
        "provisioning": S.JOB_STATUS_PROVISIONING,
        "running": S.JOB_STATUS_RUNNING,
        "publishing": S.JOB_STATUS_PUBLISHING,
    }
    node = NodeProcess(data_dir, env=env)
    try:
        node.wait_environment(ENV)
        key = auth.new_private_key()
        with Client(node.address, key) as client:
            started = client.start(workflow, free=True)
            first = started.stages[0].job_id
            wait_for(
                lambda: status_of(client, first) == wanted[moment], 30, f"stage 0 {moment}", interval=0.02
            )
        node = kill_and_restart(node, data_dir, env)
        with Client(node.address, key) as client:
            jobs = {j.stage_index: j for j in client.wait(started.workflow_id, timeout=90)}
            assert [jobs[0].status_text, jobs[1].status_text] == ["finished", "finished"], [
                [(e.status, e.message) for e in j.history] for j in jobs.values()
            ]
            names = {r.name for r in jobs[0].results}
            assert "outputs.zip" in names and "algorithm.log" in names
            seen = client.results(jobs[1].job_id, tmp_path / "seen")
        assert marker.read_text() == "ran\n", "stage 0's algorithm ran more than once"
        if "C2D_STORAGE__DATABASE_URL" in env:
            assert not (data_dir / "node.db").exists(), "the node used SQLite, not the database URL"
        listing = next(p for p in seen if p.name == "seen.txt").read_text()
        assert "data.csv" in listing and "big.bin" in listing  # stage 1 got stage 0's outputs
    finally:
        node.kill()
