"""Re-emits a plugin's stderr through the node's structlog, bound to the plugin's name.

Two JSON line formats are understood: ours (``event``, ``level``, any other keys) and HashiCorp
hclog's, which go-plugin and Go plugins write (``@level``, ``@message``, ``@timestamp``, ``@module``,
``@caller``, any other keys). hclog's text lines (``<time> [LEVEL]  <message>``) keep their level.
Anything else is logged as a line of text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from host.logs import plugin_log_level

_DROPPED_KEYS = ("level", "timestamp", "logger")
# hclog's own keys: the time is the node's, the rest keep their meaning without the "@".
_HCLOG_DROPPED = ("@level", "@message", "@timestamp")
# hclog's default (non-JSON) format: "2026-01-01T00:00:00.000Z [INFO]  module: message: key=value".
_HCLOG_TEXT = re.compile(r"^\S+ \[(TRACE|DEBUG|INFO|WARN|ERROR)\]\s+(.*)$")


def emit_plugin_line(log: Any, line: str, source: str = "stderr") -> None:
    """A JSON object line keeps its event, level and fields; anything else is logged as text."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("@message"), str):
        level, event, fields = _from_hclog(record)
    elif isinstance(record, dict) and isinstance(record.get("event"), str):
        level = plugin_log_level(str(record.get("level", "info")))
        event = record.pop("event")
        fields = {key: value for key, value in record.items() if key not in _DROPPED_KEYS}
    elif text := _HCLOG_TEXT.match(line):
        getattr(log, plugin_log_level(text.group(1)))(f"plugin {source}", line=text.group(2))
        return
    else:
        if line.strip():
            log.info(f"plugin {source}", line=line)
        return
    fields.pop("plugin", None)  # already bound by the node
    fields.pop("event", None)  # structlog's own key
    getattr(log, level)(event, **fields)


def _from_hclog(record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(level, event, fields) of an hclog JSON line."""
    level = plugin_log_level(str(record.get("@level", "info")))
    event = record["@message"]
    fields: dict[str, Any] = {}
    for key, value in record.items():
        if key in _HCLOG_DROPPED:
            continue
        name = key[1:] if key.startswith("@") else key
        fields[name] = value
    return level, event, fields
