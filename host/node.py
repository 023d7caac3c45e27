"""The node process: store, engines, orchestrator, both servers, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import fcntl
import math
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import grpc
import structlog

from c2d.netpolicy import Reach
from host.assets import AssetRegistry
from host.config import Config, ConfigError
from host.engines.registry import EngineRegistry
from host.envaccess import EnvironmentAccess, chain_holds
from host.environments import EnvironmentCatalog
from host.envterms import EnvironmentTerms
from host.identity import NodeIdentity, load_identity
from host.limits import Limits
from host.metrics import NodeMetrics, serve_metrics
from host.netaddr import own_addresses, resolve_listen
from host.orchestrator.orchestrator import Orchestrator
from host.orchestrator.provisioning import Provisioner
from host.results import ResultStore
from host.server import bind_pod_server, serve_pods, start_public_server
from host.services.compute import ComputeServicer
from host.services.pods import PodServicer
from host.store import runner
from host.store.db import open_database
from host.web.dashboard import Dashboard
from host.web.ocean.gateway import OceanGateway
from host.web.ocean.tokens import TokenLifetimes
from host.web.server import HttpServer, application, serve_http
from host.web.sessions import Sessions

if TYPE_CHECKING:
    from host.payments.service import Payments
    from host.payments.setup import ChainSetup

log = structlog.get_logger()
EXPIRY_INTERVAL_SECONDS = 60.0


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


@dataclass
class Servers:
    public: grpc.aio.Server
    pods: grpc.aio.Server


async def run_node(config: Config, stop: asyncio.Event, *, web3: Any = None) -> None:
    """Runs the node until ``stop`` is set. ``web3``: settle payments on this chain (tests, embedding)."""
    data_dir = config.data_dir
    lock = lock_data_dir(data_dir)
    try:
        db = open_database(data_dir, config.storage.database_url or None)
        identity = load_identity(data_dir)
        chain = await asyncio.to_thread(_open_chain, config, identity, web3)
        try:
            await _run(config, identity, stop, chain)
        finally:
            if chain is not None:
                chain.close()
        await asyncio.to_thread(runner.close)
        db.close()
    finally:
        lock.close()


async def _run(config: Config, identity: NodeIdentity, stop: asyncio.Event, chain: ChainSetup | None) -> None:
    data_dir = config.data_dir
    results = ResultStore(data_dir / "results")
    security = config.security
    assets = AssetRegistry(
        data_root=config.assets.data_root or None,
        consumer_reach=Reach.from_lists(security.allow_hosts, security.allow_networks, deny=own_addresses()),
    )
    # The registry calls back once an engine is (re)started; the orchestrator then re-attaches its stages.
    engines = EngineRegistry.from_config(
        config, host_id(data_dir), on_ready=lambda supervisor: orchestrator.recover_engine(supervisor)
    )
    metrics = NodeMetrics()
    metrics.state.engines = lambda: engines.supervisors.values()
    terms = config.environment_terms()
    access = _environment_access(config, terms, chain, metrics)
    payments = _payments(
        chain, identity, metrics, stop_workflow=lambda wid, why: orchestrator.stop_workflow(wid, why)
    )
    catalog = EnvironmentCatalog(
        engines,
        terms,
        development=config.development,
        escrow_address=chain.escrow.address if chain else "",
        payee_address=identity.address,
        default_fees=chain.default_fees if chain else None,
        default_queue_seconds=math.ceil(config.compute.max_queue_seconds),
    )
    pod_listen = resolve_listen(config.pods.listen)
    limits = Limits.from_section(config.raw["limits"])
    pods = bind_pod_server(pod_listen, limits, metrics)
    orchestrator = Orchestrator(
        engines,
        catalog,
        identity,
        pod_endpoint=config.pods.advertise or f"{pod_listen.rpartition(':')[0]}:{pods.port}",
        default_storage_expiry_seconds=config.compute.default_storage_expiry_seconds,
        results=results,
        on_workflow_closed=None if payments is None else lambda _workflow_id: payments.wake(),
        metrics=metrics,
        max_start_crashes=config.compute.max_start_crashes,
    )
    provisioner = Provisioner(assets, results, config.raw["assets"])
    pod_server = await serve_pods(pods, PodServicer(orchestrator, provisioner, results))
    servicer = ComputeServicer(
        engines=engines,
        catalog=catalog,
        orchestrator=orchestrator,
        assets=assets,
        results=results,
        identity=identity,
        default_duration=config.compute.default_max_duration_seconds,
        payments=payments,
        access=access,
    )
    try:
        public, port = await start_public_server(config.node["listen"], servicer, limits, metrics)
    except OSError:
        await pod_server.stop(None)
        raise
    servers = Servers(public, pod_server)
    # Off the public port, on a thread of prometheus_client's own; closed last, after the servers.
    metrics_server = await asyncio.to_thread(serve_metrics, metrics, config.metrics.listen)
    http_server = await _serve_http(config, identity, engines, catalog, metrics, servicer)
    host = config.node["listen"].rpartition(":")[0]
    log.info(
        "node listening",
        address=f"{host}:{port}",
        pods=orchestrator.pod_endpoint,
        node_address=identity.address,
        data_dir=str(data_dir),
        development=config.development,
    )
    tasks = [asyncio.create_task(orchestrator.run()), asyncio.create_task(_expire_results(results))]
    if payments is not None:
        tasks.append(asyncio.create_task(payments.run()))
    try:
        await engines.start(settle_timeout=config.plugins["handshake_timeout_seconds"] + 5)
        _log_engines(engines)
        await stop.wait()
        log.info("node shutting down")
    finally:
        grace = config.node["shutdown_grace_seconds"]
        await asyncio.gather(servers.public.stop(grace), servers.pods.stop(grace))
        if http_server is not None:
            await http_server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await orchestrator.close()
        await engines.stop()
        if payments is not None:
            payments.close()
        access.close()
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.close)
    log.info("node stopped")


async def _serve_http(
    config: Config,
    identity: NodeIdentity,
    engines: EngineRegistry,
    catalog: EnvironmentCatalog,
    metrics: NodeMetrics,
    servicer: ComputeServicer,
) -> HttpServer | None:
    """The HTTP listener with every face on it (or none, when ``[http] listen`` is empty): the
    dashboard under /dashboard/, the Ocean-compatible API on / and /api/services/."""
    settings = config.http
    dashboard = Dashboard(
        engines=engines,
        catalog=catalog,
        census=lambda: metrics.state.census,
        logs=servicer.logs,
        sessions=Sessions(identity.address, settings.operators, settings.session_hours * 3600),
        secure_cookies=settings.secure_cookies,
    )
    app = application()
    dashboard.add_routes(app)
    lifetimes = TokenLifetimes(settings.token_hours * 3600, settings.token_max_hours * 3600)
    ocean = OceanGateway(compute=servicer, catalog=catalog, identity=identity, token_lifetimes=lifetimes)
    ocean.add_routes(app)
    return await serve_http(app, settings.listen)


def _open_chain(config: Config, identity: NodeIdentity, web3: Any) -> ChainSetup | None:
    """The chain payments settle on; web3 is imported only when there may be one (it is slow to load)."""
    if web3 is None and not config.chain.rpc_url and config.dev_chain() is None:
        return None
    from host.payments.setup import open_chain

    return open_chain(config, identity, web3)


def _environment_access(
    config: Config, terms: dict[str, EnvironmentTerms], chain: ChainSetup | None, metrics: NodeMetrics
) -> EnvironmentAccess:
    """Who may use each tier, its access lists read on the chain the node opened. The config was
    checked at load against ``[chain] chain_id``; here against the chain itself."""
    for env_id, env_terms in terms.items():
        for listed in env_terms.access_lists():
            where = f"environments.{env_id}: access list {listed.address} is on chain {listed.chain_id}"
            if chain is None:
                raise ConfigError(f"{where}, but the node opened no chain (set chain.rpc_url)")
            if listed.chain_id != chain.settings.chain_id:
                raise ConfigError(f"{where}, but the node's chain is {chain.settings.chain_id}")
    holds = None if chain is None else chain_holds(chain.escrow.chain.w3)
    return EnvironmentAccess(terms, holds, cache_seconds=config.chain.access_cache_seconds, metrics=metrics)


def _payments(
    chain: ChainSetup | None,
    identity: NodeIdentity,
    metrics: NodeMetrics,
    *,
    stop_workflow: Callable[[str, str], Awaitable[None]],
) -> Payments | None:
    if chain is None:
        log.info("no chain configured: this node computes in the free tier only")
        return None
    from host.payments.service import Payments

    payments = Payments(
        chain.escrow,
        chain.settings,
        signing_key=identity.private_key,
        stop_workflow=stop_workflow,
        metrics=metrics,
    )
    log.info("payments settle on chain", chain_id=chain.settings.chain_id, escrow=chain.escrow.address)
    return payments


async def _expire_results(results: ResultStore) -> None:
    while True:
        try:
            removed = await results.expire()
        except Exception as exc:  # a full disk or a lost database: said, and tried again next time
            log.warning("expiring results failed", error=str(exc))
        else:
            if removed:
                log.info("expired results removed", count=removed)
        await asyncio.sleep(EXPIRY_INTERVAL_SECONDS)


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
