"""structlog set-up for the node: console for people, JSON lines for machines."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    colors = sys.stderr.isatty()
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=_traceback_formatter(colors))
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if fmt == "json" else _keep_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _traceback_formatter(colors: bool) -> structlog.typing.ExceptionRenderer:
    """Tracebacks without their frames' local variables: those hold secrets (pod keys, registry
    passwords) that must never reach a log. Rich's formatter shows them by default."""
    if structlog.dev.rich is not None:
        return structlog.dev.RichTracebackFormatter(
            color_system="truecolor" if colors else None, show_locals=False
        )
    return structlog.dev.plain_traceback


def _keep_exc_info(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return event


def plugin_log_level(name: str) -> str:
    """Maps a plugin's level name onto one structlog knows."""
    name = (name or "info").lower()
    if name in ("warn", "warning"):
        return "warning"
    if name in ("critical", "fatal", "exception"):
        return "critical"
    if name == "trace":  # hclog's lowest level
        return "debug"
    return name if name in ("debug", "info", "error") else "info"
