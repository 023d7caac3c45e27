"""The stub engine, except that its process dies in StartJob of a stage whose command says
``crash-the-engine``: a stage whose start crashes its engine every time.

Registered with a node through a ``c2d.engines`` entry point (``start_crasher = start_crasher``,
from a ``.dist-info`` on PYTHONPATH, as tests/test_start_crashes.py writes it); the node runs
this file as the plugin. Every other stage runs as on the stub.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from c2d.plugin import EngineSpec, hookimpl

NAME = "start_crasher"
CRASH_MARK = "crash-the-engine"
CRASH_STATUS = 70


@hookimpl
def c2d_engines() -> list[EngineSpec]:
    return [
        EngineSpec(
            name=NAME,
            argv=[sys.executable, os.path.abspath(__file__)],
            version="0",
            description="the stub engine, dying in StartJob of a stage that asks it to",
            default_config={"enabled": True},
            dev_config={"enabled": True},
        )
    ]


def main() -> None:
    from c2d.plugin import serve
    from c2d_external_stub.engine import EngineServicer

    class CrashingServicer(EngineServicer):
        def StartJob(self, request: Any, context: Any) -> Any:
            if CRASH_MARK in request.spec.container.command:
                print(
                    f"crashing on purpose in StartJob of {request.spec.job_id}", file=sys.stderr, flush=True
                )
                os._exit(CRASH_STATUS)
            return super().StartJob(request, context)

    serve(CrashingServicer(), name=NAME)


if __name__ == "__main__":
    main()
