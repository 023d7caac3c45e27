"""Quoting what a caller sent inside an error message: short, escaped, never the whole thing.

A refusal that echoes its input whole lets a caller make it as large as the input (a 1 MB job id
makes the status exceed gRPC's metadata limit, and the caller then sees RESOURCE_EXHAUSTED instead
of the refusal), and one that echoes control characters lets it forge lines in logs and terminals.
Messages therefore quote caller input with :func:`quoted` (a short escaped prefix), and every
status message passes :func:`capped` on its way out (escaped and at most ``MESSAGE_LIMIT`` bytes),
so no path can exceed it even where a message forgot to quote.
"""

from __future__ import annotations

import re

QUOTE_LIMIT = 64
# gRPC's default metadata limit is 8 KiB; the message travels twice (grpc-message, percent-encoded,
# and inside grpc-status-details-bin, base64): 1 KiB of UTF-8 stays well within it.
MESSAGE_LIMIT = 1024
ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``value`` as a Python literal of at most ``limit`` characters of it, control characters escaped;
    a longer value is cut with an ellipsis and its length, e.g. ``'aaaa'… (1048576 characters)``."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) <= limit:
            return repr(data)
        return f"{data[:limit]!r}{ELLIPSIS} ({len(data)} bytes)"
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}{ELLIPSIS} ({len(text)} characters)"


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def capped(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """The whole message with control (and bidi-override) characters escaped, cut to ``limit`` bytes of UTF-8."""
    text = _CONTROL.sub(_escape, message)
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return text
    room = limit - len(ELLIPSIS.encode())
    return encoded[:room].decode("utf-8", errors="ignore") + ELLIPSIS
