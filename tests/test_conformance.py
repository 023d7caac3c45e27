"""The engine conformance suite, run against the reference engine ``external_stub``.

The suite runs in a subprocess, exactly as an engine author runs it
(``python -m c2d.conformance ENGINE``): it starts plugin processes, owns
their process groups and its own pytest session, none of which should leak
into this test run. Its whole output is shown when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENGINE = "external_stub"
SUITE_TIMEOUT = 180  # the suite itself takes about 15 s


def run(*args: str, timeout: float = SUITE_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Runs ``python ARGS`` from the repo root with this run's pytest settings kept out of it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "C2D_CONFORMANCE_")) or k == "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit status {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def test_external_stub_passes_the_conformance_suite() -> None:
    result = run("-m", "c2d.conformance", ENGINE, "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, f"the conformance suite failed against {ENGINE}:\n{output(result)}"
    assert " passed" in result.stdout, f"the suite ran no tests:\n{output(result)}"


def test_suite_runs_as_pytest_pyargs() -> None:
    """The other documented way in: the plugin loaded with -p and the suite collected with --pyargs."""
    result = run(
        "-m",
        "pytest",
        "-p",
        "c2d.conformance.plugin",
        "--pyargs",
        "c2d.conformance",
        "--c2d-engine",
        ENGINE,
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        timeout=60,
    )
    assert result.returncode == 0, f"collecting the suite with --pyargs failed:\n{output(result)}"
    collected = "test_job_runs_to_finished" in result.stdout
    assert collected, f"the suite's tests were not collected:\n{output(result)}"


def test_unknown_engine_is_a_usage_error() -> None:
    result = run("-m", "c2d.conformance", "no_such_engine", "-q", "-p", "no:cacheprovider", timeout=60)
    assert result.returncode == 4, f"an unknown engine must be a usage error (status 4):\n{output(result)}"
    assert "no engine named 'no_such_engine'" in result.stdout + result.stderr, output(result)
