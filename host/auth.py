"""Checking signed calls: consumers' (by address) and pods' (by the stage's pod key).

The signed text and digest are defined once, in :mod:`c2d.auth`, for every
client. Nonces are checked and raised in one conditional UPDATE, so two
concurrent calls can never both use the same nonce.
"""

from __future__ import annotations

import re

import grpc
import peewee as pw
from google.protobuf.message import Message

from c2d import auth
from c2d.quoting import quoted
from host.errors import RequestError
from host.store.models import Nonce, Stage

ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
MAX_NONCE = 2**63  # stored as a signed 64-bit integer
# The caller of an unsigned call (InitializeCompute without auth): nobody in particular, so no
# check that depends on who asks is run for it, and its answers are the same for everyone.
ANYONE = ""


def unauthenticated(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.UNAUTHENTICATED, message)


def verify_consumer(method: str, request: Message) -> str:
    """The caller's lower-case address, once its signature and nonce check out."""
    credentials = request.auth  # type: ignore[attr-defined]
    if not credentials.address or not credentials.signature:
        raise unauthenticated(
            f"{method.rsplit('/', 1)[-1]} must be signed: set auth (address, nonce, signature)"
        )
    address = credentials.address.lower()
    if credentials.nonce >= MAX_NONCE:
        raise unauthenticated(f"auth.nonce must be below 2^63, got {credentials.nonce}")
    if not ADDRESS.match(address):
        raise unauthenticated(f"auth.address {quoted(credentials.address)} is not an Ethereum address")
    text = auth.signing_text(address, credentials.nonce, method, auth.body_digest(request))
    _check_signer(text, credentials.signature, address, "address")
    _consume_nonce(address, credentials.nonce)
    return address


def verify_pod(method: str, request: Message) -> Stage:
    """The stage whose pod signed this call; refused unless the key, the nonce and the stage fit."""
    credentials = request.auth  # type: ignore[attr-defined]
    if credentials.nonce >= MAX_NONCE:
        raise unauthenticated(f"auth.nonce must be below 2^63, got {credentials.nonce}")
    stage = Stage.get_or_none(Stage.job_id == credentials.job_id) if credentials.job_id else None
    if stage is None or not stage.pod_address:
        raise unauthenticated("unknown job or no pod key for it")
    text = auth.signing_text(stage.job_id, credentials.nonce, method, auth.body_digest(request))
    _check_signer(text, credentials.signature, stage.pod_address, "job's pod key")
    if stage.terminal:
        raise RequestError(
            grpc.StatusCode.PERMISSION_DENIED, "the stage has ended: its pod key is no longer valid"
        )
    updated = (
        Stage.update(pod_nonce=credentials.nonce)
        .where(Stage.job_id == stage.job_id, Stage.pod_nonce < credentials.nonce)
        .execute()
    )
    if not updated:
        raise unauthenticated(
            f"nonce {credentials.nonce} is not greater than the last one used (replayed call?)"
        )
    return stage


def _check_signer(text: str, signature: bytes, expected: str, what: str) -> None:
    try:
        signer = auth.recover_signer(text, signature)
    except ValueError:
        raise unauthenticated("the signature is malformed (want 65 bytes r||s||v)") from None
    if signer != expected:
        raise unauthenticated(
            f"the signature does not match the {what} (wrong key, or the request was altered)"
        )


def _consume_nonce(address: str, nonce: int) -> None:
    """Accepts ``nonce`` only if it is above the last one accepted from ``address``."""
    if Nonce.update(value=nonce).where(Nonce.address == address, Nonce.value < nonce).execute():
        return
    try:
        Nonce.insert(address=address, value=nonce).execute()
        return
    except pw.IntegrityError:
        pass
    if Nonce.update(value=nonce).where(Nonce.address == address, Nonce.value < nonce).execute():
        return
    last = Nonce.get(Nonce.address == address).value
    raise RequestError(
        grpc.StatusCode.UNAUTHENTICATED,
        f"nonce {nonce} was already used: it must be greater than {last}, the last one accepted (replayed request?)",
        reason=auth.STALE_NONCE,
        metadata={"last_nonce": str(last)},
    )
