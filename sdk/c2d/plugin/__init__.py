"""The plugin author's kit: the hook to register an engine and serve() to run it."""

from c2d.plugin.handshake import HandshakeError
from c2d.plugin.hookspecs import ENTRY_POINT_GROUP, EngineSpec, hookimpl
from c2d.plugin.serve import serve

__all__ = ["ENTRY_POINT_GROUP", "EngineSpec", "HandshakeError", "hookimpl", "serve"]
