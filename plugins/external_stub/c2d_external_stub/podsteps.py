"""The pod steps around a job's algorithm: how the shim starts them and what their end means.

A job whose spec has a ``pod`` record runs ``<python> -m pods.configuration``
before the algorithm and ``<python> -m pods.publishing`` after it, both in the
job directory with ``C2D_DATA`` pointing at it and the seed's variables
(``nodePeerId``, ``nodeHttpApi``, ``privateKey``, ``jobId``) telling them how
to call the node back. The pods are the node's own code, not the consumer's:
they get no resource limits, only a time limit (``pod_timeout_seconds``).

Standard library only: the shim imports this module.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from c2d_external_stub.jobdir import Record
from c2d_external_stub.procinfo import signal_name

CONFIGURATION = "configuration"
PUBLISHING = "publishing"
MODULES = {CONFIGURATION: "pods.configuration", PUBLISHING: "pods.publishing"}
PROBE_TIMEOUT_SECONDS = 15.0
PROBE = "import importlib.util, sys; sys.exit(importlib.util.find_spec('pods.configuration') is None)"
# Prints where the interpreter finds its own code: its prefixes and the packages the pods import
# (an editable install keeps them outside the prefix), so a sandbox can bind exactly those.
CODE_PROBE = (
    "import importlib.util, json, sys; "
    "specs = [importlib.util.find_spec(m) for m in ('pods', 'c2d')]; "
    "print(json.dumps([sys.prefix, sys.base_prefix] + "
    "[p for s in specs if s for p in (s.submodule_search_locations or [])]))"
)
# Passed on from the shim's own environment, so an interpreter set up through them finds the pods.
INHERITED = ("PYTHONPATH",)


@dataclass(frozen=True)
class StepEnd:
    """How a pod step ended: fine, stopped, or failed (with a few words on how)."""

    stopped: bool = False
    failure: str | None = None


def name(step: str) -> str:
    return f"pod-{step}"


def argv(pod: Record, step: str) -> list[str]:
    return [str(pod["python"]), "-m", MODULES[step]]


def environment(pod: Record, job_id: str, data: Path, inherited: Mapping[str, str]) -> dict[str, str]:
    """The pod's variables; ``PYTHONSAFEPATH`` keeps the job directory (the algorithm's) off its import path."""
    env = {key: inherited[key] for key in INHERITED if inherited.get(key)}
    env.update(
        {
            "nodePeerId": str(pod.get("node_peer_id", "")),
            "nodeHttpApi": str(pod["node_http_api"]),
            "privateKey": str(pod["private_key"]),
            "jobId": job_id,
            "C2D_DATA": str(data),
            "PYTHONSAFEPATH": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def ended(step: str, returncode: int, reason: str | None, limit_seconds: float) -> StepEnd:
    """The StepEnd of a pod process that returned ``returncode`` (``reason``: stopped, timed_out)."""
    if reason == "stopped":
        return StepEnd(stopped=True)
    if reason == "timed_out":
        return StepEnd(failure=f"{name(step)} ran past its time limit of {limit_seconds:g} s")
    if returncode < 0:
        return StepEnd(failure=f"{name(step)} was killed by {signal_name(-returncode)}")
    if returncode != 0:
        return StepEnd(failure=f"{name(step)} exited with code {returncode}")
    return StepEnd()


def pods_missing(python: str) -> str | None:
    """Why ``python`` cannot run the pods (not there, no ``pods`` package), or None when it can."""
    try:
        result = subprocess.run(
            [python, "-c", PROBE],
            cwd="/",  # as for the pods themselves, what the current folder holds does not count
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {python!r}: {exc}"
    if result.returncode != 0:
        return f"{python!r} has no 'pods' package (install c2d-node into its environment)"
    return None


def code_paths(python: str) -> tuple[str, ...]:
    """Where ``python`` finds the pods' code, outside the system folders a sandbox binds anyway;
    empty when it cannot tell (the pods then fail to start in a sandbox, and say so)."""
    try:
        result = subprocess.run(
            [python, "-c", CODE_PROBE],
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=True,
        )
        found = json.loads(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ()
    paths = {os.path.realpath(str(p)) for p in found if os.path.isdir(str(p))}
    system = ("/usr", "/bin", "/sbin", "/lib")
    return tuple(sorted(p for p in paths if not p.startswith(system)))
