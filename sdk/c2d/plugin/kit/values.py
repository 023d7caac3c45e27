"""Checks of an engine's config values, each failing with INVALID_ARGUMENT that names the key.

The node hands an engine its config section as a protobuf Struct, where every
number is a float (3600 arrives as 3600.0) and TOML tables are dicts; these
turn that into typed values, so an operator can fix the config from the
message alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2

from c2d.plugin.kit.errors import invalid

MAX_COUNT = 0xFFFFFFFF


def settings_from_struct(config: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(config)


def optional_text(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def flag(entry: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise invalid(f"{where}: {key} must be true or false, got {value!r}")
    return value


def optional_positive(entry: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if entry.get(key) is None else positive(entry, key, 0.0, where)


def positive(entry: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = entry.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise invalid(f"{where}: {key} must be a positive number, got {value!r}")
    return float(value)


def count(entry: Mapping[str, Any], key: str, default: int, where: str) -> int:
    """A whole number >= 0 (Struct numbers arrive as floats, so 3600.0 is fine)."""
    value = entry.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value != int(value)
    ):
        raise invalid(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    if value > MAX_COUNT:
        raise invalid(f"{where}: {key} is too large ({value!r})")
    return int(value)


def text_map(entry: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    """A table of strings (labels, selectors); {} when absent."""
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid(f"{where}: {key} must be a table of strings, got {value!r}")
    return dict(value)


def text_list(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A list of non-empty strings; () when absent."""
    value = entry.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise invalid(f"{where}: {key} must be a list of non-empty strings, got {value!r}")
    return tuple(value)
