"""Request signatures: what a consumer (or a pod) signs, and how the node checks it.

A signature is EIP-191 (``personal_sign``) over a short text naming the
signer, a nonce, the full gRPC method and the SHA-256 of the request body. It
therefore cannot be replayed (the nonce must rise), moved to another method, or
moved to another request body. Any Ethereum wallet (ethers ``signMessage``) can
produce it from the same text. docs/signing.md is the specification, with test
vectors.

Two schemes say what "the request body" is (``Auth.version``):

- v2 (:data:`SCHEME_V2`, what this SDK sends): the request's bytes as sent, less
  every top-level occurrence of its ``auth`` field. A client serializes the request
  without auth with whatever protobuf library it has, signs those bytes, and sends
  them followed by the encoded auth field (:func:`signed_request_bytes`).
- v1 (0 or 1, deprecated): the request re-serialized deterministically by Python's
  protobuf with auth cleared. Libraries that write explicitly set zero values
  (protobufjs) cannot match it. Pods (``PodAuth`` has no version) still sign v1.

The curve work is libsecp256k1's, through coincurve, called directly: every pod
imports this module, and eth-keys (with eth-utils and pydantic behind it) cost
a pod about 0.2 s of start-up for the same two calls.
"""

from __future__ import annotations

import hashlib
import os
import time

import coincurve
from eth_hash.auto import keccak
from google.protobuf.message import Message

from c2d import wire

DOMAIN = "c2d-auth-v1"
DOMAIN_V2 = "c2d-auth-v2"
SCHEME_V1 = 1  # Auth.version 0 (unset) means v1 too
SCHEME_V2 = 2
SCHEMES = (SCHEME_V1, SCHEME_V2)
# The order of secp256k1: r, s and private keys lie in [1, _ORDER).
_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# The ErrorInfo reason of a refused nonce; metadata "last_nonce" is the last one the node accepted.
STALE_NONCE = "STALE_NONCE"
# The ErrorInfo reason of a signature that does not recover to the signer: its metadata is what
# the node computed (method, scheme, digest, signing_text, signer, recovered, body_size and, for
# a small body, body_hex), for a client author to compare with what the client signed.
BAD_SIGNATURE = "BAD_SIGNATURE"


def body_digest(request: Message) -> str:
    """SHA-256 (hex) of the request without its auth, in deterministic wire form."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("auth")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def auth_field_number(request: Message) -> int:
    """The number of the request's top-level ``auth`` field (4 in InitializeComputeRequest, else 1)."""
    return request.DESCRIPTOR.fields_by_name["auth"].number


def wire_digest(request: Message, data: bytes) -> str:
    """v2: SHA-256 (hex) of ``data`` (a serialized ``request``) less every top-level auth field."""
    return wire.digest_without(data, auth_field_number(request))


def signing_text(signer: str, nonce: int, method: str, digest: str, scheme: int = SCHEME_V1) -> str:
    """The exact text signed. ``signer`` is a lower-case address or, for pods, the job id."""
    domain = DOMAIN_V2 if scheme == SCHEME_V2 else DOMAIN
    return f"{domain}\nsigner:{signer}\nnonce:{nonce}\nmethod:{method}\nbody:{digest}"


def _eip191_hash(message: str | bytes) -> bytes:
    """keccak256 of the personal_sign envelope of a text (UTF-8) or of raw bytes (a wallet's
    ``signMessage(bytes)``); eth-account's encode_defunct, without its import cost."""
    data = message.encode() if isinstance(message, str) else message
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)


def _private_key(private_key: str | bytes) -> coincurve.PrivateKey:
    """ValueError when ``private_key`` is not 32 bytes (hex or raw) inside the curve's order."""
    raw = bytes.fromhex(private_key.removeprefix("0x")) if isinstance(private_key, str) else private_key
    if len(raw) != 32:
        raise ValueError("a private key is 32 bytes")
    return coincurve.PrivateKey(raw)


def _address(public_key: coincurve.PublicKey) -> str:
    """The lower-case Ethereum address: the last 20 bytes of keccak256 of the uncompressed point."""
    return "0x" + keccak(public_key.format(compressed=False)[1:])[-20:].hex()


def sign_text(private_key: str | bytes, text: str | bytes) -> bytes:
    """65 bytes r||s||v with v = 27 or 28, as wallets produce."""
    signature = _private_key(private_key).sign_recoverable(_eip191_hash(text), hasher=None)
    return signature[:64] + bytes([signature[64] + 27])


def recover_signer(text: str | bytes, signature: bytes) -> str:
    """The lower-case address that signed ``text`` (or raw bytes) as a personal message; ValueError
    when the signature is malformed."""
    if len(signature) != 65 or signature[64] not in (0, 1, 27, 28):
        raise ValueError("malformed signature: want 65 bytes r||s||v")
    normalized = signature[:64] + bytes([signature[64] % 27])
    r, s = int.from_bytes(normalized[:32], "big"), int.from_bytes(normalized[32:64], "big")
    if not (0 < r < _ORDER and 0 < s < _ORDER):
        raise ValueError("malformed signature: r and s must lie inside the curve's order")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            normalized, _eip191_hash(text), hasher=None
        )
    except ValueError as exc:
        raise ValueError(f"malformed signature: {exc}") from None
    return _address(public_key)


def new_nonce() -> int:
    """A nonce that rises across processes and restarts of the client: microseconds since the epoch."""
    return time.time_ns() // 1000


def address_of(private_key: str | bytes) -> str:
    return _address(_private_key(private_key).public_key)


def new_private_key() -> str:
    """A fresh random key, hex with 0x."""
    while True:
        raw = os.urandom(32)
        if 0 < int.from_bytes(raw, "big") < _ORDER:  # outside it: astronomically rare
            return "0x" + raw.hex()


def signed_request_bytes(
    private_key: str | bytes, method: str, request: Message, nonce: int | None = None
) -> bytes:
    """v2: the bytes to send for ``request`` signed by the consumer owning ``private_key``.

    They are the request serialized without auth (the signed body), followed by the encoded
    auth field; ``request.auth`` is filled in too, so the message says what was sent."""
    address = address_of(private_key)
    nonce = new_nonce() if nonce is None else nonce
    number = auth_field_number(request)
    body = wire.strip_field(request.SerializeToString(), number)
    text = signing_text(address, nonce, method, hashlib.sha256(body).hexdigest(), SCHEME_V2)
    credentials = request.auth  # type: ignore[attr-defined]
    credentials.Clear()
    credentials.address = address
    credentials.nonce = nonce
    credentials.signature = sign_text(private_key, text)
    credentials.version = SCHEME_V2
    return body + wire.length_delimited(number, credentials.SerializeToString())


def sign_request(private_key: str | bytes, method: str, request: Message, nonce: int | None = None) -> None:
    """v1 (deprecated): fills ``request.auth`` (a c2d.compute.v1.Auth) in place for the consumer
    owning ``private_key``. Any serialization of the message may be sent."""
    address = address_of(private_key)
    nonce = new_nonce() if nonce is None else nonce
    text = signing_text(address, nonce, method, body_digest(request))
    request.auth.Clear()  # type: ignore[attr-defined]
    request.auth.address = address  # type: ignore[attr-defined]
    request.auth.nonce = nonce  # type: ignore[attr-defined]
    request.auth.signature = sign_text(private_key, text)  # type: ignore[attr-defined]


def sign_pod_request(
    private_key: str | bytes, job_id: str, method: str, request: Message, nonce: int | None = None
) -> None:
    """Fills ``request.auth`` (a c2d.pod.v1.PodAuth) in place with the stage's pod key."""
    nonce = new_nonce() if nonce is None else nonce
    text = signing_text(job_id, nonce, method, body_digest(request))
    request.auth.job_id = job_id  # type: ignore[attr-defined]
    request.auth.nonce = nonce  # type: ignore[attr-defined]
    request.auth.signature = sign_text(private_key, text)  # type: ignore[attr-defined]
