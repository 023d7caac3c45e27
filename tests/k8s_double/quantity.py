"""Kubernetes resource quantities (``500m``, ``2Gi``, ``1e3``...) parsed exactly and formatted back.

Exact arithmetic (``Fraction``) because quota and scheduling compare sums of quantities: ``0.1 + 0.2``
CPUs must equal ``300m``, as it does in the real API's fixed-point ``resource.Quantity``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1)}
_DECIMAL |= {"k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12)}
_DECIMAL |= {"P": Fraction(10**15), "E": Fraction(10**18)}
_PATTERN = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)
# Resources whose quantities are bytes: formatted with binary suffixes when exact (``1Gi``).
BYTE_RESOURCES = ("memory", "storage", "ephemeral-storage")


class QuantityError(ValueError):
    """Not a quantity; the API answers 422 (or 400) with the real server's wording."""


def parse(text: str | int | float) -> Fraction:
    """The exact value of a quantity string (numbers are accepted as the client may send them)."""
    if isinstance(text, bool):
        raise QuantityError(f"quantities must match the regular expression, got {text!r}")
    if isinstance(text, int | float):
        return Fraction(str(text))
    match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(
            f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got {text!r}"
        )
    value = Fraction(match["number"])
    if match["exponent"]:
        value *= Fraction(10) ** int(match["exponent"][1:])
    elif match["suffix"]:
        suffix = match["suffix"]
        value *= _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    return -value if match["sign"] == "-" else value


def is_quantity(text: object) -> bool:
    try:
        parse(text)  # type: ignore[arg-type]
    except QuantityError:
        return False
    return True


def is_bytes(resource: str) -> bool:
    """Whether a resource name (``limits.memory``, ``requests.storage``...) counts bytes."""
    return resource.rsplit(".", 1)[-1] in BYTE_RESOURCES


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """The canonical form: ``1500m``, ``2``, ``1Gi`` (binary), ``1k``; fractions below 1n round up."""
    if value < 0:
        return "-" + format_quantity(-value, binary)
    if value.denominator == 1:
        return _format_integer(int(value), binary)
    for suffix, scale in (("m", 1000), ("u", 10**6), ("n", 10**9)):
        scaled = value * scale
        if scaled.denominator == 1:
            return f"{int(scaled)}{suffix}"
    return f"{math.ceil(value * 10**9)}n"


def _format_integer(value: int, binary: bool) -> str:
    if value == 0:
        return "0"
    table = _BINARY if binary else {k: v for k, v in _DECIMAL.items() if v > 1}
    for suffix, scale in sorted(table.items(), key=lambda item: -item[1]):
        if value % int(scale) == 0:
            return f"{value // int(scale)}{suffix}"
    return str(value)


def to_int(value: Fraction) -> int:
    """Rounded up to a whole unit, as Docker wants bytes (``Quantity.Value()`` rounds up too)."""
    return math.ceil(value)
