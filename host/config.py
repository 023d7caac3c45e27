"""The node's configuration: embedded defaults < TOML file < environment < command line.

Environment overrides are ``C2D_<SECTION>__<KEY>`` (double underscore between
levels), e.g. ``C2D_NODE__LISTEN=0.0.0.0:8470`` or
``C2D_ENGINES__EXTERNAL_STUB__ENABLED=true``; values are read as TOML values
when they parse as one (``true``, ``3``, ``[1, 2]``) and as strings otherwise.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2d.netpolicy import Reach
from host.envterms import EnvironmentTerms, TermsError, parse_terms

ENV_PREFIX = "C2D_"
# Variables with the prefix that are not config overrides.
RESERVED_ENV = {"C2D_LOAD_PLUGINS", "C2D_REQUIRE_DOCKER", "C2D_TEST_KUBECONFIG"}

DEFAULTS: dict[str, Any] = {
    "node": {
        "data_dir": "./.c2d",
        "listen": "127.0.0.1:8470",
        "log_format": "console",  # or "json"
        "log_level": "info",
        "shutdown_grace_seconds": 10.0,
    },
    "plugins": {
        # Entry-point names to load; unset loads every installed engine.
        # The C2D_LOAD_PLUGINS variable wins over this.
        "load": None,
        "handshake_timeout_seconds": 30.0,
        "health_interval_seconds": 5.0,
        "health_timeout_seconds": 3.0,
        # Consecutive failed health checks before a plugin counts as hung.
        "health_failures": 3,
        "restart_initial_seconds": 0.5,
        "restart_max_seconds": 30.0,
        # More crashes than this within the window: unhealthy, no more restarts.
        "crash_loop_restarts": 5,
        "crash_loop_window_seconds": 120.0,
        "stop_grace_seconds": 5.0,
    },
    # One table per engine name; given to the engine as is.
    "engines": {},
    "storage": {
        # peewee database URL (postgresql://...); unset: SQLite at <data_dir>/node.db
        "database_url": "",
    },
    "pods": {
        # PodService for pods calling back (a separate listener from the public API).
        # "auto": the Docker bridge gateway (172.17.0.1) when docker0 exists, so containers
        # reach it; else loopback. Never all interfaces by default.
        "listen": "auto:8471",
        # host:port pods are told to call; unset: the listen address.
        "advertise": "",
    },
    "assets": {
        # Directory that "local" files of registered assets are relative to; unset: none allowed.
        "data_root": "",
        "ipfs_gateway": "https://ipfs.io",
        "arweave_gateway": "https://arweave.net",
    },
    "compute": {
        # How long a stage may wait in the queue for capacity before it expires.
        "max_queue_seconds": 3600.0,
        # Results are kept this long when the environment does not say.
        "default_storage_expiry_seconds": 7 * 24 * 3600,
        "default_max_duration_seconds": 600,
    },
    # The EVM chain paid compute settles on (escrow locks and claims).
    "chain": {
        # JSON-RPC endpoint; unset: no chain, unless a dev chain runs (see "dev").
        "rpc_url": "",
        "chain_id": 0,
        "escrow_address": "",
        # Token addresses this node takes; empty: those the environments' fees name.
        "tokens": [],
        # Without rpc_url: "auto" starts a local dev chain (anvil when installed, else py-evm
        # in process) on a development node only; "anvil" or "py-evm" always; "off" never.
        "dev": "auto",
        "dev_port": 8545,  # anvil's port when free
        "receipt_timeout_seconds": 120.0,
        "confirmations": 0,  # blocks on top of a lock's or claim's before it counts (reorgs)
        # A lock outlives the workflow's queue and run time by this much, for the claim.
        "claim_margin_seconds": 3600,
        "retry_max_seconds": 30.0,  # backoff cap while the chain is unreachable
        "withdraw_earnings": True,  # claim with claimLockAndWithdraw
        "sweep_interval_seconds": 300.0,  # releasing locks that no workflow honours
    },
    # Per environment id: free tier, fees. Without a config file every environment
    # gets a development free tier.
    "environments": {},
    # What one caller may hold of the public API and the PodService (host/limits.py).
    "limits": {
        "max_message_bytes": 8 * 1024 * 1024,  # one message, received or sent
        "max_concurrent_streams": 100,  # calls at once on one connection
        "max_calls_per_peer": 64,  # calls at once from one IP address, all connections (0: no limit)
        "keepalive_time_seconds": 60.0,  # ping a quiet connection this often ...
        "keepalive_timeout_seconds": 20.0,  # ... and drop it if the ping gets no answer in this
        "max_connection_idle_seconds": 300.0,  # a connection without calls is closed after this
        "max_connection_age_seconds": 3600.0,  # every connection is closed after this (clients reconnect) ...
        "max_connection_age_grace_seconds": 600.0,  # ... with this long for its calls in flight
    },
    "security": {
        # Consumers' URLs reach public addresses only. Exceptions: host names (exact,
        # e.g. "data.lan") and networks (CIDR, e.g. "10.1.0.0/16") they may also reach.
        "allow_hosts": [],
        "allow_networks": [],
    },
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


@dataclass
class Config:
    """The merged configuration; ``raw`` keeps every section for later features."""

    raw: dict[str, Any]
    # True when no config file was given: engines then get their dev defaults.
    development: bool = True
    source: Path | None = None
    env_overrides: list[str] = field(default_factory=list)

    @property
    def node(self) -> dict[str, Any]:
        return self.raw["node"]

    @property
    def plugins(self) -> dict[str, Any]:
        return self.raw["plugins"]

    @property
    def data_dir(self) -> Path:
        return Path(self.node["data_dir"]).expanduser().resolve()

    def dev_chain(self) -> str | None:
        """The dev chain to start ("anvil" preferred, or "py-evm"), or None: a chain is configured,
        or none is wanted."""
        chain = self.raw["chain"]
        if chain["rpc_url"] or chain["dev"] == "off" or (chain["dev"] == "auto" and not self.development):
            return None
        return "py-evm" if chain["dev"] == "py-evm" else "anvil"

    def environment_terms(self) -> dict[str, EnvironmentTerms]:
        """The operator's ``[environments]`` terms, parsed (checked already when the config loaded)."""
        return _environment_terms(self.raw)

    def engine_section(self, name: str) -> dict[str, Any] | None:
        """The engine's table, or None when the config does not mention it."""
        section = self.raw.get("engines", {}).get(name)
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"[engines.{name}] must be a table, not {type(section).__name__}")
        return section


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merges defaults, the TOML file, ``C2D_*`` variables and command-line ``overrides``.

    ``overrides`` maps dotted keys (``node.listen``) to values.
    """
    raw = copy.deepcopy(DEFAULTS)
    if path is not None:
        _merge(raw, _read_toml(path))
    env_keys = _apply_env(raw, environ if environ is not None else os.environ)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted.split("."), value)
    _validate(raw)
    return Config(raw=raw, development=path is None, source=path, env_overrides=env_keys)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    applied = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        _set_dotted(raw, keys, _parse_env_value(value))
        applied.append(name)
    return applied


def _parse_env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _set_dotted(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    target = raw
    for key in keys[:-1]:
        nested = target.setdefault(key, {})
        if not isinstance(nested, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {key} is not a table")
        target = nested
    target[keys[-1]] = value


def _validate(raw: dict[str, Any]) -> None:
    node, plugins = raw["node"], raw["plugins"]
    host, sep, port = str(node["listen"]).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"node.listen must be HOST:PORT, got {node['listen']!r}")
    if node["log_format"] not in ("console", "json"):
        raise ConfigError(f"node.log_format must be 'console' or 'json', got {node['log_format']!r}")
    for key, value in plugins.items():
        if key.endswith(("_seconds", "_failures", "_restarts")) and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 0
        ):
            raise ConfigError(f"plugins.{key} must be a non-negative number, got {value!r}")
    load = plugins["load"]
    if load is not None and not (isinstance(load, list) and all(isinstance(n, str) for n in load)):
        raise ConfigError(f"plugins.load must be a list of entry-point names, got {load!r}")
    if not isinstance(raw.get("engines", {}), dict):
        raise ConfigError("[engines] must be a table of engine tables")
    _validate_chain(raw["chain"])
    _validate_reach(raw["security"])
    _validate_limits(raw["limits"])
    _environment_terms(raw)


def _environment_terms(raw: dict[str, Any]) -> dict[str, EnvironmentTerms]:
    try:
        return parse_terms(raw["environments"])
    except TermsError as exc:
        raise ConfigError(str(exc)) from None


def _validate_limits(limits: dict[str, Any]) -> None:
    for key, value in limits.items():
        if key not in DEFAULTS["limits"]:
            raise ConfigError(f"limits.{key} is not a setting (known: {', '.join(DEFAULTS['limits'])})")
        whole = not key.endswith("_seconds")
        lowest = 0 if key == "max_calls_per_peer" else 1
        highest = 2**31 - 1 if whole else (2**31 - 1) // 1000  # gRPC's channel arguments are C ints (ms)
        if (
            isinstance(value, bool)
            or not isinstance(value, int if whole else int | float)
            or not math.isfinite(value)
            or not lowest <= value <= highest
        ):
            kind = "a whole number" if whole else "a number of seconds"
            raise ConfigError(f"limits.{key} must be {kind} from {lowest} to {highest}, got {value!r}")


def _validate_reach(security: dict[str, Any]) -> None:
    for key in ("allow_hosts", "allow_networks"):
        if not (isinstance(security[key], list) and all(isinstance(v, str) for v in security[key])):
            raise ConfigError(f"security.{key} must be a list of strings, got {security[key]!r}")
    try:
        Reach.from_lists(security["allow_hosts"], security["allow_networks"])
    except ValueError as exc:
        raise ConfigError(f"security: {exc}") from None


def _validate_chain(chain: dict[str, Any]) -> None:
    if chain["dev"] not in ("auto", "anvil", "py-evm", "off"):
        raise ConfigError(f"chain.dev must be auto, anvil, py-evm or off, got {chain['dev']!r}")
    if chain["rpc_url"] and (not isinstance(chain["chain_id"], int) or chain["chain_id"] <= 0):
        raise ConfigError("chain.chain_id must be set (a positive integer) with chain.rpc_url")
    if chain["rpc_url"] and not chain["escrow_address"]:
        raise ConfigError("chain.escrow_address must be set with chain.rpc_url")
    if not isinstance(chain["confirmations"], int) or chain["confirmations"] < 0:
        raise ConfigError(
            f"chain.confirmations must be a non-negative integer, got {chain['confirmations']!r}"
        )
    tokens = chain["tokens"]
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        raise ConfigError(f"chain.tokens must be a list of token addresses, got {tokens!r}")
