"""The operator's terms for each environment (``[environments."<id>"]``), parsed and checked once.

Engines say what a machine is; these terms say what it costs, what is free and
how long results are kept. They are read when the config is loaded, so a
malformed table stops the node at start with a message naming it, instead of
failing every ``GetEnvironments`` later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from c2d.common.v1 import common_pb2

FREE_SETTINGS = frozenset(
    {"enabled", "max_job_duration_seconds", "max_jobs_per_consumer", "max_concurrent_jobs", "resources"}
)
MAX_SECONDS = 2**32 - 1  # what the Environment message's seconds fields hold
DEFAULT_QUEUE_SECONDS = 3600  # an environment's queue limit when neither it nor [compute] sets one


class TermsError(ValueError):
    """An ``[environments]`` table the node cannot use (host.config turns it into a ConfigError)."""


@dataclass(frozen=True)
class FreeTerms:
    """``[environments."<id>".free]``; a limit left out falls back to the engine's figure (or none)."""

    enabled: bool = True
    max_job_duration_seconds: int | None = None
    max_jobs_per_consumer: int = 0
    max_concurrent_jobs: int = 0
    resources: Mapping[str, float] = field(default_factory=dict)  # resource id -> the most a free job gets

    def tier(self, env: common_pb2.Environment) -> common_pb2.FreeTier:
        """The free tier as consumers see it for this environment."""
        tier = common_pb2.FreeTier(
            enabled=self.enabled,
            max_job_duration_seconds=(
                env.max_job_duration_seconds
                if self.max_job_duration_seconds is None
                else self.max_job_duration_seconds
            ),
            max_jobs_per_consumer=self.max_jobs_per_consumer,
            max_concurrent_jobs=self.max_concurrent_jobs,
        )
        for resource in env.resources:
            if resource.id in self.resources:
                capped = common_pb2.Resource()
                capped.CopyFrom(resource)
                capped.max = self.resources[resource.id]
                tier.resources.append(capped)
        return tier


@dataclass(frozen=True)
class EnvironmentTerms:
    """Everything the operator set for one environment id."""

    free: FreeTerms | None = None
    fees: tuple[common_pb2.ChainFees, ...] = ()  # escrow_address may be empty: the node's escrow then
    storage_expiry_seconds: int | None = None
    max_queue_seconds: int | None = None  # the longest a stage may queue; None: [compute]'s default


def parse_terms(section: Mapping[str, Any]) -> dict[str, EnvironmentTerms]:
    """``[environments]`` as terms per environment id; TermsError names the first malformed table."""
    if not isinstance(section, Mapping):
        raise TermsError("[environments] must be a table of environment tables")
    return {env_id: _parse_one(env_id, table) for env_id, table in section.items()}


def _parse_one(env_id: str, table: Any) -> EnvironmentTerms:
    where = f"environments.{env_id}"
    if not isinstance(table, Mapping):
        raise TermsError(f"[{where}] must be a table, not {type(table).__name__}")
    free = table.get("free")
    expiry = table.get("storage_expiry_seconds")
    try:
        expiry_seconds = None if expiry is None else _count(expiry)
    except ValueError as exc:
        raise TermsError(f"{where}.storage_expiry_seconds: {exc}") from None
    if expiry_seconds == 0:
        raise TermsError(f"{where}.storage_expiry_seconds must be more than 0")
    queue_seconds = _positive(where, "max_queue_seconds", table.get("max_queue_seconds"))
    fees = _list(where, table.get("fees", []))
    return EnvironmentTerms(
        free=None if free is None else _parse_free(where, free),
        fees=tuple(_parse_fees(where, i, entry) for i, entry in enumerate(fees)),
        storage_expiry_seconds=expiry_seconds,
        max_queue_seconds=queue_seconds,
    )


def _positive(where: str, name: str, value: Any) -> int | None:
    """A whole number of seconds above 0 (None when not set), or TermsError naming the setting."""
    if value is None:
        return None
    try:
        seconds = _count(value)
    except ValueError as exc:
        raise TermsError(f"{where}.{name}: {exc}") from None
    if seconds == 0 or seconds > MAX_SECONDS:
        raise TermsError(f"{where}.{name} must be between 1 and {MAX_SECONDS} seconds, got {value!r}")
    return seconds


def _parse_free(where: str, free: Any) -> FreeTerms:
    if not isinstance(free, Mapping):
        raise TermsError(f"[{where}.free] must be a table, not {type(free).__name__}")
    unknown = set(free) - FREE_SETTINGS
    if unknown:
        raise TermsError(f"{where}.free has unknown settings: {', '.join(sorted(unknown))}")
    resources = free.get("resources", {})
    if not isinstance(resources, Mapping):
        raise TermsError(f"{where}.free.resources must be a table of resource id = amount")
    try:
        duration = free.get("max_job_duration_seconds")
        return FreeTerms(
            enabled=bool(free.get("enabled", True)),
            max_job_duration_seconds=None if duration is None else _count(duration),
            max_jobs_per_consumer=_count(free.get("max_jobs_per_consumer", 0)),
            max_concurrent_jobs=_count(free.get("max_concurrent_jobs", 0)),
            resources={str(k): _amount(v) for k, v in resources.items()},
        )
    except (TypeError, ValueError) as exc:
        raise TermsError(f"{where}.free is malformed: {exc}") from None


def _parse_fees(where: str, index: int, fees: Any) -> common_pb2.ChainFees:
    if not isinstance(fees, Mapping):
        raise TermsError(f"{where}.fees[{index}] must be a table")
    try:
        return json_format.ParseDict(dict(fees), common_pb2.ChainFees())
    except json_format.ParseError as exc:
        raise TermsError(f"{where}.fees[{index}] is malformed: {exc}") from None


def _list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TermsError(f"{where}.fees must be an array of tables ([[{where}.fees]])")
    return value


def _count(value: Any) -> int:
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise ValueError(f"want a whole number of at least 0, got {value!r}")
    return int(value)


def _amount(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ValueError(f"want a finite amount of at least 0, got {value!r}")
    return float(value)
