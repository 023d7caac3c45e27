"""Loads the suite's pytest plugin when pytest collects this package without ``-p``.

``python -m c2d.conformance`` hands pytest this package's directory, which
makes this an initial conftest: its ``pytest_addoption`` runs before the
command line is parsed, so ``--c2d-engine`` is known. The plugin is
registered here only when nothing else (``-p c2d.conformance.plugin``, a
``pytest11`` entry point) has registered it already; registering it twice
would declare its options twice.
"""

from __future__ import annotations

import pytest

from c2d.conformance import PLUGIN_MODULE
from c2d.conformance import plugin as conformance_plugin


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.is_registered(conformance_plugin):
        pluginmanager.register(conformance_plugin, PLUGIN_MODULE)
