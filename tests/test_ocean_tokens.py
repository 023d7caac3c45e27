"""Ocean's auth tokens through a real node over HTTP: POST /api/services/auth/token gives a JWT
for a createAuthToken signature, which then stands in for nonce and signature on every signed
route of the Ocean face until it expires or its owner revokes it (auth/token/invalidate).

ocean.js's own use of a token (generateAuthToken, then a free job, its status, results and logs
with it) is tests/test_ocean_gateway.py::test_oceanjs_runs_a_free_job_with_an_auth_token; the
attacks on tokens are in tests/security/test_ocean_gateway_attacks.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import requests

from c2d.compute.v1 import compute_pb2
from host.web.ocean import tokens
from nodeproc import NodeProcess, running_node
from oceanhttp import API, ENV, Ocean, ocean_node, ocean_signature

pytestmark = pytest.mark.timeout(240)
DAY = 24 * 3600


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with ocean_node(tmp_path_factory.mktemp("node")) as node:
        yield node


@pytest.fixture(scope="module")
def base(node: NodeProcess) -> str:
    return f"http://{node.http_address()}"


def claims_of(token: str) -> dict[str, Any]:
    """What ocean.js reads of a token: its claims, unverified."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def start_with(ocean: Ocean, token: str, rawcode: str = "echo hi\n", **body: Any) -> requests.Response:
    """A free start as ocean.js sends it with a token: consumerAddress, no nonce or signature."""
    payload = {
        "environment": ENV,
        "datasets": [],
        "algorithm": {
            "meta": {
                "rawcode": rawcode,
                "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1.36"},
            }
        },
        "consumerAddress": ocean.address,
        **body,
    }
    return requests.post(ocean.url("freeCompute"), json=payload, headers={"Authorization": token}, timeout=30)


def test_the_root_lists_the_token_routes(base: str) -> None:
    endpoints = requests.get(f"{base}/", timeout=10).json()["serviceEndpoints"]
    assert endpoints["generateAuthToken"] == ["POST", f"{API}/auth/token"]
    assert endpoints["invalidateAuthToken"] == ["POST", f"{API}/auth/token/invalidate"]


def test_a_token_is_a_jwt_of_the_signer_that_lasts_a_day_by_default(base: str) -> None:
    ocean = Ocean(base)
    before = time.time()
    token = ocean.token()
    after = time.time()
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = claims_of(token)
    assert claims["address"] == ocean.address.lower() and claims["nonce"] == "1"
    assert int(before) + DAY <= claims["exp"] <= after + DAY
    assert before * 1000 - 1 <= claims["createdAt"] <= after * 1000 + 1
    assert len(claims["jti"]) == 32
    assert ocean.nonce() == 1  # creating a token is a signed call: it spent its nonce
    assert ocean.token() != token  # each token is a token of its own (its jti)


def test_valid_until_is_milliseconds_since_the_epoch_capped_at_thirty_days(base: str) -> None:
    ocean = Ocean(base)
    in_an_hour = int(time.time() * 1000) + 3600 * 1000
    assert claims_of(ocean.token(validUntil=in_an_hour))["exp"] == in_an_hour // 1000
    assert claims_of(ocean.token(validUntil=str(in_an_hour)))["exp"] == in_an_hour // 1000
    in_a_year = int(time.time() * 1000) + 365 * DAY * 1000
    before = time.time()
    capped = claims_of(ocean.token(validUntil=in_a_year))["exp"]
    assert int(before) + tokens.MAX_SECONDS <= capped <= time.time() + tokens.MAX_SECONDS
    assert claims_of(ocean.token(chainId="8996"))["exp"] > 0  # chainId is taken, as ocean-node's


def test_a_token_stands_in_for_nonce_and_signature_on_every_signed_route(base: str) -> None:
    ocean = Ocean(base)
    token = ocean.token()
    spent = ocean.nonce()
    headers = {"Authorization": token}
    (job,) = start_with(ocean, token, 'echo "with a token"; echo out > "$C2D_DATA/outputs/o.txt"\n').json()
    assert job["owner"] == ocean.address
    ended = ocean.ended(job["jobId"])
    listing = requests.get(  # listing every job needs a signature, or a token
        f"{base}{API}/compute", params={"consumerAddress": ocean.address}, headers=headers, timeout=10
    )
    assert [j["jobId"] for j in listing.json()] == [job["jobId"]]
    params = {"consumerAddress": ocean.address, "jobId": job["jobId"]}
    for result in ended["results"]:
        got = requests.get(
            f"{base}{API}/computeResult",
            params={**params, "index": result["index"]},
            headers=headers,
            timeout=10,
        )
        assert got.status_code == 200 and len(got.content) == result["filesize"]
    log = requests.get(f"{base}{API}/computeStreamableLogs", params=params, headers=headers, timeout=30)
    assert log.status_code == 200 and "with a token" in log.text
    (running,) = start_with(ocean, f"Bearer {token}", "sleep 600\n").json()  # the Bearer form works too
    stop = requests.put(
        f"{base}{API}/compute", params={**params, "jobId": running["jobId"]}, headers=headers, timeout=10
    )
    assert stop.status_code == 200, stop.text
    assert ocean.ended(running["jobId"])["statusText"] == "Job finished: stopped"
    assert ocean.nonce() == spent  # a token spends no nonce


def test_a_token_without_consumer_address_acts_for_its_own(base: str) -> None:
    ocean = Ocean(base)
    response = start_with(ocean, ocean.token(), consumerAddress=None)
    assert response.status_code == 200 and response.json()[0]["owner"] == ocean.address


def test_an_invalidated_token_is_refused_from_then_on_and_others_still_work(base: str) -> None:
    ocean = Ocean(base)
    token, other = ocean.token(), ocean.token()
    revoked = ocean.invalidate(token)
    assert revoked.status_code == 200 and revoked.json() == {"success": True}
    refused = start_with(ocean, token)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert start_with(ocean, other).status_code == 200
    assert ocean.invalidate(token).status_code == 200  # again: still revoked, no error


def test_invalidation_signed_as_ocean_js_8_signs_it_is_accepted(base: str) -> None:
    """ocean.js 8.6.2's invalidateAuthToken signs address + nonce, without the command."""
    ocean = Ocean(base)
    token = ocean.token()
    nonce = ocean.nonce() + 1
    body = {
        "address": ocean.address,
        "nonce": str(nonce),
        "signature": ocean_signature(ocean.key, ocean.address, nonce, ""),
        "token": token,
    }
    assert requests.post(ocean.url("auth/token/invalidate"), json=body, timeout=10).status_code == 200
    assert start_with(ocean, token).status_code == 401


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"address": None}, 400, '"address"'),
        ({"address": "0x1234"}, 400, "not an Ethereum address"),
        ({"validUntil": 1000}, 400, "not in the future"),
        ({"validUntil": "tomorrow"}, 400, "validUntil"),
        ({"validUntil": True}, 400, "validUntil"),
        ({"chainId": "main"}, 400, "chainId"),
        ({"nonce": "one"}, 401, "nonce"),
        ({"signature": "0x" + "00" * 65}, 401, "signature"),
        ({"signature": None}, 401, "signature"),
    ],
)
def test_bad_token_requests_are_refused_and_spend_no_nonce(
    base: str, change: dict[str, Any], status: int, words: str
) -> None:
    ocean = Ocean(base)
    response = ocean.create_token(**change)
    assert response.status_code == status, response.text
    assert words in response.json()["error"] and "Traceback" not in response.text
    assert ocean.nonce() == 0


@pytest.mark.parametrize("route", ["auth/token", "auth/token/invalidate"])
@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b"\xff"])
def test_token_bodies_that_are_not_json_objects_are_400(base: str, route: str, body: bytes) -> None:
    response = requests.post(
        f"{base}{API}/{route}", data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 400 and response.json()["error"]


def test_a_token_is_not_a_sign_in_on_the_grpc_face_or_the_dashboard(node: NodeProcess, base: str) -> None:
    ocean = Ocean(base)
    token = ocean.token()
    with pytest.raises(grpc.RpcError) as refused:
        node.compute.GetComputeStatus(
            compute_pb2.GetComputeStatusRequest(), metadata=[("authorization", token)], timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for header in (token, f"Bearer {token}"):
        page = requests.get(
            f"{base}/dashboard/", headers={"Authorization": header}, allow_redirects=False, timeout=10
        )
        assert page.status_code == 303 and page.headers["Location"].endswith("/login")


def test_the_operator_sets_how_long_tokens_last(tmp_path: Path) -> None:
    env = {"C2D_HTTP__TOKEN_HOURS": "2", "C2D_HTTP__TOKEN_MAX_HOURS": "3"}
    with running_node(tmp_path / "node", env=env) as node:
        ocean = Ocean(f"http://{node.http_address()}")
        before = time.time()
        default = claims_of(ocean.token())["exp"]
        in_a_day = int(time.time() * 1000) + DAY * 1000
        capped = claims_of(ocean.token(validUntil=in_a_day))["exp"]
        after = time.time()
    assert int(before) + 2 * 3600 <= default <= after + 2 * 3600
    assert int(before) + 3 * 3600 <= capped <= after + 3 * 3600
