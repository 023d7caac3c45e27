"""Re-emits a plugin's stderr through the node's structlog, bound to the plugin's name."""

from __future__ import annotations

import json
from typing import Any

from host.logs import plugin_log_level

_DROPPED_KEYS = ("level", "timestamp", "logger")


def emit_plugin_line(log: Any, line: str) -> None:
    """A JSON object line keeps its event, level and fields; anything else is logged as text."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        if line.strip():
            log.info("plugin stderr", line=line)
        return
    level = plugin_log_level(str(record.get("level", "info")))
    event = record.pop("event")
    fields = {key: value for key, value in record.items() if key not in _DROPPED_KEYS}
    fields.pop("plugin", None)  # already bound by the node
    getattr(log, level)(event, **fields)
