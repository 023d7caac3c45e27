"""Ocean's request signatures: keccak256(consumerAddress + nonce + command), signed as a personal
message, and the per-address nonce that must rise with every signed call.

The text is the consumer's address *as sent* (ocean.js sends the checksummed form) followed by
the nonce as sent and the command's name. Wallets sign it in one of two ways, and either is
accepted, as ocean-node does: the 32 bytes of the hash (ethers' ``signMessage(bytes)``, what
ocean.js does) or the hash written as a 0x-prefixed hex string.

The nonce is the one the gRPC face keeps (:mod:`host.store.nonces`): both faces require it to
rise per address, so one store serves both and a key used on both never replays across them.
"""

from __future__ import annotations

import re

import grpc
from eth_hash.auto import keccak

from c2d import auth
from c2d.quoting import quoted
from host.auth import ADDRESS, MAX_NONCE, unauthenticated
from host.errors import RequestError, invalid
from host.store import nonces, runner

# ocean-node's command names (PROTOCOL_COMMANDS): what each signed route's signature covers.
FREE_START = "freeStartCompute"
START = "startCompute"
STOP = "stopCompute"
STATUS = "getComputeStatus"
RESULT = "getComputeResult"
LOGS = "getComputeStreamableLogs"

NONCE = re.compile(r"^[0-9]{1,19}$")
SIGNATURE = re.compile(r"^(0x)?[0-9a-fA-F]{130}$")


def consumer_address(value: object) -> str:
    """The lower-case address of a ``consumerAddress`` parameter; INVALID_ARGUMENT otherwise."""
    if not isinstance(value, str) or not value:
        raise invalid('missing parameter: "consumerAddress"')
    if not ADDRESS.fullmatch(value.lower()):
        raise invalid(f'parameter "consumerAddress" is not an Ethereum address: {quoted(value)}')
    return value.lower()


def message_hash(address: str, nonce: str, command: str) -> bytes:
    """keccak256 of the signed text (ocean.js: solidityPackedKeccak256(['bytes'], [utf8(text)]))."""
    return keccak((address + nonce + command).encode())


def signer_matches(address: str, nonce: str, command: str, signature: bytes) -> bool:
    """Whether ``signature`` is ``address``'s over the command, in either of Ocean's two forms."""
    digest = message_hash(address, nonce, command)
    wanted = address.lower()
    for form in (digest, "0x" + digest.hex()):
        try:
            if auth.recover_signer(form, signature) == wanted:
                return True
        except ValueError:
            raise unauthenticated("the signature is malformed (want 65 bytes r||s||v, hex)") from None
    return False


async def verify(address: object, nonce: object, signature: object, command: str) -> str:
    """The caller's lower-case address once its signature and nonce check out.

    INVALID_ARGUMENT for a missing or malformed address (ocean-node's 400); UNAUTHENTICATED for a
    missing, malformed or wrong signature and for a nonce that does not rise (its 401).
    """
    caller = consumer_address(address)
    sent_address = str(address)
    if not isinstance(nonce, str) or not NONCE.match(nonce) or int(nonce) >= MAX_NONCE:
        raise unauthenticated('parameter "nonce" must be a decimal integer below 2^63')
    if not isinstance(signature, str) or not SIGNATURE.match(signature):
        raise unauthenticated('parameter "signature" must be 65 bytes in hex (r||s||v)')
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if not signer_matches(sent_address, nonce, command, raw):
        raise unauthenticated(
            f"consumer address and nonce signature mismatch: sign keccak256(consumerAddress + nonce + "
            f'"{command}") as a personal message, with consumerAddress exactly as sent'
        )
    last = await runner.run(nonces.consume, caller, int(nonce))
    if last is not None:
        raise RequestError(
            grpc.StatusCode.UNAUTHENTICATED,
            f"nonce {nonce} is not a valid nonce: it must be greater than {last}, the last one accepted "
            "(GET /api/services/nonce)",
            reason=auth.STALE_NONCE,
        )
    return caller
