"""Entry point: parses the command line, runs one command, maps failures to exit codes.

Exit codes: 0 ok, 1 a workflow ended with a failed stage or a payment proof
failed its checks, 2 usage or input errors, 3 the node refused or could not be
reached, 4 the chain refused or could not be reached, 130 interrupted. Errors
are one ``error: ...`` line on stderr, never a traceback: a consumer needs the
node's words, not our stack.
"""

from __future__ import annotations

import contextlib
import os
import sys

from c2d.cli.context import Context
from c2d.cli.errors import ChainFailure, UsageError
from c2d.cli.parser import build_parser
from c2d.client import C2DError
from c2d.workflow import WorkflowFormatError

EXIT_USAGE = 2
EXIT_NODE = 3
EXIT_CHAIN = 4
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Runs ``c2d`` with ``argv`` (default: the process's) and returns its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    context = Context(args)
    try:
        return args.handler(context)
    except (UsageError, WorkflowFormatError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except C2DError as exc:
        return _fail(f"{exc.code}: {exc.message}{_hint(exc, context)}", EXIT_NODE)
    except ChainFailure as exc:
        return _fail(str(exc), EXIT_CHAIN)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `c2d logs JOB | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    finally:
        context.close()


def _silence_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _hint(error: C2DError, context: Context) -> str:
    if error.code == "UNAVAILABLE":
        return f" (is a node listening on {context.node}? set --node or C2D_NODE)"
    return ""
