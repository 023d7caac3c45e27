"""Finds installed engines: pluggy over the ``c2d.engines`` entry points.

Like datasette and llm, every engine (the built-in ones too) is registered
the same way, through its distribution's entry point; ``C2D_LOAD_PLUGINS``
(comma-separated entry-point names) limits which are loaded, and an empty
value loads none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from c2d.plugin import hookspecs
from c2d.plugin.hookspecs import ENTRY_POINT_GROUP, EngineSpec

ALLOWLIST_ENV = "C2D_LOAD_PLUGINS"


@dataclass(frozen=True)
class DiscoveredEngine:
    spec: EngineSpec
    entry_point: str
    distribution: str
    distribution_version: str


def allowlist_from_env(environ: dict[str, str] | None = None) -> set[str] | None:
    """None when unset (load everything); otherwise the names to load."""
    value = (environ if environ is not None else os.environ).get(ALLOWLIST_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def plugin_manager(allow: set[str] | None) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if allow is None or ep.name in allow:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
    return pm


def discover_engines(allow: set[str] | None = None) -> list[DiscoveredEngine]:
    """Every engine the allowed distributions provide, in a stable order."""
    pm = plugin_manager(allow)
    found: list[DiscoveredEngine] = []
    for module, dist in pm.list_plugin_distinfo():
        hook = getattr(module, "c2d_engines", None)
        if hook is None:
            continue
        entry_point = pm.get_name(module) or ""
        for spec in hook():
            found.append(DiscoveredEngine(spec, entry_point, dist.project_name, dist.version))
    return sorted(found, key=lambda e: e.spec.name)


def find_engine(name: str) -> DiscoveredEngine:
    """The installed engine called ``name``; LookupError listing what is installed."""
    engines = discover_engines()
    for engine in engines:
        if engine.spec.name == name:
            return engine
    installed = ", ".join(e.spec.name for e in engines) or "none"
    raise LookupError(f"no engine named {name!r} is installed (installed: {installed})")
