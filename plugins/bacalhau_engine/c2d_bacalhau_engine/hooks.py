"""Registers the engine with the node: the entry point ``c2d.engines: bacalhau`` names this module."""

from __future__ import annotations

import sys

from c2d.plugin import EngineSpec, hookimpl
from c2d_bacalhau_engine import __version__

# The image the conformance suite runs its sh/echo/sleep jobs in (tests build it: a busybox image).
CONFORMANCE_IMAGE = {"image": "c2d-test-busybox", "tag": "1"}


@hookimpl
def c2d_engines() -> list[EngineSpec]:
    return [
        EngineSpec(
            name="bacalhau",
            argv=[sys.executable, "-m", "c2d_bacalhau_engine"],
            version=__version__,
            description="Each stage as Bacalhau batch jobs: granted resources, no network unless allowed",
            # The orchestrator's address: url in [engines.bacalhau] (default http://127.0.0.1:1234).
            default_config={},
            conformance=dict(CONFORMANCE_IMAGE),
        )
    ]
