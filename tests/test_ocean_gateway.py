"""The Ocean-compatible HTTP API, with ocean.js 8 itself and with bad input from Python.

ocean.js (tests/oceanjs, ``npm ci`` there, which scripts/setup-dev runs) lists the environments,
initializes, runs a free job with raw code over examples/dataset.json (registered by the
operator), polls its status to the end, downloads every result by index (one resumed with a
Range) and the log, and stops a running job: against a real node with the stub engine. Skipped
without ``node`` or the npm modules, failed under CI.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from host.web.ocean import shapes
from nodeproc import NodeProcess
from oceanhttp import (
    API,
    DID,
    ENV,
    SERVICE,
    Ocean,
    ocean_node,
    ocean_signature,
    oceanjs,
    oceanjs_binary,
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with ocean_node(tmp_path_factory.mktemp("node")) as node:
        yield node


@pytest.fixture(scope="module")
def base(node: NodeProcess) -> str:
    return f"http://{node.http_address()}"


@pytest.fixture(scope="module")
def node_binary() -> str:
    return oceanjs_binary()


# -- ocean.js ------------------------------------------------------------------------------


def test_oceanjs_runs_a_free_job_over_a_registered_dataset_and_downloads_its_results(
    node_binary: str, node: NodeProcess, base: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "me.key"
    key = auth.new_private_key()
    key_file.write_text(key + "\n")
    out = tmp_path / "out"
    summary = oceanjs(
        node_binary, "run", "--node", base, "--key-file", str(key_file), "--env", ENV,
        "--did", DID, "--service", SERVICE, "--out", str(out),
    )  # fmt: skip
    assert ENV in summary["environments"]
    assert summary["quote"]["freeEligible"] is True and "payment" not in summary["quote"]
    started, ended = summary["started"], summary["ended"]
    assert started["owner"] == auth.address_of(key) and started["status"] in (0, 1, 10, 20, 30, 40)
    assert ended["jobId"] == started["jobId"] and ended["metadata"] == {"from": "ocean.js"}
    assert (ended["status"], ended["statusText"]) == (70, "Job finished")
    assert ended["terminationDetails"] == {"OOMKilled": False, "exitCode": 0}
    assert float(ended["algoStartTimestamp"]) > 0
    assert float(ended["algoStopTimestamp"]) >= float(ended["algoStartTimestamp"])

    by_type = {r["type"]: r for r in summary["results"]}
    output = by_type["output"]  # the outputs folder, as one archive
    assert output["downloaded"] == output["filesize"]
    assert output["resumedFrom"] > 0 and output["resumedMatches"] is True
    with zipfile.ZipFile(output["path"]) as archive:
        names = {Path(n).name: n for n in archive.namelist()}
        assert archive.read(names["lines.txt"]).decode().strip() == "11"  # examples/data/numbers.csv
        assert archive.read(names["sequence.txt"]).decode().split() == [str(i) for i in range(1, 2001)]
    assert "ocean.js: counting lines" in Path(by_type["algorithmLog"]["path"]).read_text()
    assert "ocean.js: counting lines" in summary["log"]

    # The same job and bytes through the gRPC face: one Ocean job is one one-stage workflow.
    with Client(node.address, key) as client:
        (info,) = client.status(job_id=started["jobId"])
        assert info.workflow_id == started["workflowId"] and info.stage_index == 0
        grpc_dir = tmp_path / "grpc"
        for path in client.results(started["jobId"], grpc_dir):
            if path.name == "outputs.zip":
                assert path.read_bytes() == Path(output["path"]).read_bytes()


def test_oceanjs_stops_a_running_job(node_binary: str, base: str, tmp_path: Path) -> None:
    key_file = tmp_path / "me.key"
    key_file.write_text(auth.new_private_key() + "\n")
    summary = oceanjs(node_binary, "stop", "--node", base, "--key-file", str(key_file), "--env", ENV)
    assert [j["jobId"] for j in summary["stopped"]] == [summary["started"]["jobId"]]
    assert summary["ended"]["status"] == 70
    assert summary["ended"]["statusText"] == "Job finished: stopped"


def test_oceanjs_runs_a_free_job_with_an_auth_token(node_binary: str, base: str, tmp_path: Path) -> None:
    """ocean.js's generateAuthToken, then the token in place of the wallet: a free job over the
    dataset, its status, results, log and a stop; invalidateAuthToken, and the token is refused."""
    key_file = tmp_path / "me.key"
    key = auth.new_private_key()
    key_file.write_text(key + "\n")
    summary = oceanjs(
        node_binary, "token", "--node", base, "--key-file", str(key_file), "--env", ENV,
        "--did", DID, "--service", SERVICE,
    )  # fmt: skip
    assert summary["token"].count(".") == 2  # a JWT, whose address ocean.js read to sign requests with
    started, ended = summary["started"], summary["ended"]
    assert started["owner"] == auth.address_of(key) and ended["jobId"] == started["jobId"]
    assert (ended["status"], ended["statusText"]) == (70, "Job finished")
    by_type = {r["type"]: r for r in summary["results"]}
    assert {"output", "algorithmLog"} <= set(by_type)
    for result in summary["results"]:
        assert (result["httpStatus"], result["downloaded"]) == (200, result["filesize"])
    assert "401" in summary["withoutHeader"]  # ocean.js's getComputeResult sends no token: refused
    assert "ocean.js: with a token" in summary["log"]
    assert [j["jobId"] for j in summary["stopped"]] == [summary["stoppedEnd"]["jobId"]]
    assert summary["stoppedEnd"]["statusText"] == "Job finished: stopped"
    assert summary["invalidated"] == {"success": True}
    assert "revoked" in summary["afterInvalidation"]


# -- the node's description, nonces, environments --------------------------------------------


def test_the_root_lists_every_route_as_ocean_node_does(node: NodeProcess, base: str) -> None:
    root = requests.get(f"{base}/", timeout=10).json()
    assert root["providerAddress"] == auth.address_of(node.node_key())
    assert root["serviceEndpoints"]["freeCompute"] == ["POST", f"{API}/freeCompute"]
    assert root["serviceEndpoints"]["computeStop"] == ["PUT", f"{API}/compute"]
    assert root["serviceEndpoints"]["computeStatus"] == ["GET", f"{API}/compute"]
    assert root["nodePublicKey"].startswith("0x") and len(root["nodePublicKey"]) == 68


def test_the_nonce_rises_with_each_signed_call_on_either_face(node: NodeProcess, base: str) -> None:
    ocean = Ocean(base)
    assert ocean.nonce() == 0
    assert ocean.free_start().status_code == 200
    assert ocean.nonce() == 1
    with Client(node.address, ocean.key) as client:  # the gRPC face's nonce is the same one
        client.status(all=True)
    assert ocean.nonce() > 1


def test_environments_have_ocean_node_s_shape(base: str) -> None:
    (env,) = [
        e for e in requests.get(f"{base}{API}/computeEnvironments", timeout=10).json() if e["id"] == ENV
    ]
    assert {r["id"] for r in env["resources"]} >= {"cpu", "ram", "disk"}
    cpu = next(r for r in env["resources"] if r["id"] == "cpu")
    assert cpu["total"] == 2 and cpu["type"] == "cpu"
    assert env["free"]["maxJobDuration"] > 0
    assert {"runningJobs", "queuedJobs", "queuedFreeJobs", "platform", "fees", "access"} <= set(env)


def test_a_signature_of_the_hash_as_hex_text_is_accepted(base: str) -> None:
    ocean = Ocean(base)
    nonce = ocean.nonce() + 1
    signature = ocean_signature(ocean.key, ocean.address, nonce, "freeStartCompute", as_hex_text=True)
    started = ocean.free_start(nonce=str(nonce), signature=signature)
    assert started.status_code == 200, started.text


def test_status_unsigned_is_of_one_job_of_that_address(base: str) -> None:
    ocean = Ocean(base)
    (job,) = ocean.free_start().json()
    status = requests.get(
        f"{base}{API}/compute", params={"consumerAddress": ocean.address, "jobId": job["jobId"]}, timeout=10
    )
    assert [j["jobId"] for j in status.json()] == [job["jobId"]]
    listing = requests.get(f"{base}{API}/compute", params={"consumerAddress": ocean.address}, timeout=10)
    assert listing.status_code == 400 and "sign" in listing.json()["error"]
    signed = requests.get(f"{base}{API}/compute", params=ocean.signed("getComputeStatus"), timeout=10)
    assert [j["jobId"] for j in signed.json()] == [job["jobId"]]


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"environment": None}, 400, '"environment"'),
        ({"environment": "no-such-env"}, 400, "no-such-env"),
        ({"algorithm": None}, 400, "algorithm must be a JSON object"),
        ({"algorithm": {"meta": {"container": {"image": "busybox"}}}}, 400, "rawcode"),
        ({"datasets": [{"serviceId": "compute"}]}, 400, '"datasets[0].documentId"'),
        ({"datasets": [{"documentId": "did:op:nobody"}]}, 404, "did:op:nobody"),
        ({"datasets": "all"}, 400, "datasets must be a JSON array"),
        ({"maxJobDuration": -1}, 400, "maxJobDuration"),
        ({"maxJobDuration": True}, 400, "maxJobDuration"),
        ({"resources": [{"id": "cpu", "amount": "lots"}]}, 400, "amount must be a number"),
        ({"output": {"remoteStorage": {}}}, 400, "output is not supported"),
        ({"metadata": {"big": "x" * 2000}}, 400, "metadata"),
        ({"consumerAddress": "0x1234"}, 400, "not an Ethereum address"),
        ({"nonce": "one"}, 401, "nonce"),
        ({"signature": "0x" + "00" * 65}, 401, "signature"),
        ({"signature": None}, 401, "signature"),
    ],
)
def test_bad_start_requests_are_refused_with_a_json_error(
    base: str, change: dict[str, Any], status: int, words: str
) -> None:
    ocean = Ocean(base)
    response = ocean.free_start(**change)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'{"environment": NaN}', b"[" * 5000 + b"]" * 5000, b"\xff\xfe"],
)
def test_bodies_that_are_not_json_objects_are_400(base: str, body: bytes) -> None:
    for route in ("freeCompute", "initializeCompute"):
        response = requests.post(
            f"{base}{API}/{route}", data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert response.status_code == 400, (route, body[:20], response.text)
        assert response.json()["error"]


def test_nonce_needs_an_address(base: str) -> None:
    assert requests.get(f"{base}{API}/nonce", timeout=10).status_code == 400
    bad = requests.get(f"{base}{API}/nonce", params={"userAddress": "me"}, timeout=10)
    assert bad.status_code == 400 and "Ethereum address" in bad.json()["error"]


def test_results_refuse_a_bad_index_and_range(base: str) -> None:
    ocean = Ocean(base)
    (job,) = ocean.free_start().json()
    ocean.ended(job["jobId"])
    params = {"jobId": job["jobId"], "index": "x", **ocean.signed("getComputeResult")}
    assert requests.get(f"{base}{API}/computeResult", params=params, timeout=10).status_code == 400
    params = {"jobId": job["jobId"], "index": "0", **ocean.signed("getComputeResult")}
    ranged = requests.get(
        f"{base}{API}/computeResult", params=params, headers={"Range": "lines=1-2"}, timeout=10
    )
    assert ranged.status_code == 400 and "Range" in ranged.json()["error"]


def test_a_paid_start_on_a_node_without_a_chain_is_refused_clearly(base: str) -> None:
    ocean = Ocean(base)
    body = {
        "environment": ENV,
        "algorithm": {"meta": {"rawcode": "echo hi\n", "container": {"image": "busybox", "tag": "1"}}},
        "payment": {"chainId": 8996, "token": "0x" + "11" * 20},
        **ocean.signed("startCompute"),
    }
    response = requests.post(f"{base}{API}/compute", json=body, timeout=10)
    assert response.status_code == 400 and "takes no payments" in response.json()["error"]
    unpaid = requests.post(f"{base}{API}/compute", json={**body, "payment": None}, timeout=10)
    assert unpaid.status_code == 400 and '"payment"' in unpaid.json()["error"]


def test_the_log_streams_while_the_job_runs_and_ends_with_it(base: str) -> None:
    ocean = Ocean(base)
    (job,) = ocean.free_start('echo "first line"; sleep 600\n').json()
    params = {"jobId": job["jobId"], **ocean.signed("getComputeStreamableLogs")}
    with requests.get(f"{base}{API}/computeStreamableLogs", params=params, stream=True, timeout=60) as stream:
        assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/plain")
        chunks = stream.iter_content(chunk_size=None)
        seen = b""
        while b"first line" not in seen:
            seen += next(chunks)
        stop = requests.put(
            f"{base}{API}/compute", params={"jobId": job["jobId"], **ocean.signed("stopCompute")}
        )
        assert stop.status_code == 200
        for _ in chunks:  # the stream ends once the job has
            pass
    assert ocean.ended(job["jobId"])["statusText"] == "Job finished: stopped"


def test_initialize_validates_and_says_whether_the_free_tier_fits(base: str) -> None:
    body = {
        "environment": ENV,
        "datasets": [{"documentId": DID, "serviceId": SERVICE}],
        "algorithm": {
            "meta": {
                "rawcode": "echo",
                "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
            }
        },
        "payment": {"chainId": 0, "token": "", "resources": [{"id": "cpu", "amount": 1}]},
    }
    fits = requests.post(f"{base}{API}/initializeCompute", json=body, timeout=10)
    assert fits.status_code == 200 and fits.json()["freeEligible"] is True
    out_of_range = requests.post(
        f"{base}{API}/initializeCompute", json={**body, "maxJobDuration": 10**9}, timeout=10
    )
    assert out_of_range.status_code == 400 and "out of range" in out_of_range.json()["error"]
    unknown = requests.post(
        f"{base}{API}/initializeCompute",
        json={**body, "datasets": [{"documentId": "did:op:none"}]},
        timeout=10,
    )
    assert unknown.status_code == 404 and "did:op:none" in unknown.json()["error"]


@pytest.mark.parametrize("status", list(common_pb2.JobStatus.values()))
def test_every_status_has_an_ocean_number_and_text(status: int) -> None:
    number, text = shapes.ocean_status(status)
    assert number in shapes.OCEAN_TEXT and text.startswith(shapes.OCEAN_TEXT[number].strip())
    if status in shapes.OCEAN_TEXT:
        assert number == status  # the numbers below 100 are Ocean's own
