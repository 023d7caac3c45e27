"""Safe file and folder names for what the pods write.

Names come from the node (an input's ``name``, a folder), from URLs and from
archives; none may climb out of the folder it is meant for, hide a separator,
or be a dot name.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MAX_NAME_BYTES = 200
UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f/\\]")


def safe_name(name: str) -> str | None:
    """``name`` with separators and control characters replaced, or None when nothing usable is left."""
    cleaned = UNSAFE_CHARACTERS.sub("_", name).strip()
    while len(cleaned.encode("utf-8")) > MAX_NAME_BYTES:
        cleaned = cleaned[:-1]
    if cleaned in ("", ".", "..") or set(cleaned) == {"."}:
        return None
    return cleaned


def name_from_url(url: str) -> str | None:
    """The URL's last path segment, made safe; None when it has none.

    For a consumer's own URL only: an operator's URL is private, and its segments
    must not reach the consumer as a file name.
    """
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    return safe_name(unquote(path.rsplit("/", 1)[-1]))


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``stem-2.ext``, ``stem-3.ext``… when two files of one folder would share it."""
    if name not in taken:
        taken.add(name)
        return name
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    counter = 2
    while True:
        candidate = f"{stem}-{counter}{dot}{extension}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate
        counter += 1
