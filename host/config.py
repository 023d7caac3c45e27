"""The node's configuration: embedded defaults < TOML file < environment < command line.

Environment overrides are ``C2D_<SECTION>__<KEY>`` (double underscore between
levels), e.g. ``C2D_NODE__LISTEN=0.0.0.0:8470`` or
``C2D_ENGINES__EXTERNAL_STUB__ENABLED=true``; values are read as TOML values
when they parse as one (``true``, ``3``, ``[1, 2]``) and as strings otherwise.
A setting whose default is a string takes the text as it is (unless it is a quoted
TOML string): ``C2D_CHAIN__ESCROW_ADDRESS=0x5FbD...`` is an address, not TOML's hex integer.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c2d.chain import ESCROW_KINDS
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
        # How long a stage may wait in the queue for capacity before it expires, in an
        # environment that sets no max_queue_seconds of its own; workflows may ask for less.
        "max_queue_seconds": 3600.0,
        # Results are kept this long when the environment does not say.
        "default_storage_expiry_seconds": 7 * 24 * 3600,
        "default_max_duration_seconds": 600,
        # A stage whose start the engine died on this many times ends instead of being retried.
        "max_start_crashes": 3,
    },
    # The EVM chain paid compute settles on (escrow locks and claims).
    "chain": {
        # JSON-RPC endpoint; unset: no chain, unless a dev chain runs (see "dev").
        "rpc_url": "",
        "chain_id": 0,
        "escrow_address": "",
        # Which escrow contract escrow_address is: "c2d" (contracts/Escrow.sol) or "ocean"
        # (Ocean Protocol's Escrow from @oceanprotocol/contracts); both settle the same way.
        "escrow_kind": "c2d",
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
        # How long a consumer's token balance read for an environment's access list counts
        # (a burst of starts reads once); a token transferred away stops granting after this.
        "access_cache_seconds": 10.0,
        # Locks claimed (or, expired, cancelled) in one transaction when several are ready at
        # once; 1 sends one claim per workflow.
        "claim_batch_size": 20,
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
    "metrics": {
        # Prometheus endpoint (GET /metrics), a listener of its own, off the public API port.
        # HOST:PORT (an IP address or localhost); "" serves none. Loopback by default: scrape it
        # from this machine, or bind an address only the monitoring network reaches.
        "listen": "127.0.0.1:9470",
    },
    "http": {
        # The node's HTTP listener: the dashboard (host/web). HOST:PORT; "" serves none.
        # Loopback by default; put it behind a TLS proxy to reach it from elsewhere.
        "listen": "127.0.0.1:8000",
        # Addresses that sign in to the dashboard as its operator, besides the node key's.
        "operators": [],
        "session_hours": 12.0,  # a sign-in lasts this long
        "secure_cookies": False,  # mark the session cookie Secure (set when served over HTTPS)
        # The Ocean face's auth tokens (host/web/ocean/tokens.py): how long one lasts when its
        # request names no validUntil, and the longest any may last (at most 30 days).
        "token_hours": 24.0,
        "token_max_hours": 720.0,
    },
    "security": {
        # Consumers' URLs reach public addresses only. Exceptions: host names (exact,
        # e.g. "data.lan") and networks (CIDR, e.g. "10.1.0.0/16") they may also reach.
        "allow_hosts": [],
        "allow_networks": [],
    },
}


MAX_QUEUE_SECONDS = 2**32 - 1  # what Environment.max_queue_seconds holds
MAX_ACCESS_CACHE_SECONDS = 3600  # a token sold keeps granting this long at most
MAX_CLAIM_BATCH = 100  # locks per claim transaction: well inside a block's gas limit


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


# Typed sections: what the node's modules read, checked and converted once when the config loads.


@dataclass(frozen=True)
class ChainSection:
    """[chain]: the EVM chain paid compute settles on (escrow locks and claims)."""

    rpc_url: str
    chain_id: int
    escrow_address: str
    escrow_kind: str  # one of c2d.chain.ESCROW_KINDS: "c2d" or "ocean"
    tokens: tuple[str, ...]  # as configured; empty: those the environments' fees name
    dev: str  # "auto", "anvil", "py-evm" or "off"
    dev_port: int
    receipt_timeout_seconds: float
    confirmations: int
    claim_margin_seconds: int
    retry_max_seconds: float
    withdraw_earnings: bool
    sweep_interval_seconds: float
    access_cache_seconds: float
    claim_batch_size: int

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ChainSection:
        read = _Reader(section, "chain")
        return cls(
            rpc_url=read.text("rpc_url"),
            chain_id=read.whole("chain_id"),
            escrow_address=read.text("escrow_address"),
            escrow_kind=read.text("escrow_kind"),
            tokens=read.texts("tokens"),
            dev=read.text("dev"),
            dev_port=read.whole("dev_port"),
            receipt_timeout_seconds=read.number("receipt_timeout_seconds"),
            confirmations=read.whole("confirmations"),
            claim_margin_seconds=read.whole("claim_margin_seconds"),
            retry_max_seconds=read.number("retry_max_seconds"),
            withdraw_earnings=read.flag("withdraw_earnings"),
            sweep_interval_seconds=read.number("sweep_interval_seconds"),
            access_cache_seconds=read.number("access_cache_seconds"),
            claim_batch_size=read.whole("claim_batch_size"),
        )


@dataclass(frozen=True)
class ComputeSection:
    """[compute]: queueing and the defaults of what an environment does not say."""

    max_queue_seconds: float  # the queue limit of an environment without its own max_queue_seconds
    default_storage_expiry_seconds: int
    default_max_duration_seconds: int
    max_start_crashes: int  # the engine died this many times starting a stage: it ends

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ComputeSection:
        read = _Reader(section, "compute")
        queue_seconds = read.number("max_queue_seconds")
        if not 1 <= queue_seconds <= MAX_QUEUE_SECONDS:
            raise ConfigError(
                f"compute.max_queue_seconds must be between 1 and {MAX_QUEUE_SECONDS}, got {queue_seconds:g}"
            )
        start_crashes = read.whole("max_start_crashes")
        if start_crashes < 1:
            raise ConfigError(f"compute.max_start_crashes must be at least 1, got {start_crashes}")
        return cls(
            max_queue_seconds=queue_seconds,
            default_storage_expiry_seconds=read.whole("default_storage_expiry_seconds"),
            default_max_duration_seconds=read.whole("default_max_duration_seconds"),
            max_start_crashes=start_crashes,
        )


@dataclass(frozen=True)
class StorageSection:
    """[storage]: where the node's database is."""

    database_url: str  # peewee database URL; "": SQLite at <data_dir>/node.db

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> StorageSection:
        return cls(database_url=_Reader(section, "storage").text("database_url"))


@dataclass(frozen=True)
class PodsSection:
    """[pods]: the PodService listener that pods call back on."""

    listen: str  # HOST:PORT, or "auto:PORT"
    advertise: str  # HOST:PORT pods are told to call; "": the listen address

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> PodsSection:
        read = _Reader(section, "pods")
        return cls(listen=read.text("listen"), advertise=read.text("advertise"))


@dataclass(frozen=True)
class AssetsSection:
    """[assets]: where registered assets' files are found."""

    data_root: str  # what "local" files are relative to; "": none allowed
    ipfs_gateway: str
    arweave_gateway: str

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AssetsSection:
        read = _Reader(section, "assets")
        return cls(
            data_root=read.text("data_root"),
            ipfs_gateway=read.text("ipfs_gateway"),
            arweave_gateway=read.text("arweave_gateway"),
        )


@dataclass(frozen=True)
class MetricsSection:
    """[metrics]: the Prometheus endpoint (host.metrics)."""

    listen: str  # HOST:PORT; "": no endpoint

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> MetricsSection:
        read = _Reader(section, "metrics")
        listen = read.text("listen").strip()
        if listen:
            try:
                split_host_port(listen)
            except ValueError as exc:
                raise ConfigError(f"metrics.listen {exc}") from None
        return cls(listen=listen)


MAX_TOKEN_HOURS = 30 * 24  # no Ocean auth token lasts longer than thirty days


@dataclass(frozen=True)
class HttpSection:
    """[http]: the node's HTTP listener and its dashboard (host.web)."""

    listen: str  # HOST:PORT; "": no listener
    operators: tuple[str, ...]  # lower-case addresses, besides the node key's
    session_hours: float
    secure_cookies: bool
    token_hours: float  # an Ocean auth token's lifetime when its request names none
    token_max_hours: float  # and the longest one may last

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> HttpSection:
        read = _Reader(section, "http")
        listen = read.text("listen").strip()
        if listen:
            try:
                split_host_port(listen)
            except ValueError as exc:
                raise ConfigError(f"http.listen {exc}") from None
        operators = tuple(a.lower() for a in read.texts("operators"))
        for address in operators:
            if not re.fullmatch(r"0x[0-9a-f]{40}", address):
                raise ConfigError(f"http.operators: {address!r} is not an Ethereum address")
        hours = read.number("session_hours")
        if not 0 < hours <= 24 * 30:
            raise ConfigError(f"http.session_hours must be more than 0 and at most 720, got {hours}")
        token_max = read.number("token_max_hours")
        if not 0 < token_max <= MAX_TOKEN_HOURS:
            raise ConfigError(
                f"http.token_max_hours must be more than 0 and at most {MAX_TOKEN_HOURS:g}, got {token_max}"
            )
        token_hours = read.number("token_hours")
        if not 0 < token_hours <= token_max:
            raise ConfigError(
                f"http.token_hours must be more than 0 and at most token_max_hours ({token_max:g}), got {token_hours}"
            )
        return cls(
            listen=listen,
            operators=operators,
            session_hours=hours,
            secure_cookies=read.flag("secure_cookies"),
            token_hours=token_hours,
            token_max_hours=token_max,
        )


def split_host_port(listen: str) -> tuple[str, int]:
    """``127.0.0.1:9470`` -> ("127.0.0.1", 9470); ``[::1]:9470`` -> ("::1", 9470).

    ValueError unless HOST:PORT with an IP address (or localhost) for HOST."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT, got {listen!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"must name an IP address or localhost, got {host!r}") from None
    return host, int(port)


@dataclass(frozen=True)
class SecuritySection:
    """[security]: what consumers' URLs may reach besides public addresses."""

    allow_hosts: tuple[str, ...]
    allow_networks: tuple[str, ...]

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> SecuritySection:
        read = _Reader(section, "security")
        return cls(allow_hosts=read.texts("allow_hosts"), allow_networks=read.texts("allow_networks"))


@dataclass
class Config:
    """The merged configuration: typed sections for what the node reads; ``raw`` keeps every
    section as merged (the engines' tables are given to them as they are)."""

    raw: dict[str, Any]
    # True when no config file was given: engines then get their dev defaults.
    development: bool = True
    source: Path | None = None
    env_overrides: list[str] = field(default_factory=list)
    chain: ChainSection = field(init=False)
    compute: ComputeSection = field(init=False)
    storage: StorageSection = field(init=False)
    pods: PodsSection = field(init=False)
    assets: AssetsSection = field(init=False)
    security: SecuritySection = field(init=False)
    metrics: MetricsSection = field(init=False)
    http: HttpSection = field(init=False)

    def __post_init__(self) -> None:
        self.chain = ChainSection.from_section(self.raw["chain"])
        self.compute = ComputeSection.from_section(self.raw["compute"])
        self.storage = StorageSection.from_section(self.raw["storage"])
        self.pods = PodsSection.from_section(self.raw["pods"])
        self.assets = AssetsSection.from_section(self.raw["assets"])
        self.security = SecuritySection.from_section(self.raw["security"])
        self.metrics = MetricsSection.from_section(self.raw["metrics"])
        self.http = HttpSection.from_section(self.raw["http"])

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
        chain = self.chain
        if chain.rpc_url or chain.dev == "off" or (chain.dev == "auto" and not self.development):
            return None
        return "py-evm" if chain.dev == "py-evm" else "anvil"

    def environment_terms(self) -> dict[str, EnvironmentTerms]:
        """The operator's ``[environments]`` terms, parsed (checked already when the config loaded)."""
        return _environment_terms(self.raw)

    def engine_section(self, name: str) -> dict[str, Any] | None:
        """The engine's table, or None when the config does not mention it."""
        section = self.raw.get("engines", {}).get(name)
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"[engines.{name}] must be a table, not {type(section).__name__}")
        return section


class _Reader:
    """Reads one section's values as the types its dataclass declares; ConfigError names the key."""

    def __init__(self, section: Mapping[str, Any], where: str) -> None:
        if not isinstance(section, Mapping):
            raise ConfigError(f"[{where}] must be a table, not {type(section).__name__}")
        self._section = section
        self._where = where

    def _wrong(self, key: str, kind: str) -> ConfigError:
        return ConfigError(f"{self._where}.{key} must be {kind}, got {self._section.get(key)!r}")

    def text(self, key: str) -> str:
        value = self._section[key]
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._section[key]
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise self._wrong(key, "a list of strings")
        return tuple(value)

    def whole(self, key: str) -> int:
        value = self._section[key]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "a whole number")
        return value

    def number(self, key: str) -> float:
        value = self._section[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._wrong(key, "a number")
        return float(value)

    def flag(self, key: str) -> bool:
        value = self._section[key]
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value


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
        parsed = _parse_env_value(value)
        if isinstance(_default_at(keys), str) and not isinstance(parsed, str):
            parsed = value
        _set_dotted(raw, keys, parsed)
        applied.append(name)
    return applied


def _default_at(keys: list[str]) -> Any:
    """The embedded default of a dotted setting, or None when it has none."""
    node: Any = DEFAULTS
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


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
    _validate_access_chains(_environment_terms(raw), raw["chain"])


def _environment_terms(raw: dict[str, Any]) -> dict[str, EnvironmentTerms]:
    try:
        return parse_terms(raw["environments"])
    except TermsError as exc:
        raise ConfigError(str(exc)) from None


def _validate_access_chains(terms: dict[str, EnvironmentTerms], chain: dict[str, Any]) -> None:
    """Access lists are read on the node's own chain: one on another chain, or on none, could never
    be checked, so every start in its tier would be refused."""
    node_chain = chain["chain_id"]
    for env_id, env_terms in terms.items():
        for listed in env_terms.access_lists():
            where = f"environments.{env_id}: access list {listed.address} on chain {listed.chain_id}"
            if not node_chain:
                raise ConfigError(
                    f"{where} needs the node's chain: set chain.chain_id (and chain.rpc_url) to {listed.chain_id}"
                )
            if listed.chain_id != node_chain:
                raise ConfigError(
                    f"{where} is not on the node's chain ({node_chain}): the node reads only its own"
                )


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
    if chain["escrow_kind"] not in ESCROW_KINDS:
        raise ConfigError(
            f"chain.escrow_kind must be {' or '.join(ESCROW_KINDS)}, got {chain['escrow_kind']!r}"
        )
    if chain["rpc_url"] and (not isinstance(chain["chain_id"], int) or chain["chain_id"] <= 0):
        raise ConfigError("chain.chain_id must be set (a positive integer) with chain.rpc_url")
    if chain["rpc_url"] and not chain["escrow_address"]:
        raise ConfigError("chain.escrow_address must be set with chain.rpc_url")
    if not isinstance(chain["confirmations"], int) or chain["confirmations"] < 0:
        raise ConfigError(
            f"chain.confirmations must be a non-negative integer, got {chain['confirmations']!r}"
        )
    cache = chain["access_cache_seconds"]
    if (
        isinstance(cache, bool)
        or not isinstance(cache, int | float)
        or not 0 <= cache <= MAX_ACCESS_CACHE_SECONDS
    ):
        raise ConfigError(
            f"chain.access_cache_seconds must be from 0 to {MAX_ACCESS_CACHE_SECONDS} seconds, got {cache!r}"
        )
    batch = chain["claim_batch_size"]
    if not (isinstance(batch, int) and not isinstance(batch, bool) and 1 <= batch <= MAX_CLAIM_BATCH):
        raise ConfigError(
            f"chain.claim_batch_size must be a whole number from 1 to {MAX_CLAIM_BATCH}, got {batch!r}"
        )
    tokens = chain["tokens"]
    if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        raise ConfigError(f"chain.tokens must be a list of token addresses, got {tokens!r}")
