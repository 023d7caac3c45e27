"""``python -m c2d_bacalhau_engine``: the plugin process the node starts (never run by hand)."""

import logging

from c2d.plugin import serve
from c2d_bacalhau_engine.engine import NAME, EngineServicer


def main() -> None:
    # The health description says when the orchestrator does not answer; urllib3's retry warnings only repeat it.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    servicer = EngineServicer()
    serve(servicer, name=NAME, on_shutdown=servicer.shutdown)


if __name__ == "__main__":
    main()
