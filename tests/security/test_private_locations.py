"""Class 3 of issue 10: nothing of a private asset's location reaches a consumer.

An operator registers datasets whose path and URL carry distinctive secret
segments; a consumer computes on them through a real node with real pods
(external_stub). Nothing the consumer can read (GetComputeStatus with its
history and messages, every result file, the algorithm log) names a segment,
on success and on failure (a 404, an unreachable host). The files appear under
the operator's ``name`` or, without one, their index (``file-<n>``).
"""

from __future__ import annotations

import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import NodeProcess, free_port, running_node

S = common_pb2.JobStatus
ENV = "stub-local"
BUCKET, FILE = "s3cr3t-bucket-name", "payroll-2026.csv"
SECRETS = (BUCKET, "payroll", "s3cr3t")
CONTENT = "id,salary\n1,100\n2,200\n"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def bucket() -> Iterator[str]:
    """The operator's internal file server: serves /<BUCKET>/<FILE>, 404 for anything else."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == f"/{BUCKET}/{FILE}"
            body = CONTENT.encode() if found else b"no such key\n"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def dataset(did: str, file: dict) -> dict:
    service = {"serviceId": "compute", "kind": "KIND_DATASET", "files": {"files": [file]}}
    return {"did": did, "services": [{**service, "policy": {"allowRawCode": True}}]}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, bucket: str) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("datasets")
    (root / BUCKET).mkdir()
    (root / BUCKET / FILE).write_text(CONTENT)
    env = {
        "C2D_ASSETS__DATA_ROOT": str(root),
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 4, ram_gib = 4, disk_gib = 2}}]',
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        with Client(node.address, node.node_key()) as operator:
            for asset in (
                dataset("did:op:local", {"type": "local", "path": f"{BUCKET}/{FILE}"}),
                dataset("did:op:url", {"type": "url", "url": f"{bucket}/{BUCKET}/{FILE}"}),
                dataset(
                    "did:op:named", {"type": "url", "url": f"{bucket}/{BUCKET}/{FILE}", "name": "pay.csv"}
                ),
                dataset("did:op:missing", {"type": "url", "url": f"{bucket}/{BUCKET}/gone-{FILE}"}),
                dataset(
                    "did:op:down", {"type": "url", "url": f"http://127.0.0.1:{free_port()}/{BUCKET}/{FILE}"}
                ),
            ):
                operator.register_asset(asset, replace=True)
        yield node


SCRIPT = (
    'ls -R "$C2D_DATA/inputs" > "$C2D_DATA/outputs/listing.txt"; ls -R "$C2D_DATA/inputs"; '
    'cat "$C2D_DATA"/inputs/0/* > "$C2D_DATA/outputs/copy.txt"'
)


def run(node: NodeProcess, did: str, out: Path) -> tuple[object, list[str]]:
    """Runs SCRIPT over ``did``; the job and every text the consumer can read about it."""
    workflow = {
        "environment": ENV,
        "stages": [
            {
                "index": 0,
                "input": [{"index": 0, "did": did, "serviceId": "compute"}],
                "algorithm": {
                    "rawcode": SCRIPT,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
        ],
    }
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow, free=True)
        (job,) = consumer.wait(started.workflow_id, timeout=180)
        visible = [str(job), str(consumer.status(all=True))]
        paths = consumer.results(job.job_id, out)
        for archive in [p for p in paths if zipfile.is_zipfile(p)]:  # several outputs come zipped
            with zipfile.ZipFile(archive) as outputs:
                outputs.extractall(out)
            paths += [out / name for name in outputs.namelist()]
        visible += [p.name for p in paths] + [p.read_text(errors="replace") for p in paths]
        visible.append(b"".join(consumer.logs(job.job_id)).decode(errors="replace"))
        return job, visible


def assert_nothing_private(visible: list[str]) -> None:
    for text in visible:
        for secret in SECRETS:
            assert secret not in text, (secret, text[:2000])


@pytest.mark.parametrize(
    ("did", "name"), [("did:op:local", "file-0"), ("did:op:url", "file-0"), ("did:op:named", "pay.csv")]
)
def test_a_private_dataset_is_named_by_the_operator_or_its_index(
    node: NodeProcess, tmp_path: Path, did: str, name: str
) -> None:
    job, visible = run(node, did, tmp_path)
    assert job.status == S.JOB_STATUS_FINISHED, job
    assert (tmp_path / "copy.txt").read_text() == CONTENT  # the data did arrive
    assert name in (tmp_path / "listing.txt").read_text()
    assert any(f"input 0/{name}" in text for text in visible)  # configuration.log names it so
    assert_nothing_private(visible)


@pytest.mark.parametrize("did", ["did:op:missing", "did:op:down"])
def test_a_failed_private_download_names_no_part_of_its_location(
    node: NodeProcess, tmp_path: Path, did: str
) -> None:
    job, visible = run(node, did, tmp_path)
    assert job.status == S.JOB_STATUS_DATA_PROVISIONING_FAILED, job
    assert "0/file-0: download failed" in str(job)
    assert_nothing_private(visible)
