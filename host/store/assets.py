"""The registered assets' rows (``Asset``): found, saved, listed, removed.

Run on the database thread (:func:`host.store.runner.run`, or inside a unit that does);
:class:`host.assets.AssetRegistry` owns the rules, this module only the rows.
"""

from __future__ import annotations

from typing import Any

import peewee as pw

from host.store.models import Asset, database_proxy


def find(did: str) -> Asset | None:
    return Asset.get_or_none(Asset.did == did)


def save(did: str, name: str, services: list[dict[str, Any]], now: float, *, replace: bool) -> bool:
    """Stores the asset; False (nothing written) when it exists already and ``replace`` is not set."""
    with database_proxy.atomic():
        row = Asset.get_or_none(Asset.did == did)
        if row is not None and not replace:
            return False
        if row is None:
            Asset.create(did=did, name=name, services=services, created_at=now)
        else:
            Asset.update(name=name, services=services).where(Asset.did == did).execute()
        return True


def every() -> list[Asset]:
    """Every asset, by did."""
    return list(Asset.select().order_by(Asset.did))


def delete(did: str) -> bool:
    """Forgets the asset; False when there was none."""
    # Asset.delete() builds exactly this; the stubs declare it in a way mypy cannot read off a class.
    return bool(pw.ModelDelete(Asset).where(Asset.did == did).execute())
