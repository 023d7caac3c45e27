"""Revoked Ocean auth tokens (:mod:`host.web.ocean.tokens`), by token id, until they would have
expired: a token is a signed claim the node checks without the database, so revoking one is the
only thing to keep. Run on the database thread (:func:`host.store.runner.run`)."""

from __future__ import annotations

from host.store.models import RevokedToken


def revoke(token_id: str, address: str, expires_at: float, now: float) -> None:
    """Records the token as revoked (again is a no-op), and drops the rows of tokens that have
    expired since: those are refused for their expiry alone."""
    RevokedToken.delete().where(RevokedToken.expires_at < now).execute()
    if expires_at >= now:
        RevokedToken.insert(
            token_id=token_id, address=address, expires_at=expires_at, revoked_at=now
        ).on_conflict_ignore().execute()


def is_revoked(token_id: str) -> bool:
    return RevokedToken.select().where(RevokedToken.token_id == token_id).exists()
