"""Where command output goes: JSON for scripts, rich tables on a terminal, plain aligned text otherwise.

Commands hand over data and never print directly, so ``--json`` and a pipe
always get output a program can read, and only a person at a terminal gets
colour, boxes and live displays.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output:
    def __init__(self, json_mode: bool = False, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self._stream = stream
        self._console: Console | None = None

    @property
    def stream(self) -> TextIO:
        # Looked up at use, not at start, so a replaced sys.stdout (tests, redirection) is honoured.
        return self._stream or sys.stdout

    @property
    def rich(self) -> bool:
        """A person is watching: stdout is a terminal and no --json was asked for."""
        return not self.json_mode and _isatty(self.stream)

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def json(self, data: Any) -> None:
        self.stream.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        self.stream.flush()

    def result(self, data: Any, text: str) -> None:
        """``data`` as JSON with --json, else ``text``."""
        if self.json_mode:
            self.json(data)
        else:
            self.line(text)

    def warn(self, text: str) -> None:
        """A note for the person on stderr, so stdout stays the command's output (and valid JSON)."""
        sys.stderr.write(f"warning: {text}\n")
        sys.stderr.flush()

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
        if self.rich:
            self.console.print(rich_table(columns, rows, title))
            return
        if title:
            self.line(title)
        for line in plain_table(columns, rows):
            self.line(line)

    def write_bytes(self, data: bytes) -> None:
        buffer = getattr(self.stream, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            self.stream.write(data.decode("utf-8", errors="replace"))
            self.stream.flush()


# Columns a person copies into the next command, or reads at a glance: never cut or wrapped.
WHOLE = frozenset({"id", "job id", "did", "status", "name"})


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    cells = [[_cell(value) for value in row] for row in rows]
    for i, column in enumerate(columns):
        if column in WHOLE:
            width = max([len(column)] + [len(row[i]) for row in cells])
            table.add_column(column, no_wrap=True, min_width=width)
        else:
            table.add_column(column)
    for row in cells:
        table.add_row(*(Text(value) for value in row))  # Text: no markup from node data
    return table


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns aligned with two spaces, header in capitals, like ``docker ps``."""
    cells = [[column.upper() for column in columns]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
