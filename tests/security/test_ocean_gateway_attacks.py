"""The Ocean-compatible HTTP API faces strangers as the gRPC API does: no call on a signature that
is not the caller's, over another command, or replayed; nothing of another consumer's jobs (not
found, never forbidden); viewers read and never stop; bounded bodies and ranges; auth tokens that
act for their own address only and cannot be forged, outlived or revived; every refusal a short
JSON error with the defensive headers, never a traceback or a 500."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oceanescrow import OceanEscrow, deploy_ocean_escrow, ocean_env
from paidnode import DEPOSIT, fund_node, stub_env
from paidnode import ENV as PAID_ENV

from c2d import auth
from c2d.client import Client
from host.chain.devchain import DevChain
from host.identity import NodeIdentity
from host.web.ocean import tokens
from host.web.ocean.gateway import MAX_BODY_BYTES
from host.web.server import SECURITY_HEADERS
from nodeproc import NodeProcess
from oceanhttp import API, ENV, Ocean, ocean_node, ocean_signature

pytestmark = pytest.mark.timeout(240)
SLEEPER = "echo started; sleep 600\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with ocean_node(tmp_path_factory.mktemp("node")) as node:
        yield node


@pytest.fixture(scope="module")
def base(node: NodeProcess) -> str:
    return f"http://{node.http_address()}"


@pytest.fixture(scope="module")
def victim_job(base: str) -> tuple[Ocean, str]:
    """A finished job of one consumer, with results and a log."""
    victim = Ocean(base)
    (job,) = victim.free_start('echo secret > "$C2D_DATA/outputs/secret.txt"\n').json()
    victim.ended(job["jobId"])
    return victim, job["jobId"]


def refused(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    for name in ("X-Content-Type-Options", "Cache-Control"):
        assert response.headers[name] == SECURITY_HEADERS[name]
    assert "Traceback" not in response.text
    message: str = response.json()["error"]
    return message


# -- signatures and nonces ---------------------------------------------------------------


def test_a_signature_by_another_key_is_refused_and_spends_no_nonce(base: str) -> None:
    me, mallory = Ocean(base), Ocean(base)
    nonce = me.nonce() + 1
    forged = ocean_signature(mallory.key, me.address, nonce, "freeStartCompute")
    assert "mismatch" in refused(me.free_start(nonce=str(nonce), signature=forged), 401)
    assert me.nonce() == nonce - 1


def test_a_signature_for_another_command_is_refused(base: str, victim_job: tuple[Ocean, str]) -> None:
    victim, job_id = victim_job
    params = {"jobId": job_id, **victim.signed("getComputeResult")}  # a result download's signature...
    stop = requests.put(f"{base}{API}/compute", params=params, timeout=10)  # ...replayed as a stop
    assert "mismatch" in refused(stop, 401)


@pytest.mark.parametrize(
    ("method", "route", "command", "extra"),
    [
        ("get", "computeResult", "getComputeResult", {"index": "0"}),
        ("get", "computeStreamableLogs", "getComputeStreamableLogs", {}),
        ("get", "compute", "getComputeStatus", {}),
    ],
)
def test_a_replayed_request_is_refused(
    base: str, victim_job: tuple[Ocean, str], method: str, route: str, command: str, extra: dict[str, str]
) -> None:
    victim, job_id = victim_job
    params = {"jobId": job_id, **extra, **victim.signed(command)}
    first = requests.request(method, f"{base}{API}/{route}", params=params, timeout=30)
    assert first.status_code == 200, first.text
    again = requests.request(method, f"{base}{API}/{route}", params=params, timeout=30)
    assert "not a valid nonce" in refused(again, 401)


def test_a_nonce_used_on_the_grpc_face_is_stale_here(node: NodeProcess, base: str) -> None:
    me = Ocean(base)
    with Client(node.address, me.key) as client:
        client.status(all=True)  # the gRPC client's nonce: microseconds since the epoch
    last = me.nonce()
    assert last > 0
    stale = me.free_start(**me.signed("freeStartCompute", nonce=last))
    assert "must be greater than" in refused(stale, 401)


@pytest.mark.parametrize("nonce", ["-1", "1.5", "0x10", "9" * 30, "", " 1"])
def test_malformed_nonces_are_refused(base: str, nonce: str) -> None:
    me = Ocean(base)
    refused(
        me.free_start(nonce=nonce, signature=ocean_signature(me.key, me.address, nonce, "freeStartCompute")),
        401,
    )


@pytest.mark.parametrize("signature", ["0x", "0x" + "zz" * 65, "0x" + "11" * 64, "0x" + "ff" * 65, 12])
def test_malformed_signatures_are_refused(base: str, signature: Any) -> None:
    refused(Ocean(base).free_start(signature=signature), 401)


# -- other consumers' jobs ----------------------------------------------------------------


def test_another_consumer_s_job_is_not_found_on_every_route(base: str, victim_job: tuple[Ocean, str]) -> None:
    _, job_id = victim_job
    mallory = Ocean(base)
    status = requests.get(
        f"{base}{API}/compute", params={"consumerAddress": mallory.address, "jobId": job_id}, timeout=10
    )
    assert job_id in refused(status, 404)
    signed_status = requests.get(
        f"{base}{API}/compute", params=mallory.signed("getComputeStatus"), timeout=10
    )
    assert signed_status.json() == []
    result = {"jobId": job_id, "index": "0", **mallory.signed("getComputeResult")}
    refused(requests.get(f"{base}{API}/computeResult", params=result, timeout=10), 404)
    logs = {"jobId": job_id, **mallory.signed("getComputeStreamableLogs")}
    refused(requests.get(f"{base}{API}/computeStreamableLogs", params=logs, timeout=10), 404)
    stop = {"jobId": job_id, **mallory.signed("stopCompute")}
    refused(requests.put(f"{base}{API}/compute", params=stop, timeout=10), 404)


def test_a_viewer_reads_but_does_not_stop(base: str) -> None:
    owner, viewer = Ocean(base), Ocean(base)
    (job,) = owner.free_start(SLEEPER, additionalViewers=[viewer.address]).json()
    assert viewer.status(job["jobId"])["jobId"] == job["jobId"]
    stop = {"jobId": job["jobId"], **viewer.signed("stopCompute")}
    assert "owner" in refused(requests.put(f"{base}{API}/compute", params=stop, timeout=10), 403)
    stopped = requests.put(
        f"{base}{API}/compute", params={"jobId": job["jobId"], **owner.signed("stopCompute")}, timeout=10
    )
    assert stopped.status_code == 200


# -- sizes and ranges ---------------------------------------------------------------------


def test_bodies_are_bounded(base: str) -> None:
    me = Ocean(base)
    big = me.free_start("#" + "x" * MAX_BODY_BYTES)
    assert "larger than" in refused(big, 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bound holds on what arrives
        yield b'{"environment": "'
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b"x" * 4096
        yield b'"}'

    streamed = requests.post(f"{base}{API}/freeCompute", data=chunks(), timeout=30)
    refused(streamed, 413)


def test_deep_json_is_refused_not_crashed(base: str) -> None:
    me = Ocean(base)
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": deep}
    refused(me.free_start(metadata=deep), 400)
    refused(
        me.free_start(algorithm={"meta": {"rawcode": "echo", "container": {}}, "algocustomdata": deep}), 400
    )


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=999999999-", 416),
        ("bytes=-5", 400),
        ("bytes=5-2", 400),
        ("bytes=0-1,3-4", 400),
        ("pages=1-", 400),
    ],
)
def test_hostile_ranges_are_refused(
    base: str, victim_job: tuple[Ocean, str], header: str, status: int
) -> None:
    victim, job_id = victim_job
    params = {"jobId": job_id, "index": "0", **victim.signed("getComputeResult")}
    response = requests.get(
        f"{base}{API}/computeResult", params=params, headers={"Range": header}, timeout=10
    )
    refused(response, status)


def test_a_range_is_answered_with_its_part(base: str, victim_job: tuple[Ocean, str]) -> None:
    victim, job_id = victim_job
    url = f"{base}{API}/computeResult"
    whole = requests.get(
        url, params={"jobId": job_id, "index": "0", **victim.signed("getComputeResult")}, timeout=10
    )
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(
        url,
        params={"jobId": job_id, "index": "0", **victim.signed("getComputeResult")},
        headers={"Range": "bytes=2-5"},
        timeout=10,
    )
    assert part.status_code == 206 and part.content == whole.content[2:6]
    assert part.headers["Content-Range"] == f"bytes 2-5/{len(whole.content)}"


def test_an_index_past_the_results_is_not_found(base: str, victim_job: tuple[Ocean, str]) -> None:
    victim, job_id = victim_job
    for index in ("99", "999999999"):
        params = {"jobId": job_id, "index": index, **victim.signed("getComputeResult")}
        refused(requests.get(f"{base}{API}/computeResult", params=params, timeout=10), 404)
    params = {"jobId": job_id, "index": "9" * 12, **victim.signed("getComputeResult")}
    refused(requests.get(f"{base}{API}/computeResult", params=params, timeout=10), 400)


def test_the_dashboard_s_session_cookie_is_no_key_here(base: str, victim_job: tuple[Ocean, str]) -> None:
    victim, job_id = victim_job
    cookies = {"c2d_session": "anything"}
    params = {"jobId": job_id, "index": "0", "consumerAddress": victim.address}
    refused(requests.get(f"{base}{API}/computeResult", params=params, cookies=cookies, timeout=10), 401)
    assert auth.address_of(victim.key) == victim.address


# -- auth tokens --------------------------------------------------------------------------


def with_token(
    method: str, base: str, route: str, token: str, params: dict[str, Any] | None = None, **kwargs: Any
) -> requests.Response:
    return requests.request(
        method, f"{base}{API}/{route}", params=params, headers={"Authorization": token}, timeout=30, **kwargs
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature, as an attacker writes one."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def claims_for(address: str, **change: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "address": address.lower(),
        "nonce": "1",
        "createdAt": now * 1000,
        "exp": now + 3600,
        "jti": secrets.token_hex(16),
        **change,
    }


def test_a_token_acts_for_its_own_address_only(base: str) -> None:
    """ocean-node takes any consumerAddress next to a valid token; here it must be the token's."""
    mallory, victim = Ocean(base), Ocean(base)
    (job,) = victim.free_start(SLEEPER).json()
    token = mallory.token()
    as_victim = {"consumerAddress": victim.address, "jobId": job["jobId"]}
    algorithm = {"meta": {"rawcode": "echo", "container": {"image": "busybox", "tag": "1"}}}
    body: dict[str, Any] = {"environment": ENV, "datasets": [], "algorithm": algorithm}
    body["consumerAddress"] = victim.address
    attempts = [
        with_token("post", base, "freeCompute", token, json=body),
        with_token("get", base, "compute", token, {"consumerAddress": victim.address}),
        with_token("get", base, "compute", token, as_victim),
        with_token("get", base, "computeResult", token, {**as_victim, "index": "0"}),
        with_token("get", base, "computeStreamableLogs", token, as_victim),
        with_token("put", base, "compute", token, as_victim),
    ]
    for response in attempts:
        assert "token's address" in refused(response, 401)
    own = with_token(
        "put", base, "compute", token, {"consumerAddress": mallory.address, "jobId": job["jobId"]}
    )
    refused(own, 404)  # as itself, the job is another consumer's: not found
    listing = requests.get(f"{base}{API}/compute", params=victim.signed("getComputeStatus"), timeout=10)
    (only,) = listing.json()  # nothing was started in the victim's name, and its job still runs
    assert only["jobId"] == job["jobId"] and only["isRunning"] is True


FORGERIES = (
    "alg none",
    "another key",
    "HS256 keyed with the node's public key",
    "HS256 keyed with the node's address",
    "RS256",
    "ES256K with the node key itself",
    "claims swapped under a valid signature",
    "expired",
    "no jti",
    "address not an address",
    "not a JWT",
    "three dots",
    "empty",
    "too long",
)


def forgery(kind: str, node: NodeProcess, genuine: str, victim: str) -> str:
    """A token an attacker could make, of the victim's address, by ``kind`` (:data:`FORGERIES`)."""
    node_key = node.node_key()
    identity = NodeIdentity(private_key=node_key, address=auth.address_of(node_key))
    right_key = tokens.token_key(identity)
    claims = claims_for(victim)
    if kind == "alg none":
        return unsigned_jwt(claims)
    if kind == "another key":
        return jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")
    if kind == "HS256 keyed with the node's public key":
        return jwt.encode(claims, "0x" + identity.public_key.hex(), algorithm="HS256")
    if kind == "HS256 keyed with the node's address":
        return jwt.encode(claims, identity.address.encode().ljust(32, b"\0"), algorithm="HS256")
    if kind == "RS256":
        return jwt.encode(
            claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"
        )
    if kind == "ES256K with the node key itself":
        signer = ec.derive_private_key(int(node_key.removeprefix("0x"), 16), ec.SECP256K1())
        return jwt.encode(claims, signer, algorithm="ES256K")
    if kind == "claims swapped under a valid signature":
        header, _, signature = genuine.split(".")
        return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    if kind == "expired":
        return jwt.encode(claims_for(victim, exp=int(time.time()) - 60), right_key, algorithm="HS256")
    if kind == "no jti":
        return jwt.encode({k: v for k, v in claims.items() if k != "jti"}, right_key, algorithm="HS256")
    if kind == "address not an address":
        return jwt.encode(claims_for("me"), right_key, algorithm="HS256")
    return {"not a JWT": "token", "three dots": "a.b.c", "empty": "", "too long": "a" * 3000}[kind]


@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_tokens_are_refused(node: NodeProcess, base: str, kind: str) -> None:
    attacker, victim = Ocean(base), Ocean(base)
    (job,) = victim.free_start(SLEEPER).json()
    token = forgery(kind, node, attacker.token(), victim.address)
    params = {"consumerAddress": victim.address, "jobId": job["jobId"]}
    message = refused(with_token("put", base, "compute", token, params), 401)
    assert len(message) < 200
    if kind == "expired":
        assert "expired" in message
    refused(with_token("get", base, "compute", token, {"consumerAddress": victim.address}), 401)
    assert victim.status(job["jobId"])["isRunning"] is True


def test_a_replayed_create_token_request_is_refused(base: str) -> None:
    me = Ocean(base)
    signed = me.signed("createAuthToken")
    body = {"address": me.address, "nonce": signed["nonce"], "signature": signed["signature"]}
    first = requests.post(me.url("auth/token"), json=body, timeout=10)
    assert first.status_code == 200, first.text
    again = requests.post(me.url("auth/token"), json=body, timeout=10)
    assert "not a valid nonce" in refused(again, 401)
    as_start = me.free_start(**me.signed("createAuthToken"))  # a token request's signature as a start
    assert "mismatch" in refused(as_start, 401)
    start = me.signed("freeStartCompute")  # and a start's as a token request
    other = {"address": me.address, "nonce": start["nonce"], "signature": start["signature"]}
    assert "mismatch" in refused(requests.post(me.url("auth/token"), json=other, timeout=10), 401)


def test_a_token_is_revoked_by_its_own_address_only(base: str) -> None:
    owner, mallory = Ocean(base), Ocean(base)
    token = owner.token()
    assert "own address" in refused(mallory.invalidate(token), 403)
    assert mallory.nonce() == 0  # refused before the signature: no nonce spent
    by_another_key = {
        "signature": ocean_signature(mallory.key, owner.address, owner.nonce() + 1, "invalidateAuthToken")
    }
    assert "mismatch" in refused(owner.invalidate(token, **by_another_key), 401)
    assert with_token("get", base, "compute", token, {"consumerAddress": owner.address}).status_code == 200


def test_revoked_tokens_stay_revoked_after_a_restart_and_live_ones_still_work(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data_dir = tmp_path_factory.mktemp("restarted")
    with ocean_node(data_dir) as first:
        me = Ocean(f"http://{first.http_address()}")
        revoked, live = me.token(), me.token()
        assert me.invalidate(revoked).status_code == 200
    with ocean_node(data_dir, register=False) as again:
        base = f"http://{again.http_address()}"
        params = {"consumerAddress": me.address}
        assert "revoked" in refused(with_token("get", base, "compute", revoked, params), 401)
        assert with_token("get", base, "compute", live, params).status_code == 200


# -- paid starts, paid through Ocean's escrow ------------------------------------------------


@pytest.fixture(scope="module")
def ocean(anvil: DevChain) -> OceanEscrow:
    return deploy_ocean_escrow(anvil)


@pytest.fixture(scope="module")
def paid_node(tmp_path_factory: pytest.TempPathFactory, ocean: OceanEscrow) -> Iterator[NodeProcess]:
    """A node pricing its stub environment in the test token, settling through Ocean's escrow."""
    node = NodeProcess(tmp_path_factory.mktemp("paid"), env=ocean_env(ocean, stub_env(ocean.chain)))
    try:
        node.wait_environment(PAID_ENV)
        fund_node(ocean.chain, node.node_key())
        yield node
    finally:
        node.kill()


@pytest.fixture(scope="module")
def paid_base(paid_node: NodeProcess) -> str:
    return f"http://{paid_node.http_address()}"


def payer(paid_node: NodeProcess, ocean: OceanEscrow, base: str, **terms: Any) -> tuple[Ocean, Any]:
    """An Ocean consumer with ``terms`` in Ocean's escrow (deposit, max_amount; payee None: no
    authorization of the node), and its escrow client."""
    payee = terms.pop("payee", auth.address_of(paid_node.node_key()))
    consumer = ocean.consumer(payee, **terms)
    return Ocean(base, consumer.key), consumer


def locks_of(ocean: OceanEscrow, paid_node: NodeProcess, address: str) -> list[Any]:
    node = auth.address_of(paid_node.node_key())
    return ocean.client(ocean.chain.deployer_key).get_locks(ocean.chain.token_address, address, node)


def no_jobs(paid_node: NodeProcess, key: str) -> bool:
    with Client(paid_node.address, key) as client:
        return client.status(all=True) == []


def test_a_replayed_paid_start_is_refused_and_locks_once(
    paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow
) -> None:
    me, consumer = payer(paid_node, ocean, paid_base)
    body = me.paid_body(
        PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address, "echo started; sleep 600\n"
    )
    first = me.paid_start(body)
    assert first.status_code == 200, first.text
    (job,) = first.json()
    assert "not a valid nonce" in refused(me.paid_start(body), 401)
    (lock,) = locks_of(ocean, paid_node, consumer.address)
    assert consumer.funds(ocean.chain) == (DEPOSIT - lock.amount, lock.amount)
    with Client(paid_node.address, consumer.key) as client:
        assert [j.job_id for j in client.status(all=True)] == [job["jobId"]]
        client.stop(job_id=job["jobId"])


def test_a_payer_who_did_not_authorize_the_node_is_refused_and_nothing_is_locked(
    paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow
) -> None:
    me, consumer = payer(paid_node, ocean, paid_base, payee=None)  # deposited, never authorized
    body = me.paid_body(PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address)
    assert "not authorized" in refused(me.paid_start(body), 400)
    assert locks_of(ocean, paid_node, consumer.address) == []
    assert consumer.funds(ocean.chain) == (DEPOSIT, 0) and no_jobs(paid_node, consumer.key)


def test_nobody_pays_from_another_payer_s_escrow(
    paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow
) -> None:
    """The victim authorized the node; mallory names the victim as consumer, signing with her key."""
    victim, funded = payer(paid_node, ocean, paid_base)
    mallory = Ocean(paid_base)
    body = victim.paid_body(PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address)
    forged = {
        **body,
        "signature": ocean_signature(mallory.key, victim.address, body["nonce"], "startCompute"),
    }
    assert "signature mismatch" in refused(victim.paid_start(forged), 401)
    assert locks_of(ocean, paid_node, funded.address) == []
    assert funded.funds(ocean.chain) == (DEPOSIT, 0) and no_jobs(paid_node, funded.key)


@pytest.mark.parametrize(
    ("terms", "words"),
    [
        ({"deposit": 10}, "your escrow balance"),  # the quote is thousands of base units
        ({"max_amount": 10}, "locked at once"),
    ],
    ids=["over-the-deposit", "over-the-authorization"],
)
def test_amounts_over_what_the_payer_allows_are_refused_and_nothing_is_locked(
    paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow, terms: dict[str, int], words: str
) -> None:
    me, consumer = payer(paid_node, ocean, paid_base, **terms)
    before = consumer.funds(ocean.chain)
    body = me.paid_body(PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address)
    assert words in refused(me.paid_start(body), 400)
    assert locks_of(ocean, paid_node, consumer.address) == []
    assert consumer.funds(ocean.chain) == before and no_jobs(paid_node, consumer.key)


def test_a_consumer_cannot_name_its_own_price(
    paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow
) -> None:
    """An amount in the payment block is not what is locked: the node locks its own quote."""
    me, consumer = payer(paid_node, ocean, paid_base)
    body = me.paid_body(
        PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address, "echo started; sleep 600\n"
    )
    body["payment"] = {**body["payment"], "amount": "1"}
    started = me.paid_start(body)
    assert started.status_code == 200, started.text
    (job,) = started.json()
    (lock,) = locks_of(ocean, paid_node, consumer.address)
    assert lock.amount == int(job["payment"]["lockedAmount"]) > 1
    with Client(paid_node.address, consumer.key) as client:
        client.stop(job_id=job["jobId"])


@pytest.mark.parametrize(
    "payment",
    [
        {"chainId": 1, "token": "TOKEN"},
        {"chainId": "CHAIN", "token": "0x" + "12" * 20},
        {"chainId": "CHAIN"},
        "x",
    ],
    ids=["another-chain", "another-token", "no-token", "not-an-object"],
)
def test_a_paid_start_on_a_chain_or_token_the_node_does_not_take_is_refused(
    paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow, payment: Any
) -> None:
    me, consumer = payer(paid_node, ocean, paid_base)
    if isinstance(payment, dict):
        payment = {
            key: ocean.chain.token_address
            if value == "TOKEN"
            else ocean.chain.chain_id
            if value == "CHAIN"
            else value
            for key, value in payment.items()
        }
    body = {**me.paid_body(PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address), "payment": payment}
    body.pop("chainId")
    refused(me.paid_start(body), 400)
    assert locks_of(ocean, paid_node, consumer.address) == []
    assert no_jobs(paid_node, consumer.key)


def test_the_node_s_own_key_cannot_pay_it(paid_node: NodeProcess, paid_base: str, ocean: OceanEscrow) -> None:
    """Deposited and authorized by the node's key for itself: Ocean's escrow refuses the lock, and so
    does the node, in words, with nothing stored."""
    key = paid_node.node_key()
    address = auth.address_of(key)
    ocean.chain.fund(address, wei=0, tokens=DEPOSIT)
    escrow = ocean.client(key)
    escrow.deposit(ocean.chain.token_address, DEPOSIT)
    escrow.authorize(ocean.chain.token_address, address, DEPOSIT, 100_000, 10)
    operator = Ocean(paid_base, key)
    body = operator.paid_body(PAID_ENV, ocean.chain.chain_id, ocean.chain.token_address)
    assert "cannot be paid from its own escrow funds" in refused(operator.paid_start(body), 400)
    assert locks_of(ocean, paid_node, address) == []
    assert no_jobs(paid_node, key)
