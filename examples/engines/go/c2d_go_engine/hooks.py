"""The entry point ``c2d.engines: go_engine``: the Go binary that ``build.sh`` builds.

The binary is ``$C2D_GO_ENGINE_BINARY`` when set, else ``build/c2d-go-engine`` next to this package
(an editable install or a checkout). The pods run on this interpreter (it has the node's code).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from c2d.plugin import EngineSpec, hookimpl
from c2d_go_engine import __version__

BINARY_ENV = "C2D_GO_ENGINE_BINARY"
DEFAULT_BINARY = Path(__file__).resolve().parent.parent / "build" / "c2d-go-engine"


def binary() -> str:
    return os.environ.get(BINARY_ENV) or str(DEFAULT_BINARY)


@hookimpl
def c2d_engines() -> list[EngineSpec]:
    return [
        EngineSpec(
            name="go_engine",
            argv=[binary()],
            version=__version__,
            description="Jobs as local processes, run by an engine written in Go on stock go-plugin",
            default_config={"enabled": False, "pod_python": sys.executable},
            dev_config={"enabled": True, "pod_python": sys.executable},
        )
    ]
