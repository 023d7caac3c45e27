"""``python -m c2d.conformance ENGINE [--config FILE.toml] [pytest args...]``.

Runs the suite against the installed engine ENGINE and exits with pytest's
status. Arguments other than ``--config`` go to pytest unchanged (``-x``,
``-k stop``, ``-v``...).

The suite's directory is handed to pytest as a path (not ``--pyargs``):
that makes the package's conftest an initial conftest, which registers
the plugin and its options before pytest parses ``--c2d-engine``. No ``-p``
is passed, so a ``pytest11`` entry point for the plugin, if one is ever
added, cannot clash with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = """usage: python -m c2d.conformance ENGINE [--config FILE.toml] [pytest args...]

Runs the engine conformance suite against the installed engine ENGINE.
  --config FILE.toml  the engine's config (default: its EngineSpec dev_config,
                      else its default_config)
Other arguments go to pytest (e.g. -x, -v, -k NAME).
"""


def parse(argv: list[str]) -> tuple[str, str | None, list[str]] | None:
    """(engine, config file, pytest args); None when the usage should be shown."""
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("-"):
        return None
    engine, rest = argv[0], argv[1:]
    config: str | None = None
    passthrough: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--config":
            if i + 1 >= len(rest):
                return None
            config = rest[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            passthrough.append(arg)
        i += 1
    return engine, config, passthrough


def main(argv: list[str] | None = None) -> int:
    parsed = parse(sys.argv[1:] if argv is None else argv)
    if parsed is None:
        sys.stderr.write(USAGE)
        return 4
    engine, config, passthrough = parsed
    import pytest

    suite = Path(__file__).resolve().parent
    args = [str(suite), "--c2d-engine", engine]
    if config:
        args += ["--c2d-config", str(Path(config).resolve())]
    return int(pytest.main([*args, *passthrough]))


if __name__ == "__main__":
    sys.exit(main())
