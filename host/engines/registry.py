"""All engines of the node: which are loaded, what they offer, and their supervisors."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.plugin.discovery import DiscoveredEngine, allowlist_from_env, discover_engines
from host.config import Config
from host.engines.supervisor import EngineSupervisor, PluginSettings, ReadyCallback

log = structlog.get_logger()


def engine_config(engine: DiscoveredEngine, config: Config) -> dict[str, Any]:
    """The engine's defaults (development ones when the node runs without a config file), then its section."""
    spec = engine.spec
    base = spec.dev_config if config.development and spec.dev_config is not None else spec.default_config
    return {**base, **(config.engine_section(spec.name) or {})}


def engines_to_load(config: Config) -> set[str] | None:
    """``C2D_LOAD_PLUGINS`` wins over ``plugins.load``; None loads every installed engine."""
    allow = allowlist_from_env()
    if allow is None and config.plugins.get("load") is not None:
        allow = set(config.plugins["load"])
    return allow


class EngineRegistry:
    def __init__(self, supervisors: list[EngineSupervisor]) -> None:
        self.supervisors = {s.name: s for s in supervisors}

    @classmethod
    def from_config(
        cls,
        config: Config,
        host_id: str,
        engines: list[DiscoveredEngine] | None = None,
        on_ready: ReadyCallback | None = None,
    ) -> EngineRegistry:
        if engines is None:
            engines = discover_engines(engines_to_load(config))
        settings = PluginSettings.from_config(config.plugins)
        supervisors = [
            EngineSupervisor(
                engine,
                config=engine_config(engine, config),
                settings=settings,
                host_id=host_id,
                state_dir=config.data_dir / "engines" / engine.spec.name,
                on_ready=on_ready,
            )
            for engine in engines
        ]
        return cls(supervisors)

    async def start(self, settle_timeout: float) -> None:
        """Starts every engine and waits (bounded) until each is ready or given up on."""
        for supervisor in self.supervisors.values():
            log.info(
                "loading engine plugin",
                engine=supervisor.name,
                distribution=supervisor.engine.distribution,
                version=supervisor.engine.distribution_version,
            )
            supervisor.start()
        waits = [s.wait_settled(settle_timeout) for s in self.supervisors.values()]
        for supervisor, result in zip(
            self.supervisors.values(), await asyncio.gather(*waits, return_exceptions=True), strict=True
        ):
            if isinstance(result, BaseException):
                log.warning("engine not ready yet", engine=supervisor.name, state=supervisor.state_message)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.supervisors.values()))

    def environments(self, engine: str = "") -> list[common_pb2.Environment]:
        """Environments of every healthy engine; an id claimed by two engines goes to the first."""
        seen: dict[str, str] = {}
        result = []
        for supervisor in self.supervisors.values():
            if engine and supervisor.name != engine:
                continue
            for env in supervisor.environments():
                if env.id in seen:
                    log.warning(
                        "duplicate environment id ignored",
                        environment=env.id,
                        engine=supervisor.name,
                        kept_engine=seen[env.id],
                    )
                    continue
                seen[env.id] = supervisor.name
                result.append(env)
        return result

    def builders(self) -> list[str]:
        """The engines whose fingerprint says they build images from a Dockerfile."""
        return [
            s.name
            for s in self.supervisors.values()
            if s.fingerprint is not None and s.fingerprint.capabilities.image_build
        ]

    def describe(self) -> list[compute_pb2.EngineInfo]:
        return [
            compute_pb2.EngineInfo(
                name=s.name,
                plugin_version=s.info.plugin_version,
                distribution=s.engine.distribution,
                distribution_version=s.engine.distribution_version,
                api_version=s.api_version,
                health=s.health,
                health_description=s.health_description,
                restarts=s.restarts,
                pid=s.pid,
            )
            for s in self.supervisors.values()
        ]
