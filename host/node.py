"""The node process: engines, the public server, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import fcntl
import os
import uuid
from pathlib import Path
from typing import IO

import structlog

from host.config import Config
from host.engines.recovery import JobHandles
from host.engines.registry import EngineRegistry
from host.server import start_server

log = structlog.get_logger()


class DataDirLocked(RuntimeError):
    """Another node already runs on this data directory."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Takes an exclusive lock held for the process's life: two nodes on one data dir would corrupt it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "node.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirLocked(f"another node is running on {data_dir}") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def host_id(data_dir: Path) -> str:
    """A stable id for this node, created on first start; engines label their jobs with it."""
    path = data_dir / "host_id"
    if not path.exists():
        path.write_text(uuid.uuid4().hex + "\n")
    return path.read_text().strip()


async def run_node(config: Config, stop: asyncio.Event, started: asyncio.Event | None = None) -> None:
    data_dir = config.data_dir
    lock = lock_data_dir(data_dir)
    try:
        handles = JobHandles()
        engines = EngineRegistry.from_config(config, host_id(data_dir), on_ready=handles.recover)
        server, port = await start_server(config.node["listen"], engines)
        host = config.node["listen"].rpartition(":")[0]
        log.info(
            "node listening", address=f"{host}:{port}", data_dir=str(data_dir), development=config.development
        )
        try:
            await engines.start(settle_timeout=config.plugins["handshake_timeout_seconds"] + 5)
            _log_engines(engines)
            if started is not None:
                started.set()
            await stop.wait()
            log.info("node shutting down")
        finally:
            await server.stop(config.node["shutdown_grace_seconds"])
            await engines.stop()
        log.info("node stopped")
    finally:
        lock.close()


def _log_engines(engines: EngineRegistry) -> None:
    if not engines.supervisors:
        log.warning("no engine plugin installed or allowed; GetEnvironments will be empty")
    for info in engines.describe():
        log.info(
            "engine",
            engine=info.name,
            version=info.plugin_version,
            distribution=f"{info.distribution} {info.distribution_version}",
            health=info.health_description,
        )
