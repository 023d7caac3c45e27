"""What consumers see of environments: the engines' view plus the operator's terms and live counts.

Engines say what a machine is; the node's config says what it costs and what
is free; the database says how busy it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peewee as pw
from google.protobuf import json_format

from c2d.common.v1 import common_pb2
from host.config import Config
from host.engines.registry import EngineRegistry
from host.errors import invalid
from host.store.models import Stage

FeesFor = Callable[[common_pb2.Environment], list[common_pb2.ChainFees]]


class EnvironmentCatalog:
    def __init__(
        self,
        engines: EngineRegistry,
        config: Config,
        *,
        escrow_address: str = "",
        payee_address: str = "",
        default_fees: FeesFor | None = None,
    ) -> None:
        self.engines = engines
        self.config = config
        self.escrow_address = escrow_address  # for fees that name none
        self.payee_address = payee_address  # the node's own address, which consumers authorize
        self.default_fees = default_fees  # for environments the config prices not at all

    def list(self, engine: str = "") -> list[common_pb2.Environment]:
        environments = self.engines.environments(engine=engine)
        counts = _counts()
        for env in environments:
            self._apply_terms(env)
            env.running_jobs, env.queued_jobs = counts.get(env.id, (0, 0))
        return environments

    def get(self, env_id: str) -> common_pb2.Environment | None:
        return next((env for env in self.list() if env.id == env_id), None)

    def _apply_terms(self, env: common_pb2.Environment) -> None:
        terms = self.config.raw.get("environments", {}).get(env.id, {})
        free = terms.get("free")
        if free is None and self.config.development:
            free = {"enabled": True}  # a development node computes for free
        if free is not None:
            env.free.CopyFrom(_free_tier(env, free))
        for fees in terms.get("fees", []):
            parsed = json_format.ParseDict(fees, common_pb2.ChainFees())
            parsed.escrow_address = parsed.escrow_address or self.escrow_address
            env.fees.append(parsed)
        if not env.fees and self.default_fees is not None:
            env.fees.extend(self.default_fees(env))
        for fees in env.fees:
            fees.payee_address = self.payee_address
        if "storage_expiry_seconds" in terms:
            env.storage_expiry_seconds = int(terms["storage_expiry_seconds"])


def _free_tier(env: common_pb2.Environment, free: dict[str, Any]) -> common_pb2.FreeTier:
    try:
        tier = common_pb2.FreeTier(
            enabled=bool(free.get("enabled", True)),
            max_job_duration_seconds=int(free.get("max_job_duration_seconds", env.max_job_duration_seconds)),
            max_jobs_per_consumer=int(free.get("max_jobs_per_consumer", 0)),
            max_concurrent_jobs=int(free.get("max_concurrent_jobs", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise invalid(f"environments.{env.id}.free is malformed: {exc}") from None
    limits = free.get("resources", {})
    for resource in env.resources:
        if resource.id in limits:
            capped = common_pb2.Resource()
            capped.CopyFrom(resource)
            capped.max = float(limits[resource.id])
            tier.resources.append(capped)
    return tier


def _counts() -> dict[str, tuple[int, int]]:
    """(running, queued) per environment, from the (terminal, environment_id) index."""
    running = pw.fn.SUM(pw.Case(None, [(Stage.granted.is_null(False), 1)], 0))
    rows = (
        Stage.select(Stage.environment_id, running.alias("running"), pw.fn.COUNT(Stage.job_id).alias("all"))
        .where(Stage.terminal == False)
        .group_by(Stage.environment_id)
        .tuples()
    )
    return {env_id: (int(run or 0), int(total) - int(run or 0)) for env_id, run, total in rows}
