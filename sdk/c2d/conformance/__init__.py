"""The engine conformance suite: pytest checks any engine plugin can run against itself.

It starts the installed engine exactly as the node does (``c2d.plugin.launcher``),
drives it over the engine protocol and checks the semantics documented in
``docs/engine-plugins.md``. Run it with::

    python -m c2d.conformance ENGINE [--config FILE.toml] [pytest args...]

or, with the pytest plugin loaded explicitly::

    pytest -p c2d.conformance.plugin --pyargs c2d.conformance --c2d-engine ENGINE

Layout: :mod:`c2d.conformance.plugin` holds the options and fixtures,
:mod:`c2d.conformance.harness` the sync client around a plugin process, and
the ``test_*.py`` modules the checks themselves.
"""

PLUGIN_MODULE = "c2d.conformance.plugin"
"""The pytest plugin module; ``-p`` takes this name."""

ENGINE_ENV = "C2D_CONFORMANCE_ENGINE"
"""Fallback for ``--c2d-engine`` when the option cannot be given on the command line."""

CONFIG_ENV = "C2D_CONFORMANCE_CONFIG"
"""Fallback for ``--c2d-config``."""

__all__ = ["CONFIG_ENV", "ENGINE_ENV", "PLUGIN_MODULE"]
