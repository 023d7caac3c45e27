"""Token amounts as people read them: base units (what chains and the node's API carry) shown in
token units, ``22200000000000000`` as ``0.0222 C2DT`` for a token of 18 decimals.

The node words its payment refusals with it and the ``c2d`` command line shows every amount
with it, so one amount never reads as tokens in one place and base units in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context as DecimalContext
from decimal import Decimal

# Enough digits for any uint256 amount at any number of decimals: no silent rounding.
EXACT = DecimalContext(prec=200)


def format_units(amount: int | str | Decimal, decimals: int) -> str:
    """Base units as token units, without trailing zeros: 1500000000000000000 -> ``1.5``.
    Prices may be fractions of a base unit (``"0.5"`` per unit-minute): those stay exact too."""
    return _plain(EXACT.scaleb(Decimal(str(amount)), -decimals))


def _plain(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class TokenUnits:
    """How to show one token's amounts: its decimals and symbol when known; ``base`` shows
    whole base units whatever is known (the command line's ``--base-units``)."""

    decimals: int | None = None
    symbol: str = ""
    base: bool = False

    def show(self, amount: int | str | Decimal) -> str:
        if self.base or self.decimals is None:
            return f"{_plain(Decimal(str(amount)))} base units"
        return f"{format_units(amount, self.decimals)} {self.symbol or 'tokens'}"

    def both(self, amount: int | str | Decimal) -> str:
        """Token units with the exact base units after them, for messages a program may quote."""
        if self.base or self.decimals is None:
            return self.show(amount)
        return f"{self.show(amount)} ({_plain(Decimal(str(amount)))} base units)"
