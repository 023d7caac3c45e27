"""``python -m c2d_docker_engine``: the plugin process the node starts (never run by hand)."""

from c2d.plugin import serve
from c2d_docker_engine.engine import NAME, EngineServicer


def main() -> None:
    servicer = EngineServicer()
    serve(servicer, name=NAME, on_shutdown=servicer.shutdown)


if __name__ == "__main__":
    main()
