"""Request signatures: what a consumer (or a pod) signs, and how the node checks it.

A signature is EIP-191 (``personal_sign``) over a short text naming the
signer, a nonce, the full gRPC method and the SHA-256 of the request
serialized deterministically with its ``auth`` field cleared. It therefore
cannot be replayed (the nonce must rise), moved to another method, or moved to
another request body. Any Ethereum wallet (ethers ``signMessage``) can
produce it from the same text.
"""

from __future__ import annotations

import hashlib
import time

from eth_account import Account
from eth_account.messages import encode_defunct
from google.protobuf.message import Message

DOMAIN = "c2d-auth-v1"


def body_digest(request: Message) -> str:
    """SHA-256 (hex) of the request without its auth, in deterministic wire form."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("auth")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def signing_text(signer: str, nonce: int, method: str, digest: str) -> str:
    """The exact text signed. ``signer`` is a lower-case address or, for pods, the job id."""
    return f"{DOMAIN}\nsigner:{signer}\nnonce:{nonce}\nmethod:{method}\nbody:{digest}"


def sign_text(private_key: str | bytes, text: str) -> bytes:
    return bytes(Account.sign_message(encode_defunct(text=text), private_key).signature)


def recover_signer(text: str, signature: bytes) -> str:
    """The lower-case address that signed ``text``; ValueError when the signature is malformed."""
    try:
        return Account.recover_message(encode_defunct(text=text), signature=signature).lower()
    except Exception as exc:  # eth-keys raises several unrelated types for bad bytes
        raise ValueError(f"malformed signature: {exc}") from None


def new_nonce() -> int:
    """A nonce that rises across processes and restarts of the client: microseconds since the epoch."""
    return time.time_ns() // 1000


def address_of(private_key: str | bytes) -> str:
    return Account.from_key(private_key).address.lower()


def new_private_key() -> str:
    """A fresh random key, hex with 0x."""
    return "0x" + bytes(Account.create().key).hex()


def sign_request(private_key: str | bytes, method: str, request: Message, nonce: int | None = None) -> None:
    """Fills ``request.auth`` (a c2d.compute.v1.Auth) in place for the consumer owning ``private_key``."""
    address = address_of(private_key)
    nonce = new_nonce() if nonce is None else nonce
    text = signing_text(address, nonce, method, body_digest(request))
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
