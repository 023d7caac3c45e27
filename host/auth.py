"""Checking signed calls: consumers' (by address) and pods' (by the stage's pod key).

The signed text and digest are defined once, in :mod:`c2d.auth`, for every
client. Nonces are checked and raised in one conditional UPDATE
(:mod:`host.store.nonces`), so two concurrent calls can never both use the same nonce.

A consumer's signature (scheme v2, or v1 for older clients: :mod:`c2d.auth`, docs/signing.md)
covers the request's bytes as received, which :func:`c2d.wire.add_keeping_bytes` keeps next to
the parsed message. A signature that does not verify is refused with what the node computed
(the method, scheme, digest and signing text) in an ErrorInfo, so a client's author can compare.

A consumer's signature is recovered on the event loop (about 0.1 ms with the native
curve, less than a hop to the database thread) and only the nonce goes to the database
thread. A pod's key is the stage's, so its check is one database unit: the stage's row,
the recovery and the nonce together.
"""

from __future__ import annotations

import hashlib
import re

import grpc
from google.protobuf.message import Message

from c2d import auth, wire
from c2d.quoting import quoted
from host.errors import RequestError
from host.store import jobs, nonces, runner
from host.store.models import Stage

ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
MAX_NONCE = 2**63  # stored as a signed 64-bit integer
# The caller of an unsigned call (InitializeCompute without auth): nobody in particular, so no
# check that depends on who asks is run for it, and its answers are the same for everyone.
ANYONE = ""
# A refused v2 signature's body travels back in hex (body_hex) up to this size, for comparing.
MAX_ECHOED_BODY = 1024


def unauthenticated(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.UNAUTHENTICATED, message)


async def verify_consumer(method: str, request: Message) -> str:
    """The caller's lower-case address, once its signature and nonce check out."""
    credentials = request.auth  # type: ignore[attr-defined]
    if not credentials.address or not credentials.signature:
        raise unauthenticated(
            f"{method.rsplit('/', 1)[-1]} must be signed: set auth (address, nonce, signature, version 2)"
        )
    address = credentials.address.lower()
    if credentials.nonce >= MAX_NONCE:
        raise unauthenticated(f"auth.nonce must be below 2^63, got {credentials.nonce}")
    if not ADDRESS.fullmatch(address):
        raise unauthenticated(f"auth.address {quoted(credentials.address)} is not an Ethereum address")
    scheme = credentials.version or auth.SCHEME_V1
    if scheme not in auth.SCHEMES:
        raise unauthenticated(
            f"auth.version {credentials.version} is not a signing scheme this node knows "
            f"(it knows {', '.join(str(s) for s in auth.SCHEMES)}; see docs/signing.md)"
        )
    pieces: list[memoryview] = []  # v2: the body, as the slices of the received bytes it is made of
    if scheme == auth.SCHEME_V2:
        try:
            pieces = wire.without_field(wire.received_bytes(request), auth.auth_field_number(request))
        except wire.WireError as exc:  # not expected: the same bytes parsed as a message
            raise unauthenticated(f"the request's bytes are not a well-formed message: {exc}") from None
        hasher = hashlib.sha256()
        for piece in pieces:
            hasher.update(piece)
        digest = hasher.hexdigest()
    else:
        digest = auth.body_digest(request)
    text = auth.signing_text(address, credentials.nonce, method, digest, scheme)
    recovered = _recover(text, credentials.signature)
    if recovered != address:
        raise _mismatch("address", method, scheme, digest, text, address, recovered, b"".join(pieces))
    last = await runner.run(nonces.consume, address, credentials.nonce)
    if last is not None:
        raise RequestError(
            grpc.StatusCode.UNAUTHENTICATED,
            f"nonce {credentials.nonce} was already used: it must be greater than {last}, "
            "the last one accepted (replayed request?)",
            reason=auth.STALE_NONCE,
            metadata={"last_nonce": str(last)},
        )
    return address


def _mismatch(
    what: str, method: str, scheme: int, digest: str, text: str, signer: str, recovered: str, body: bytes
) -> RequestError:
    """The refusal of a signature that recovers to someone else, with what the node computed."""
    metadata = {
        "method": method,
        "scheme": str(scheme),
        "digest": digest,
        "signing_text": text,
        "signer": signer,
        "recovered": recovered,
    }
    if scheme == auth.SCHEME_V2:
        metadata["body_size"] = str(len(body))
        if len(body) <= MAX_ECHOED_BODY:
            metadata["body_hex"] = body.hex()
    hint = (
        "compare the signing_text and digest in the error details with yours (docs/signing.md)"
        if scheme == auth.SCHEME_V2
        else "v1 hashes Python's re-serialization: sign with auth.version 2 (docs/signing.md)"
    )
    return RequestError(
        grpc.StatusCode.UNAUTHENTICATED,
        f"the signature does not match the {what} (wrong key, or the request was altered); "
        f"scheme v{scheme}: {hint}",
        reason=auth.BAD_SIGNATURE,
        metadata=metadata,
    )


async def verify_pod(method: str, request: Message) -> Stage:
    """The stage whose pod signed this call; refused unless the key, the nonce and the stage fit."""
    credentials = request.auth  # type: ignore[attr-defined]
    if credentials.nonce >= MAX_NONCE:
        raise unauthenticated(f"auth.nonce must be below 2^63, got {credentials.nonce}")
    digest = auth.body_digest(request)
    return await runner.run(
        _pod_check, credentials.job_id, credentials.nonce, method, digest, credentials.signature
    )


def _pod_check(job_id: str, nonce: int, method: str, digest: str, signature: bytes) -> Stage:
    """On the database thread: the stage, its pod's signature, its nonce, as one unit."""
    stage = jobs.stage(job_id)
    if stage is None or not stage.pod_address:
        raise unauthenticated("unknown job or no pod key for it")
    text = auth.signing_text(stage.job_id, nonce, method, digest)
    _check_signer(text, signature, stage.pod_address, "job's pod key")
    if stage.terminal:
        raise RequestError(
            grpc.StatusCode.PERMISSION_DENIED, "the stage has ended: its pod key is no longer valid"
        )
    if not nonces.consume_pod(stage.job_id, nonce):
        raise unauthenticated(f"nonce {nonce} is not greater than the last one used (replayed call?)")
    stage.pod_nonce = nonce
    return stage


def _recover(text: str, signature: bytes) -> str:
    try:
        return auth.recover_signer(text, signature)
    except ValueError:
        raise unauthenticated("the signature is malformed (want 65 bytes r||s||v)") from None


def _check_signer(text: str, signature: bytes, expected: str, what: str) -> None:
    signer = _recover(text, signature)
    if signer != expected:
        raise unauthenticated(
            f"the signature does not match the {what} (wrong key, or the request was altered)"
        )
