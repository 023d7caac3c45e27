"""Request signing v2 (docs/signing.md): the node hashes the bytes it received less the top-level
auth field, so a request written by any protobuf library verifies, explicit zero values included.

The test vectors of docs/signing-vectors.json are recomputed on every run; a real node (python -m
host on external_stub) checks v2 requests as protobufjs writes them, keeps verifying v1, and says
what it computed when a signature does not verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from eth_account import Account
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from c2d import auth, wire
from c2d.client import C2DError, Client
from c2d.compute.v1 import compute_pb2
from nodeproc import NodeProcess, running_node

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "docs" / "signing-vectors.json"
SERVICE = "/c2d.compute.v1.ComputeService/"
ENV = "stub-local"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    """A varint field written even when zero, as protobufjs writes an explicitly set zero."""
    return _varint(number << 3) + _varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def auth_field(number: int, address: str, nonce: int, signature: bytes, version: int) -> bytes:
    credentials = compute_pb2.Auth(address=address, nonce=nonce, signature=signature, version=version)
    return bytes_field(number, credentials.SerializeToString())


# -- the wire helpers ----------------------------------------------------------------------


def test_strip_removes_every_top_level_occurrence_and_keeps_the_rest_byte_for_byte() -> None:
    job = bytes_field(2, b"job-1")
    zeros = varint_field(3, 0) + varint_field(4, 0)
    first, second = bytes_field(1, b"\x0a\x01x"), bytes_field(1, b"\x10\x05")
    group = _varint(7 << 3 | 3) + varint_field(1, 9) + bytes_field(1, b"in a group") + _varint(7 << 3 | 4)
    fixed = _varint(8 << 3 | 1) + b"\x01" * 8 + _varint(9 << 3 | 5) + b"\x02" * 4
    data = first + job + second + zeros + group + fixed
    assert wire.strip_field(data, 1) == job + zeros + group + fixed
    assert wire.digest_without(data, 1) == hashlib.sha256(job + zeros + group + fixed).hexdigest()
    assert wire.strip_field(data, 5) == data  # nothing to remove: unchanged
    assert wire.strip_field(b"", 1) == b""


@pytest.mark.parametrize(
    "data",
    [b"\x0a\x05abc", b"\x08", b"\x08" + b"\xff" * 11, b"\x00\x01", b"\x0f", b"\x1b\x08\x01\x24"],
    ids=["short-length", "no-varint", "long-varint", "field-0", "wire-type-7", "wrong-end-group"],
)
def test_malformed_bytes_raise_wire_error(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.strip_field(data, 1)


def test_the_sdk_sends_the_signed_bytes_followed_by_the_auth_field() -> None:
    key = auth.new_private_key()
    request = compute_pb2.GetComputeResultRequest(job_id="job-1", index=0, offset=0)
    sent = auth.signed_request_bytes(key, SERVICE + "GetComputeResult", request, nonce=5)
    body = wire.strip_field(request.SerializeToString(), 1)
    assert sent.startswith(body) and wire.strip_field(sent, 1) == body
    assert compute_pb2.GetComputeResultRequest.FromString(sent) == request
    assert request.auth.version == auth.SCHEME_V2 and request.auth.address == auth.address_of(key)
    text = auth.signing_text(
        auth.address_of(key), 5, SERVICE + "GetComputeResult", hashlib.sha256(body).hexdigest(), 2
    )
    assert text.startswith("c2d-auth-v2\n")
    assert auth.recover_signer(text, request.auth.signature) == auth.address_of(key)


# -- the test vectors of docs/signing.md -----------------------------------------------------


def _vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text())["vectors"]


def _message_class(full_name: str) -> type[Message]:
    return GetMessageClass(compute_pb2.DESCRIPTOR.pool.FindMessageTypeByName(full_name))


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_signing_vectors_recompute(vector: dict[str, Any]) -> None:
    """Every field of each vector follows from the ones before it, by the algorithm of docs/signing.md."""
    cls = _message_class(vector["message_type"])
    body = bytes.fromhex(vector["body_hex"])
    assert cls.FromString(body) == json_format.ParseDict(vector["message_json"], cls())
    assert hashlib.sha256(body).hexdigest() == vector["digest"]
    key = vector["private_key"]
    address = Account.from_key(key).address  # checksummed, as ethers gives it
    assert address == vector["address"] and address.lower() == auth.address_of(key)
    text = (
        f"c2d-auth-v2\nsigner:{address.lower()}\nnonce:{vector['nonce']}\n"
        f"method:{vector['method']}\nbody:{vector['digest']}"
    )
    assert text == vector["signing_text"]
    assert auth.signing_text(address.lower(), vector["nonce"], vector["method"], vector["digest"], 2) == text
    signature = auth.sign_text(key, text)  # RFC 6979: deterministic, ethers signs the same bytes
    assert signature.hex() == vector["signature_hex"]
    number = cls.DESCRIPTOR.fields_by_name["auth"].number
    assert number == vector["auth_field_number"]
    sent_auth = auth_field(number, vector["auth_address"], vector["nonce"], signature, 2)
    assert sent_auth.hex() == vector["auth_hex"]
    assert vector["wire_hex"] == vector["body_hex"] + vector["auth_hex"]
    assert auth.wire_digest(cls(), bytes.fromhex(vector["wire_hex"])) == vector["digest"]


def test_vectors_cover_explicit_zeros_and_a_checksummed_address() -> None:
    names = {v["name"] for v in _vectors()}
    assert {"result-index-0-offset-0-explicit-zeros", "status-all"} <= names
    assert any(v["auth_address"] != v["auth_address"].lower() for v in _vectors())


# -- a real node ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]'
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


@pytest.fixture(scope="module")
def finished(node: NodeProcess) -> tuple[str, str, compute_pb2.JobInfo]:
    """(the consumer's key, its address checksummed, a finished job with a result at index 0)."""
    key = auth.new_private_key()
    with Client(node.address, key) as client:
        stage = {
            "index": 0,
            "algorithm": {
                "rawcode": 'echo hi; echo "zero" > "$C2D_DATA/outputs/a.txt"',
                "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1.36"},
            },
        }
        started = client.start({"environment": ENV, "stages": [stage]}, free=True)
        (job,) = client.wait(started.workflow_id, timeout=60)
    assert any(r.index == 0 for r in job.results)
    return key, Account.from_key(key).address, job


def raw_call(node: NodeProcess, name: str, data: bytes, streaming: bool) -> list[Any]:
    """Sends ``data`` as the request's bytes, exactly."""
    method = compute_pb2.DESCRIPTOR.services_by_name["ComputeService"].methods_by_name[name]
    response = GetMessageClass(method.output_type)
    with grpc.insecure_channel(node.address) as channel:
        make = channel.unary_stream if streaming else channel.unary_unary
        call = make(SERVICE + name, request_serializer=lambda b: b, response_deserializer=response.FromString)
        return list(call(data, timeout=30)) if streaming else [call(data, timeout=30)]


def refusal(error: grpc.RpcError) -> C2DError:
    return C2DError.from_rpc_error(error)


def result_request_body(job_id: str) -> bytes:
    """GetComputeResultRequest{job_id, index: 0, offset: 0} with the zeros on the wire (protobufjs 7)."""
    return bytes_field(2, job_id.encode()) + varint_field(3, 0) + varint_field(4, 0)


def test_v2_accepts_explicit_zeros_auth_first_and_a_checksummed_address(
    node: NodeProcess, finished: tuple[str, str, compute_pb2.JobInfo]
) -> None:
    key, checksummed, job = finished
    expected = next(r for r in job.results if r.index == 0)
    body = result_request_body(job.job_id)
    assert body != compute_pb2.GetComputeResultRequest(job_id=job.job_id).SerializeToString()
    for nonce, auth_first in ((auth.new_nonce(), True), (auth.new_nonce() + 1, False)):
        text = auth.signing_text(
            checksummed.lower(), nonce, SERVICE + "GetComputeResult", hashlib.sha256(body).hexdigest(), 2
        )
        credentials = auth_field(1, checksummed, nonce, auth.sign_text(key, text), 2)
        data = credentials + body if auth_first else body + credentials
        replies = raw_call(node, "GetComputeResult", data, streaming=True)
        content = b"".join(r.data for r in replies)
        assert hashlib.sha256(content).hexdigest() == expected.sha256


def test_v1_refuses_explicit_zeros_and_says_what_the_node_computed(
    node: NodeProcess, finished: tuple[str, str, compute_pb2.JobInfo]
) -> None:
    """The failure protobufjs clients hit with v1, now explained: the node's digest is of Python's bytes."""
    key, checksummed, job = finished
    body = result_request_body(job.job_id)
    nonce = auth.new_nonce()
    signed_digest = hashlib.sha256(body).hexdigest()
    text = auth.signing_text(checksummed.lower(), nonce, SERVICE + "GetComputeResult", signed_digest)
    data = auth_field(1, checksummed, nonce, auth.sign_text(key, text), 0) + body
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(node, "GetComputeResult", data, streaming=True)
    error = refusal(caught.value)
    assert (
        error.code == "UNAUTHENTICATED" and "does not match" in error.message and "version 2" in error.message
    )
    assert error.reason == auth.BAD_SIGNATURE
    python_digest = hashlib.sha256(
        compute_pb2.GetComputeResultRequest(job_id=job.job_id).SerializeToString(deterministic=True)
    ).hexdigest()
    assert error.metadata["scheme"] == "1" and error.metadata["digest"] == python_digest
    assert error.metadata["method"] == SERVICE + "GetComputeResult"
    assert error.metadata["signing_text"].startswith("c2d-auth-v1\n")


def test_a_v2_mismatch_carries_method_scheme_digest_text_and_body(
    node: NodeProcess, finished: tuple[str, str, compute_pb2.JobInfo]
) -> None:
    key, checksummed, job = finished
    body = result_request_body(job.job_id)
    nonce = auth.new_nonce()
    wrong = auth.signing_text(
        checksummed, nonce, SERVICE + "GetComputeResult", hashlib.sha256(body).hexdigest(), 2
    )
    data = auth_field(1, checksummed, nonce, auth.sign_text(key, wrong), 2) + body  # checksummed in the text
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(node, "GetComputeResult", data, streaming=True)
    error = refusal(caught.value)
    assert (error.code, error.reason) == ("UNAUTHENTICATED", auth.BAD_SIGNATURE)
    digest = hashlib.sha256(body).hexdigest()
    meta = error.metadata
    assert (
        meta["scheme"] == "2" and meta["digest"] == digest and meta["method"] == SERVICE + "GetComputeResult"
    )
    assert meta["signing_text"] == auth.signing_text(
        checksummed.lower(), nonce, SERVICE + "GetComputeResult", digest, 2
    )
    assert meta["body_hex"] == body.hex() and meta["body_size"] == str(len(body))
    assert meta["signer"] == checksummed.lower()
    # what the signature recovers to under the node's text: someone else, as it was signed over another
    assert meta["recovered"] == auth.recover_signer(meta["signing_text"], auth.sign_text(key, wrong))
    assert meta["recovered"] != checksummed.lower()


def test_v2_refuses_a_moved_signature_and_an_unknown_version(
    node: NodeProcess, finished: tuple[str, str, compute_pb2.JobInfo]
) -> None:
    key, _, job = finished
    request = compute_pb2.GetComputeStatusRequest(all=True)
    sent = auth.signed_request_bytes(key, SERVICE + "GetComputeStatus", request)
    moved = bytes_field(3, job.job_id.encode()) + sent[len(wire.strip_field(sent, 1)) :]
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(node, "GetComputeStatus", moved, streaming=False)
    assert refusal(caught.value).reason == auth.BAD_SIGNATURE

    request = compute_pb2.GetComputeStatusRequest(all=True)
    auth.signed_request_bytes(key, SERVICE + "GetComputeStatus", request)
    request.auth.version = 3
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(node, "GetComputeStatus", request.SerializeToString(), streaming=False)
    error = refusal(caught.value)
    assert error.code == "UNAUTHENTICATED" and "auth.version 3" in error.message


def test_v1_python_clients_keep_working(
    node: NodeProcess, finished: tuple[str, str, compute_pb2.JobInfo]
) -> None:
    key, _, job = finished
    request = compute_pb2.GetComputeStatusRequest(job_id=job.job_id)
    auth.sign_request(key, SERVICE + "GetComputeStatus", request)
    assert request.auth.version == 0
    (reply,) = raw_call(node, "GetComputeStatus", request.SerializeToString(), streaming=False)
    assert [j.job_id for j in reply.jobs] == [job.job_id]
