"""The algorithm's log as an engine serves it: a file read from an offset, or a live stream past an offset.

StreamJobLogs sends bytes with the offset of their first byte, and the node
resumes from the offset it has; these keep offsets the same whether the bytes
come from the job's log file or from a container still running.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_BYTES = 64 * 1024


def read_from(path: Path, offset: int) -> Iterator[bytes]:
    """The file's bytes from ``offset`` on, in chunks; nothing when it is missing or shorter."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    except (FileNotFoundError, NotADirectoryError):
        return


def skip(chunks: Iterable[bytes], count: int) -> Iterator[bytes]:
    """The chunks' bytes past the first ``count`` (a live log the consumer has partly read already)."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:]
        count = 0
