"""The plugin author's kit: the hook to register an engine and serve() to run it.

The names are loaded on first use, so that a process needing only a
standard-library piece of the kit (an engine's job shim reading its job
directory, say) does not pay for importing grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from c2d.plugin.handshake import HandshakeError
    from c2d.plugin.hookspecs import ENTRY_POINT_GROUP, EngineSpec, hookimpl
    from c2d.plugin.server import serve

_HOMES = {
    "HandshakeError": "c2d.plugin.handshake",
    "ENTRY_POINT_GROUP": "c2d.plugin.hookspecs",
    "EngineSpec": "c2d.plugin.hookspecs",
    "hookimpl": "c2d.plugin.hookspecs",
    "serve": "c2d.plugin.server",  # not "serve": a submodule of that name would hide the function
}

__all__ = ["ENTRY_POINT_GROUP", "EngineSpec", "HandshakeError", "hookimpl", "serve"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'c2d.plugin' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
