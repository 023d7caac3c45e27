"""The Node.js client of examples/clients/node, written from docs/signing.md, against a real node.

It lists the environments, starts examples/hello.json free, follows its status, downloads every
result (result index 0 from offset 0, which protobufjs 7 writes as explicit zeros, included) and
reads the logs; its downloads must be the bytes the Python SDK downloads. It also checks the test
vectors with protobufjs and ethers. Needs ``node`` and the example's npm modules (``npm ci`` in
examples/clients/node, which scripts/setup-dev runs): skipped without them, failed under CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from nodeproc import NodeProcess, running_node

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "clients" / "node"
MODULES = ("@grpc/grpc-js", "@grpc/proto-loader", "ethers")
ENV = "stub-local"


@pytest.fixture(scope="module")
def node_binary() -> str:
    binary = shutil.which("node")
    missing = [m for m in MODULES if not (EXAMPLE / "node_modules" / m / "package.json").is_file()]
    problem = (
        "node is not installed"
        if binary is None
        else f"npm modules missing in {EXAMPLE.relative_to(ROOT)}: {', '.join(missing)}"
        if missing
        else ""
    )
    if problem:
        message = f"{problem}; run bash scripts/setup-dev (npm ci in examples/clients/node)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Node.js client: {message}", pytrace=False)
        pytest.skip(message)
    assert binary is not None
    return binary


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, node_binary: str) -> Iterator[NodeProcess]:
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]'
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


def run_node(binary: str, script: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, script, *args],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NODE_OPTIONS": ""},
        check=False,
    )


def test_the_node_client_reproduces_the_signing_vectors(node_binary: str) -> None:
    result = run_node(node_binary, "vectors.js", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    count = len(json.loads((ROOT / "docs" / "signing-vectors.json").read_text())["vectors"])
    assert f"{count} vectors ok" in result.stdout


def test_the_node_client_runs_hello_and_downloads_every_result(
    node_binary: str, node: NodeProcess, tmp_path: Path
) -> None:
    key = auth.new_private_key()
    key_file = tmp_path / "me.key"
    key_file.write_text(key + "\n")
    out = tmp_path / "out"
    result = run_node(
        node_binary,
        "hello.js",
        "--node",
        node.address,
        "--key-file",
        str(key_file),
        "--env",
        ENV,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"environment {ENV} " in result.stdout
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    jobs = summary["jobs"]
    assert summary["consumer"].lower() == auth.address_of(key)
    assert [j["stageIndex"] for j in jobs] == [0, 1]
    assert all(j["status"] == "JOB_STATUS_FINISHED" for j in jobs)
    assert "stage 0: writing hello.txt" in jobs[0]["log"] and "stage 1: read inputs/" in jobs[1]["log"]

    downloaded = [r for j in jobs for r in j["results"]]
    assert any(r["index"] == 0 for r in downloaded)  # the request protobufjs writes with index 0 and offset 0
    shout = next(r for r in jobs[1]["results"] if r["name"] == "shout.txt")
    assert Path(shout["path"]).read_text() == "HELLO, COMPUTE-TO-DATA!\n"

    # The same results through the Python SDK: every file, byte for byte.
    with Client(node.address, key) as client:
        for job in jobs:
            (info,) = client.status(job_id=job["jobId"])
            assert sorted(r["index"] for r in job["results"]) == sorted(f.index for f in info.results)
            python_dir = tmp_path / "python" / job["jobId"]
            for path in client.results(job["jobId"], python_dir):
                ours = next(r for r in job["results"] if Path(r["name"]).name == path.name)
                data = Path(ours["path"]).read_bytes()
                assert data == path.read_bytes()
                assert hashlib.sha256(data).hexdigest() == ours["sha256"]
