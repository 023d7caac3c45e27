"""Signing in to the dashboard: a challenge signed with an Ethereum key, then a session cookie.

The node never holds a password. It hands out a challenge (a text naming the node, the page's
origin, a random nonce and an expiry); whoever signs it with a key (EIP-191 ``personal_sign``,
what every wallet and ``c2d dashboard`` do) is that key's address for the session. The node key
and the addresses in ``[http] operators`` sign in as the operator and see every job; anyone
else sees their own workflows and those they were named a viewer of, as over gRPC.

A challenge is used once, within minutes, and only by the browser it was given to (a cookie
binds it), so a signature seen by someone else, or a login forced on a victim's browser, buys
nothing. Challenges and sessions are kept in memory, bounded: a node restart signs everyone out.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from c2d import auth

CHALLENGE_SECONDS = 300.0
LINK_SECONDS = 120.0
MAX_CHALLENGES = 10_000  # the oldest are dropped first: a flood of page loads only wastes its own
MAX_SESSIONS = 10_000
MAX_LINKS = 1_000
MAX_SIGNATURE_CHARS = 200  # 65 bytes in hex is 132

T = TypeVar("T")


class SignInError(ValueError):
    """Why a sign-in was refused, in words for the person signing in."""


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str  # also the value of the browser's binding cookie
    text: str  # what the key signs
    expires_at: float


@dataclass(frozen=True, slots=True)
class Session:
    address: str  # lower-case
    operator: bool
    expires_at: float


class Sessions:
    """Challenges handed out and sessions signed in, in memory, each with its expiry."""

    def __init__(
        self,
        node_address: str,
        operators: tuple[str, ...],
        session_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_address = node_address.lower()
        self.operators = frozenset(operators) | {self.node_address}
        self.session_seconds = session_seconds
        self._clock = clock
        self._challenges: OrderedDict[str, Challenge] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._links: OrderedDict[str, tuple[str, float]] = OrderedDict()  # code -> (session token, expiry)

    def challenge(self, origin: str) -> Challenge:
        """A new challenge for a sign-in from ``origin`` (the dashboard's scheme://host:port)."""
        now = self._clock()
        expires = now + CHALLENGE_SECONDS
        nonce = secrets.token_hex(16)
        stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = (
            f"Sign in to the dashboard of compute node {self.node_address}\n"
            f"at {origin}\n"
            f"Nonce: {nonce}\n"
            f"Expires: {stamp}"
        )
        found = Challenge(id=secrets.token_urlsafe(24), text=text, expires_at=expires)
        self._challenges[found.id] = found
        _trim(self._challenges, MAX_CHALLENGES)
        return found

    def sign_in(self, challenge_id: str, signature: str) -> tuple[str, Session]:
        """A new session token and its session, for the challenge's signer; the challenge is used up."""
        found = self._challenges.pop(challenge_id, None)
        if found is None:
            raise SignInError("this sign-in page is used or unknown: load it again for a new challenge")
        if self._clock() > found.expires_at:
            raise SignInError("the challenge expired: load the sign-in page again")
        address = recover(found.text, signature)
        session = Session(
            address=address,
            operator=address in self.operators,
            expires_at=self._clock() + self.session_seconds,
        )
        token = secrets.token_urlsafe(32)
        self._sessions[token] = session
        _trim(self._sessions, MAX_SESSIONS)
        return token, session

    def session(self, token: str) -> Session | None:
        """The live session of ``token``, or None (unknown, or expired: then forgotten)."""
        found = self._sessions.get(token)
        if found is not None and self._clock() > found.expires_at:
            del self._sessions[token]
            return None
        return found

    def sign_out(self, token: str) -> None:
        self._sessions.pop(token, None)

    def link(self, token: str) -> str:
        """A one-time code that hands the session ``token`` to a browser within minutes: how a
        terminal (``c2d dashboard``) signs a browser in without the key ever reaching the browser."""
        code = secrets.token_urlsafe(32)
        self._links[code] = (token, self._clock() + LINK_SECONDS)
        _trim(self._links, MAX_LINKS)
        return code

    def redeem(self, code: str) -> str | None:
        """The session token of a link's code, once; None when it is used, unknown or expired."""
        found = self._links.pop(code, None)
        if found is None or self._clock() > found[1] or self.session(found[0]) is None:
            return None
        return found[0]


def recover(text: str, signature: str) -> str:
    """The lower-case address that signed ``text`` (EIP-191), or SignInError."""
    raw = signature.strip()
    if not raw or len(raw) > MAX_SIGNATURE_CHARS:
        raise SignInError("paste the signature: 65 bytes in hex, as a wallet's personal_sign gives it")
    try:
        return auth.recover_signer(text, bytes.fromhex(raw.removeprefix("0x")))
    except ValueError:
        raise SignInError("the signature is not a valid signature of this challenge") from None


def _trim(entries: OrderedDict[str, T], most: int) -> None:
    while len(entries) > most:
        entries.popitem(last=False)
