"""Nonces: the last one accepted per consumer address, and per stage for its pod key.

Each is checked and raised in one conditional UPDATE, so two concurrent calls can never
both use the same nonce. Run on the database thread (:func:`host.store.runner.run`).
"""

from __future__ import annotations

from host.store.models import Nonce, Stage


def consume(address: str, nonce: int) -> int | None:
    """Accepts ``nonce`` if it is above the last one accepted from ``address``: None then, else
    the last one accepted (the caller refuses the call, saying what it must exceed)."""
    if Nonce.update(value=nonce).where(Nonce.address == address, Nonce.value < nonce).execute():
        return None
    # ON CONFLICT DO NOTHING (INSERT OR IGNORE on SQLite): a failed INSERT would abort an enclosing
    # PostgreSQL transaction, where SQLite's would not.
    if Nonce.insert(address=address, value=nonce).on_conflict_ignore().as_rowcount().execute():
        return None
    if Nonce.update(value=nonce).where(Nonce.address == address, Nonce.value < nonce).execute():
        return None
    return int(Nonce.get(Nonce.address == address).value)


def consume_pod(job_id: str, nonce: int) -> bool:
    """Accepts ``nonce`` for the stage's pod key if it is above the last one it used."""
    updated = Stage.update(pod_nonce=nonce).where(Stage.job_id == job_id, Stage.pod_nonce < nonce).execute()
    return bool(updated)


def last(address: str) -> int:
    """The last nonce accepted from ``address``; 0 when none was (what a first call must exceed)."""
    row = Nonce.get_or_none(Nonce.address == address)
    return 0 if row is None else int(row.value)
