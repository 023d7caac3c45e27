"""Key files: one hex private key per file, readable by its owner only."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from c2d import auth
from c2d.cli.errors import UsageError

if TYPE_CHECKING:
    from c2d.cli.context import Context

KEY_FILE_ENV = "C2D_KEY_FILE"
HEX_KEY = re.compile(r"^(0x)?([0-9a-fA-F]{64})$")


def read_key(path: str | Path) -> str:
    """The 0x-prefixed key in ``path``; a UsageError that says why when there is none."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    match = HEX_KEY.match(text)
    if not match:
        raise UsageError(f"key file {path} does not hold a hex private key (64 hex digits, optional 0x)")
    return "0x" + match.group(2).lower()


def write_new_key(path: str | Path, force: bool = False) -> str:
    """Writes a fresh key to ``path`` with mode 0600 and returns its address.

    The file is created with 0600 from the start (never world-readable, even
    for a moment) and an existing file is kept unless ``force``.
    """
    key = auth.new_private_key()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; pass --force to replace it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(key + "\n")
    return auth.address_of(key)


def cmd_key_new(ctx: Context) -> int:
    address = write_new_key(ctx.args.output, force=ctx.args.force)
    ctx.out.result({"address": address, "key_file": str(ctx.args.output)}, f"{address}\t{ctx.args.output}")
    return 0


def cmd_key_address(ctx: Context) -> int:
    path = ctx.args.file or ctx.key_file()
    if not path:
        raise UsageError(f"name the key file: c2d key address FILE, --key-file or {KEY_FILE_ENV}")
    address = auth.address_of(read_key(path))
    ctx.out.result({"address": address}, address)
    return 0
