"""The ``c2d`` command: a consumer's and operator's terminal front end to a node.

``c2d.cli:main`` is the console script; each command lives in the module of
its topic (compute, admin, keys), output goes through :mod:`c2d.cli.output`.
"""

from c2d.cli.main import main

__all__ = ["main"]
