"""Ocean's auth tokens: a JWT the node gives a consumer who signed ``createAuthToken``, which then
stands in for a nonce and signature on the Ocean face's signed routes until it expires or its
owner revokes it (``invalidateAuthToken``).

ocean.js decodes the token without checking it to learn whose it is (its ``address`` claim), and
sends it raw in the ``Authorization`` header with ``consumerAddress`` set to that address. The
caller of such a request is the token's address, never the ``consumerAddress`` it names: a
request whose ``consumerAddress`` differs is refused, so a token is never a way to act as
someone else (ocean-node, which only looks the token up, lets its holder name any address).

Tokens are HS256, with a key derived from the node's own key (HKDF-SHA256, an ``info`` of its
own): they survive a restart, and the node key itself never signs or verifies a token. Only
HS256 is accepted, so neither ``alg: none`` nor a token signed with the node's public key as an
HMAC secret passes. A token names its expiry (``exp``) and a random id (``jti``); the ids of
revoked tokens are kept (:mod:`host.store.tokens`) until the token would have expired. Tokens
serve the Ocean face only: the gRPC face and the dashboard have their own sign-ins.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from host.auth import ADDRESS, unauthenticated
from host.errors import RequestError, invalid
from host.identity import NodeIdentity
from host.store import runner
from host.store import tokens as revoked
from host.web.ocean import signature

# ocean-node's command names (PROTOCOL_COMMANDS) the two routes' signatures cover.
CREATE = "createAuthToken"
INVALIDATE = "invalidateAuthToken"
ALGORITHM = "HS256"
KEY_INFO = b"c2d ocean auth tokens v1"
DEFAULT_SECONDS = 24 * 3600  # a token that asks for no expiry (validUntil) lasts a day
MAX_SECONDS = 30 * 24 * 3600  # and none lasts longer than thirty days ([http] token_*hours)
MAX_TOKEN_CHARS = 2048  # the node's own tokens are about 300
CLAIMS = ("address", "nonce", "createdAt", "exp", "jti")
TOKEN_ID = re.compile(r"[0-9a-f]{32}")
CHAIN_ID = re.compile(r"[0-9]{1,19}")
BEARER = "bearer "


@dataclass(frozen=True)
class TokenClaims:
    """What a token of this node says: whose it is and until when."""

    address: str  # lower-case
    nonce: str  # the nonce of the createAuthToken call that made it
    created_at_ms: int  # milliseconds since the epoch, as ocean-node writes createdAt
    expires_at: int  # seconds since the epoch (the JWT's exp)
    token_id: str  # the JWT's jti: what revoking it records


@dataclass(frozen=True)
class TokenLifetimes:
    """How long a token lasts when its request names no ``validUntil``, and the longest any may."""

    default_seconds: float = DEFAULT_SECONDS
    max_seconds: float = MAX_SECONDS


DEFAULT_LIFETIMES = TokenLifetimes()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: TokenClaims


def token_key(identity: NodeIdentity) -> bytes:
    """The HMAC key of the node's tokens, derived from its key (the same on every start)."""
    secret = bytes.fromhex(identity.private_key.removeprefix("0x"))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(secret)


def expiry(valid_until: object, now: float, lifetimes: TokenLifetimes) -> int:
    """The ``exp`` of a token asked to last until ``valid_until`` (milliseconds since the epoch, as
    ocean-node takes it; absent: the default lifetime), capped at the longest lifetime from now."""
    longest = int(now + lifetimes.max_seconds)
    if valid_until is None or valid_until == "":
        return min(int(now + lifetimes.default_seconds), longest)
    if isinstance(valid_until, str) and valid_until.isdigit() and len(valid_until) <= 16:
        valid_until = int(valid_until)
    if isinstance(valid_until, float) and valid_until.is_integer():
        valid_until = int(valid_until)
    if isinstance(valid_until, bool) or not isinstance(valid_until, int) or not 0 <= valid_until < 2**53:
        raise invalid("validUntil must be a time in milliseconds since the epoch (a whole number)")
    if valid_until <= now * 1000:
        raise invalid(f"validUntil {valid_until} is not in the future (milliseconds since the epoch)")
    return min(valid_until // 1000, longest)


def _chain_id(value: object) -> None:
    """``chainId`` only picks the chain of a smart account's signature on ocean-node; this node takes
    externally owned accounts' signatures, so it is checked for shape and has no effect."""
    if value is None or value == "":
        return
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return
    if isinstance(value, str) and CHAIN_ID.fullmatch(value):
        return
    raise invalid("chainId must be a chain id (a positive whole number)")


class TokenAuthority:
    """Issues, checks and revokes the node's auth tokens."""

    def __init__(
        self,
        identity: NodeIdentity,
        lifetimes: TokenLifetimes = DEFAULT_LIFETIMES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = token_key(identity)
        self._lifetimes = lifetimes
        self._clock = clock

    def issue(self, address: str, nonce: str, expires_at: int) -> IssuedToken:
        """A token for ``address`` (already checked to have signed ``createAuthToken``)."""
        claims = TokenClaims(
            address=address,
            nonce=nonce,
            created_at_ms=int(self._clock() * 1000),
            expires_at=expires_at,
            token_id=secrets.token_hex(16),
        )
        payload = {
            "address": claims.address,
            "nonce": claims.nonce,
            "createdAt": claims.created_at_ms,
            "exp": claims.expires_at,
            "jti": claims.token_id,
        }
        return IssuedToken(jwt.encode(payload, self._key, algorithm=ALGORITHM), claims)

    def claims(self, token: object, *, expired_too: bool = False) -> TokenClaims:
        """The claims of a token this node signed, not expired (unless ``expired_too``);
        UNAUTHENTICATED for anything else, with a short reason."""
        if not isinstance(token, str) or not token:
            raise unauthenticated("the token is missing")
        if len(token) > MAX_TOKEN_CHARS:
            raise unauthenticated(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": list(CLAIMS), "verify_exp": not expired_too},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated(
                "the token has expired: ask for a new one (POST /api/services/auth/token)"
            ) from None
        except jwt.InvalidTokenError:
            raise unauthenticated("the token is not one this node issued (or it was altered)") from None
        return _checked_claims(payload)

    async def caller(self, token: str, consumer_address: object) -> str:
        """The caller of a request carrying ``token``: its address, once the token is valid and not
        revoked and ``consumerAddress`` (when sent) is that address."""
        if token[: len(BEARER)].lower() == BEARER:
            token = token[len(BEARER) :]
        claims = self.claims(token.strip())
        if await runner.run(revoked.is_revoked, claims.token_id):
            raise unauthenticated("the token was revoked: ask for a new one (POST /api/services/auth/token)")
        if (
            consumer_address not in (None, "")
            and signature.consumer_address(consumer_address) != claims.address
        ):
            raise unauthenticated(
                "consumerAddress is not the token's address: a token acts for its own address only"
            )
        return claims.address

    async def create(self, body: Mapping[str, Any]) -> IssuedToken:
        """``POST /auth/token``: a token for the body's signer (nonce and signature as every signed call)."""
        _chain_id(body.get("chainId"))
        # A bad validUntil is refused before the nonce is spent.
        expires_at = expiry(body.get("validUntil"), self._clock(), self._lifetimes)
        nonce = _text(body.get("nonce"))
        caller = await signature.verify(_address(body.get("address")), nonce, body.get("signature"), CREATE)
        return self.issue(caller, str(nonce), expires_at)

    async def invalidate(self, body: Mapping[str, Any]) -> None:
        """``POST /auth/token/invalidate``: revokes the body's token, signed by the token's own address.

        A token already revoked, or already expired, is accepted again: either way it is refused from
        now on. The token is checked before the signature, so a refusal spends no nonce."""
        _chain_id(body.get("chainId"))
        claims = self.claims(body.get("token"), expired_too=True)
        address, nonce, signed = body.get("address"), _text(body.get("nonce")), body.get("signature")
        if _address(address).lower() != claims.address:
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                "a token is revoked by its own address only (its address claim)",
            )
        await signature.verify(address, nonce, signed, _invalidate_command(address, nonce, signed))
        await runner.run(revoked.revoke, claims.token_id, claims.address, claims.expires_at, self._clock())


def _checked_claims(payload: Mapping[str, Any]) -> TokenClaims:
    """The claims' types, which a token signed by this node always has (a check in depth)."""
    address, nonce, created, exp, token_id = (payload.get(name) for name in CLAIMS)
    if not (
        isinstance(address, str)
        and ADDRESS.fullmatch(address)
        and isinstance(nonce, str)
        and isinstance(created, int)
        and isinstance(exp, int)
        and isinstance(token_id, str)
        and TOKEN_ID.fullmatch(token_id)
    ):
        raise unauthenticated("the token's claims are not this node's")
    return TokenClaims(address=address, nonce=nonce, created_at_ms=created, expires_at=exp, token_id=token_id)


def _address(value: object) -> str:
    """The body's ``address`` as sent (checked to be one; verify lower-cases it)."""
    if not isinstance(value, str) or not value:
        raise invalid('missing parameter: "address"')
    if not ADDRESS.fullmatch(value.lower()):
        raise invalid('parameter "address" is not an Ethereum address')
    return value


def _text(value: object) -> object:
    """Ocean sends the nonce as a string; a JSON number is taken as its decimal text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _invalidate_command(address: object, nonce: object, signed: object) -> str:
    """The command an invalidation's signature covers: ``invalidateAuthToken``, as ocean-node
    checks, or none at all (``address + nonce``), which is what ocean.js 8.6.2's
    ``invalidateAuthToken`` signs. Either way the nonce must rise and the token be the signer's."""
    if not (isinstance(address, str) and isinstance(nonce, str) and isinstance(signed, str)):
        return INVALIDATE
    if not signature.NONCE.match(nonce) or not signature.SIGNATURE.match(signed):
        return INVALIDATE
    raw = bytes.fromhex(signed.removeprefix("0x"))
    try:
        return "" if signature.signer_matches(address, nonce, "", raw) else INVALIDATE
    except RequestError:
        return INVALIDATE
