"""The pluggy hooks an engine distribution implements.

An engine package registers a module in the ``c2d.engines`` entry-point group;
that module implements :func:`c2d_engines` with :data:`hookimpl`. The host
loads these modules with pluggy but never imports the engine itself: it only
runs the command each :class:`EngineSpec` names, in a separate process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

PROJECT = "c2d"
ENTRY_POINT_GROUP = "c2d.engines"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class EngineSpec:
    """How to start one engine plugin process."""

    name: str
    argv: list[str]
    version: str
    description: str = ""
    # Config the engine gets when the node's config has no section for it.
    default_config: dict[str, Any] = field(default_factory=dict)
    # Config for development nodes (no config file); falls back to default_config.
    dev_config: dict[str, Any] | None = None
    # What the conformance suite needs to run jobs here (an image, ...).
    conformance: dict[str, Any] = field(default_factory=dict)


@hookspec
def c2d_engines() -> list[EngineSpec]:  # type: ignore[empty-body]
    """The engines this distribution provides."""
