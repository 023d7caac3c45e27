"""The operator's terms for each environment (``[environments."<id>"]``), parsed and checked once.

Engines say what a machine is; these terms say what it costs, what is free,
who may use each tier (allow lists, ERC-721 access lists: :mod:`host.envaccess`
checks them), how much of it one job may have (fair use) and how long results
are kept. They are read when the config is loaded, so a malformed table stops
the node at start with a message naming it, instead of failing every
``GetEnvironments`` later. Resource ids are the engines' own (free text), so
whether an environment has the resources its terms name is known only once its
engine reports it: :meth:`EnvironmentTerms.problem` says so then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from c2d.common.v1 import common_pb2

ACCESS_SETTINGS = frozenset({"allow", "access_lists"})
FREE_SETTINGS = (
    frozenset(
        {
            "enabled",
            "max_job_duration_seconds",
            "max_jobs_per_consumer",
            "max_concurrent_jobs",
            "resources",
            "allow_image_build",
        }
    )
    | ACCESS_SETTINGS
)
PAID_SETTINGS = ACCESS_SETTINGS
ACCESS_LIST_SETTINGS = frozenset({"chain_id", "address"})
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
MAX_ALLOW = 10_000  # addresses in one allow list: a longer one belongs in an access list contract
MAX_ACCESS_LISTS = 16  # contracts per tier: each is a chain read when a consumer starts
RESOURCE_SETTINGS = frozenset({"min", "max", "constraints"})
CONSTRAINT_SETTINGS = frozenset({"id", "min", "max"})
MAX_SECONDS = 2**32 - 1  # what the Environment message's seconds fields hold
DEFAULT_QUEUE_SECONDS = 3600  # an environment's queue limit when neither it nor [compute] sets one


class TermsError(ValueError):
    """An ``[environments]`` table the node cannot use (host.config turns it into a ConfigError)."""


@dataclass(frozen=True)
class AccessList:
    """An ERC-721 contract on a chain: holding one of its tokens (balanceOf > 0) grants access."""

    chain_id: int
    address: str  # lower case

    def message(self) -> common_pb2.AccessList:
        return common_pb2.AccessList(chain_id=self.chain_id, address=self.address)


@dataclass(frozen=True)
class AccessTerms:
    """Who may start jobs in one tier (``allow``, ``access_lists``); nobody is turned away when
    neither is set."""

    allow: frozenset[str] = frozenset()  # lower-case addresses
    access_lists: tuple[AccessList, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.allow or self.access_lists)

    def policy(self) -> common_pb2.AccessPolicy:
        """The tier's restriction as consumers see it: the allow list's addresses stay the operator's."""
        return common_pb2.AccessPolicy(
            allow_list=bool(self.allow), access_lists=[a.message() for a in self.access_lists]
        )


@dataclass(frozen=True)
class FreeTerms:
    """``[environments."<id>".free]``; a limit left out falls back to the engine's figure (or none)."""

    enabled: bool = True
    max_job_duration_seconds: int | None = None
    max_jobs_per_consumer: int = 0
    max_concurrent_jobs: int = 0
    resources: Mapping[str, float] = field(default_factory=dict)  # resource id -> the most a free job gets
    access: AccessTerms = AccessTerms()
    # Free jobs may build their image from a Dockerfile: off unless the operator allows it, as a
    # build costs the node time and disk the free tier's limits do not bound.
    allow_image_build: bool = False

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
            access=self.access.policy(),
            allow_image_build=self.allow_image_build,
        )
        for resource in env.resources:
            if resource.id in self.resources:
                capped = common_pb2.Resource()
                capped.CopyFrom(resource)
                capped.max = min(self.resources[resource.id], resource.max or resource.total)
                tier.resources.append(capped)
        return tier


@dataclass(frozen=True)
class ConstraintTerms:
    """One entry of ``constraints``: this resource per unit of resource ``id``, between min and max."""

    id: str
    min: float = 0.0  # 0: no lower bound
    max: float = 0.0  # 0: no upper bound

    def message(self) -> common_pb2.ResourceConstraint:
        return common_pb2.ResourceConstraint(id=self.id, min=self.min, max=self.max)


@dataclass(frozen=True)
class ResourceTerms:
    """``[environments."<id>".resources.<resource>]``: what one job may have of the resource.

    The operator can only narrow what the engine offers a job: the effective minimum is the
    larger of the two, the effective maximum the smaller (the engine's is at most its total).
    """

    min: float | None = None
    max: float | None = None
    constraints: tuple[ConstraintTerms, ...] = ()

    def apply(self, resource: common_pb2.Resource) -> None:
        """Narrows ``resource`` (an effective environment's, not yet shared) to these terms."""
        if self.min is not None:
            resource.min = max(resource.min, self.min)
        if self.max is not None:
            resource.max = min(resource.max or resource.total, self.max)
        resource.constraints.extend(c.message() for c in self.constraints)


@dataclass(frozen=True)
class EnvironmentTerms:
    """Everything the operator set for one environment id."""

    free: FreeTerms | None = None
    fees: tuple[common_pb2.ChainFees, ...] = ()  # escrow_address may be empty: the node's escrow then
    storage_expiry_seconds: int | None = None
    resources: Mapping[str, ResourceTerms] = field(default_factory=dict)  # resource id -> per-job terms

    def problem(self, env: common_pb2.Environment) -> str | None:
        """Why these terms cannot be applied to ``env`` as its engine reports it, or None.

        A resource the terms name that the environment lacks is most likely a typo: applying the
        rest would silently leave that resource unlimited, so the environment is not offered.
        """
        where = f"environments.{env.id}.resources"
        have = {r.id: r for r in env.resources}
        named = {rid: f"{where}.{rid}" for rid in self.resources}
        named.update(
            {
                c.id: f"{where}.{rid}.constraints"
                for rid, terms in self.resources.items()
                for c in terms.constraints
            }
        )
        for rid, setting in named.items():
            if rid not in have:
                return f"{setting} names resource {rid!r}, which environment {env.id!r} lacks (has {sorted(have)})"
        for rid, terms in self.resources.items():
            engine = have[rid]
            floor = max(engine.min, terms.min or 0.0)
            ceiling = min(engine.max or engine.total, terms.max if terms.max is not None else float("inf"))
            if not floor <= ceiling:
                return f"{where}.{rid}: a job would need at least {floor:g} but may have at most {ceiling:g}"
        return None

    max_queue_seconds: int | None = None  # the longest a stage may queue; None: [compute]'s default
    paid_access: AccessTerms = AccessTerms()  # [environments."<id>".paid]

    def access(self, free: bool) -> AccessTerms:
        """Who may start jobs in the free tier (``free``) or the paid one."""
        if not free:
            return self.paid_access
        return self.free.access if self.free is not None else AccessTerms()

    def access_lists(self) -> tuple[AccessList, ...]:
        """Every access list of both tiers (the chains they are on must be the node's)."""
        return self.access(True).access_lists + self.paid_access.access_lists


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
    resources = _parse_resources(where, table.get("resources", {}))
    free_terms = None if free is None else _parse_free(where, free)
    if free_terms is not None:
        _check_free_fits(where, free_terms, resources)
    paid_access = _parse_paid(where, table.get("paid", {}))
    return EnvironmentTerms(
        free=free_terms,
        fees=tuple(_parse_fees(where, i, entry) for i, entry in enumerate(fees)),
        storage_expiry_seconds=expiry_seconds,
        resources=resources,
        max_queue_seconds=queue_seconds,
        paid_access=paid_access,
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


def _parse_resources(where: str, section: Any) -> dict[str, ResourceTerms]:
    if not isinstance(section, Mapping):
        raise TermsError(f"{where}.resources must be a table of resource tables ([{where}.resources.cpu])")
    return {
        str(rid): _parse_resource(f"{where}.resources.{rid}", str(rid), table)
        for rid, table in section.items()
    }


def _parse_resource(where: str, rid: str, table: Any) -> ResourceTerms:
    if not isinstance(table, Mapping):
        raise TermsError(f"[{where}] must be a table (min, max, constraints), not {type(table).__name__}")
    unknown = set(table) - RESOURCE_SETTINGS
    if unknown:
        raise TermsError(
            f"{where} has unknown settings: {', '.join(sorted(unknown))} (known: constraints, max, min)"
        )
    low, high = _bound(where, table, "min"), _bound(where, table, "max")
    if high is not None and high <= 0:
        raise TermsError(f"{where}.max must be more than 0 (leave it out for no maximum)")
    if low is not None and high is not None and low > high:
        raise TermsError(f"{where}: min {low:g} is more than max {high:g}")
    entries = table.get("constraints", [])
    if not isinstance(entries, list):
        raise TermsError(
            f'{where}.constraints must be an array of tables ({{ id = "cpu", min = 1, max = 4 }})'
        )
    constraints = tuple(_parse_constraint(f"{where}.constraints[{i}]", rid, e) for i, e in enumerate(entries))
    others = [c.id for c in constraints]
    if len(set(others)) != len(others):
        raise TermsError(f"{where}.constraints names a resource twice: {sorted(others)}")
    return ResourceTerms(min=low, max=high, constraints=constraints)


def _parse_constraint(where: str, rid: str, entry: Any) -> ConstraintTerms:
    if not isinstance(entry, Mapping):
        raise TermsError(f'{where} must be a table ({{ id = "cpu", min = 1, max = 4 }})')
    unknown = set(entry) - CONSTRAINT_SETTINGS
    if unknown:
        raise TermsError(f"{where} has unknown settings: {', '.join(sorted(unknown))} (known: id, max, min)")
    other = entry.get("id")
    if not isinstance(other, str) or not other:
        raise TermsError(f"{where}.id must name the other resource, got {other!r}")
    if other == rid:
        raise TermsError(f"{where}: resource {rid!r} cannot be constrained by itself")
    low, high = _bound(where, entry, "min"), _bound(where, entry, "max")
    if high is not None and high <= 0:
        raise TermsError(f"{where}.max must be more than 0 (leave it out for no upper bound)")
    if not low and not high:
        raise TermsError(f"{where} needs a min or a max (per unit of {other}) more than 0")
    if low and high and low > high:
        raise TermsError(f"{where}: min {low:g} per {other} is more than max {high:g} per {other}")
    return ConstraintTerms(id=other, min=low or 0.0, max=high or 0.0)


def _bound(where: str, table: Mapping[str, Any], key: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    try:
        return _amount(value)
    except ValueError as exc:
        raise TermsError(f"{where}.{key}: {exc}") from None


def _check_free_fits(where: str, free: FreeTerms, resources: Mapping[str, ResourceTerms]) -> None:
    """A free tier's cap below the per-job minimum would refuse every free job: refused at load."""
    for rid, cap in free.resources.items():
        floor = resources[rid].min if rid in resources else None
        if floor is not None and cap < floor:
            raise TermsError(
                f"{where}.free.resources.{rid} = {cap:g} is below {where}.resources.{rid}.min = {floor:g}: "
                "no free job could run"
            )


def _parse_free(where: str, free: Any) -> FreeTerms:
    if not isinstance(free, Mapping):
        raise TermsError(f"[{where}.free] must be a table, not {type(free).__name__}")
    unknown = set(free) - FREE_SETTINGS
    if unknown:
        raise TermsError(f"{where}.free has unknown settings: {', '.join(sorted(unknown))}")
    resources = free.get("resources", {})
    if not isinstance(resources, Mapping):
        raise TermsError(f"{where}.free.resources must be a table of resource id = amount")
    access = _parse_access(f"{where}.free", free)
    try:
        duration = free.get("max_job_duration_seconds")
        return FreeTerms(
            enabled=bool(free.get("enabled", True)),
            max_job_duration_seconds=None if duration is None else _count(duration),
            max_jobs_per_consumer=_count(free.get("max_jobs_per_consumer", 0)),
            max_concurrent_jobs=_count(free.get("max_concurrent_jobs", 0)),
            resources={str(k): _amount(v) for k, v in resources.items()},
            access=access,
            allow_image_build=_flag(free.get("allow_image_build", False), f"{where}.free.allow_image_build"),
        )
    except (TypeError, ValueError) as exc:
        raise TermsError(f"{where}.free is malformed: {exc}") from None


def _parse_paid(where: str, paid: Any) -> AccessTerms:
    """``[environments."<id>".paid]``: who may start paid jobs (allow, access_lists)."""
    if not isinstance(paid, Mapping):
        raise TermsError(f"[{where}.paid] must be a table, not {type(paid).__name__}")
    unknown = set(paid) - PAID_SETTINGS
    if unknown:
        raise TermsError(
            f"{where}.paid has unknown settings: {', '.join(sorted(unknown))} (known: access_lists, allow)"
        )
    return _parse_access(f"{where}.paid", paid)


def _parse_access(where: str, table: Mapping[str, Any]) -> AccessTerms:
    """A tier's ``allow`` (addresses) and ``access_lists`` ({chain_id, address} ERC-721 contracts)."""
    allow = table.get("allow", [])
    if not isinstance(allow, list):
        raise TermsError(
            f'{where}.allow must be an array of addresses (["0x..."]), not {type(allow).__name__}'
        )
    if len(allow) > MAX_ALLOW:
        raise TermsError(
            f"{where}.allow has {len(allow)} addresses; at most {MAX_ALLOW} (use an access list)"
        )
    for i, address in enumerate(allow):
        _check_address(f"{where}.allow[{i}]", address)
    entries = table.get("access_lists", [])
    if not isinstance(entries, list):
        raise TermsError(
            f'{where}.access_lists must be an array of tables ({{ chain_id = 8996, address = "0x..." }})'
        )
    if len(entries) > MAX_ACCESS_LISTS:
        raise TermsError(f"{where}.access_lists has {len(entries)} entries; at most {MAX_ACCESS_LISTS}")
    lists = tuple(_parse_access_list(f"{where}.access_lists[{i}]", e) for i, e in enumerate(entries))
    if len(set(lists)) != len(lists):
        raise TermsError(f"{where}.access_lists names a contract twice")
    return AccessTerms(allow=frozenset(a.lower() for a in allow), access_lists=lists)


def _parse_access_list(where: str, entry: Any) -> AccessList:
    if not isinstance(entry, Mapping):
        raise TermsError(f'{where} must be a table ({{ chain_id = 8996, address = "0x..." }})')
    unknown = set(entry) - ACCESS_LIST_SETTINGS
    if unknown:
        raise TermsError(
            f"{where} has unknown settings: {', '.join(sorted(unknown))} (known: address, chain_id)"
        )
    chain_id = entry.get("chain_id")
    if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 2**64:
        raise TermsError(
            f"{where}.chain_id must be the chain's id (a positive whole number), got {chain_id!r}"
        )
    _check_address(f"{where}.address", entry.get("address"))
    return AccessList(chain_id=chain_id, address=str(entry["address"]).lower())


def _check_address(where: str, value: Any) -> None:
    if not isinstance(value, str) or not ADDRESS.fullmatch(value):
        raise TermsError(f"{where} must be an address (0x and 40 hex digits), got {value!r}")


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


def _flag(value: Any, where: str) -> bool:
    """A true/false setting; anything else is refused rather than read as truthy."""
    if not isinstance(value, bool):
        raise TermsError(f"{where} must be true or false, not {value!r}")
    return value
