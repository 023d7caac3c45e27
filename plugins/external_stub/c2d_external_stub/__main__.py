"""``python -m c2d_external_stub``: the plugin process the node starts (never run by hand)."""

from c2d.plugin import serve
from c2d_external_stub.engine import EngineServicer


def main() -> None:
    serve(EngineServicer(), name="external_stub")


if __name__ == "__main__":
    main()
