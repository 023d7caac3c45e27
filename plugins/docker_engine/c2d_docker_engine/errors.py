"""The engine's failed calls: the SDK kit's :class:`EngineError` (a gRPC status and a message)."""

from __future__ import annotations

from c2d.plugin.kit.errors import EngineError, invalid, not_found, precondition, unavailable

__all__ = ["EngineError", "invalid", "not_found", "precondition", "unavailable"]
