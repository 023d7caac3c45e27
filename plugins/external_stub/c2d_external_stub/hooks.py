"""Registers the engine with the node: the entry point ``c2d.engines: external_stub`` names this module."""

from __future__ import annotations

import sys

from c2d.plugin import EngineSpec, hookimpl
from c2d_external_stub import __version__


@hookimpl
def c2d_engines() -> list[EngineSpec]:
    return [
        EngineSpec(
            name="external_stub",
            argv=[sys.executable, "-m", "c2d_external_stub"],
            version=__version__,
            description="Jobs as local processes (no container isolation); for development and as a template",
            default_config={"enabled": False},
            dev_config={"enabled": True},
        )
    ]
