"""``python -m host``: run a Compute-to-Data node."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog

from c2d.chain.errors import ChainError
from c2d.plugin.discovery import discover_engines
from host.config import Config, ConfigError, load_config
from host.engines.registry import engine_config, engines_to_load
from host.logs import configure_logging
from host.node import DataDirLocked, run_node
from host.store.db import DatabaseInUse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m host", description="Run a Compute-to-Data node.")
    parser.add_argument("--config", type=Path, help="TOML config file (without one: development defaults)")
    parser.add_argument("--data-dir", help="where the node keeps its state (default ./.c2d)")
    parser.add_argument("--listen", help="HOST:PORT of the public gRPC API (default 127.0.0.1:8470)")
    parser.add_argument("--log-format", choices=("console", "json"))
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--list-plugins", action="store_true", help="list the engine plugins this node would load, and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(
            args.config,
            overrides={
                "node.data_dir": args.data_dir,
                "node.listen": args.listen,
                "node.log_format": args.log_format,
                "node.log_level": args.log_level,
            },
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.node["log_format"], config.node["log_level"])
    if args.list_plugins:
        return list_plugins(config)
    try:
        asyncio.run(_serve(config))
    except (DataDirLocked, DatabaseInUse) as exc:
        structlog.get_logger().error(str(exc))
        return 1
    except ConfigError as exc:  # found only once the chain is open (an access list on another chain)
        structlog.get_logger().error("cannot start the node", error=str(exc))
        return 2
    except ChainError as exc:  # e.g. the RPC serves another chain than [chain].chain_id says
        structlog.get_logger().error("cannot use the configured chain", error=exc.message)
        return 1
    except OSError as exc:
        structlog.get_logger().error("cannot start the node", error=str(exc))
        return 1
    return 0


async def _serve(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_node(config, stop)


def list_plugins(config: Config) -> int:
    engines = discover_engines(engines_to_load(config))
    if not engines:
        print("no engine plugins installed (entry-point group c2d.engines)")
    for engine in engines:
        enabled = engine_config(engine, config)
        print(
            f"{engine.spec.name:20} {engine.spec.version:10} "
            f"{engine.distribution} {engine.distribution_version}  config={enabled}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
