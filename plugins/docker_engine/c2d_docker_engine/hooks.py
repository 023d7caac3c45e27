"""Registers the engine with the node: the entry point ``c2d.engines: docker`` names this module."""

from __future__ import annotations

import sys

from c2d.plugin import EngineSpec, hookimpl
from c2d_docker_engine import __version__

# The image the conformance suite runs its sh/echo/sleep jobs in (tests build it: a busybox image).
CONFORMANCE_IMAGE = {"image": "c2d-test-busybox", "tag": "1"}


@hookimpl
def c2d_engines() -> list[EngineSpec]:
    return [
        EngineSpec(
            name="docker",
            argv=[sys.executable, "-m", "c2d_docker_engine"],
            version=__version__,
            description="Each stage as Docker containers: quotas, GPUs, no network unless allowed",
            # Everything detected: the daemon from the environment (DOCKER_HOST), one environment
            # sized from it. Without a daemon the engine reports UNDETECTED and runs nothing.
            default_config={},
            conformance=dict(CONFORMANCE_IMAGE),
        )
    ]
