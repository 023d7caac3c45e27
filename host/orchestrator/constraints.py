"""Fair use across resources: what a job may have of one resource per unit of another.

An environment's resource may carry constraints (``ram`` between 1 and 4 GiB per
``cpu``); they come from the operator's terms (:mod:`host.envterms`). They are
checked on the request as it will be granted, every default filled in, by both
InitializeCompute and the starts, so a quote never accepts what a start refuses.

A resource the request does not name gets its per-job minimum, raised to what its
constraints need for the other amounts (asking for 4 cpu without naming ram gets
4 GiB where ram must be at least 1 GiB per cpu): a consumer is not refused over a
resource they did not ask for when a default exists that fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from c2d.common.v1 import common_pb2
from host.errors import invalid

SLACK = 1e-9  # products of decimal amounts (0.1 * 3) land a hair off the bound
DEFAULTED = " (not in the request: its default)"


def quantity(amount: float, resource: common_pb2.Resource) -> str:
    """``16 GiB``, ``2 cores``: an amount in the resource's unit, for messages."""
    return f"{amount:g} {resource.unit}" if resource.unit else f"{amount:g}"


def fill_defaults(resources: Sequence[common_pb2.Resource], asked: Mapping[str, float]) -> dict[str, float]:
    """Every resource's amount: as asked, else its minimum raised to its constraints' needs.

    Raising one default can raise another's need (disk per ram, ram per cpu), so the pass is
    repeated until nothing changes, at most once per resource (a cycle of needs that grows
    without end stops there and fails the check instead).
    """
    amounts = {r.id: asked.get(r.id, r.min) for r in resources}
    for _ in resources:
        changed = False
        for resource in resources:
            if resource.id in asked:
                continue
            need = _need(resource, amounts)
            if need > amounts[resource.id]:
                amounts[resource.id] = need
                changed = True
        if not changed:
            break
    return amounts


def _need(resource: common_pb2.Resource, amounts: Mapping[str, float]) -> float:
    need = resource.min
    for constraint in resource.constraints:
        other = amounts.get(constraint.id, 0.0)
        if constraint.min and math.isfinite(other) and other > 0:  # asked amounts are checked after
            need = max(need, constraint.min * other)
    if resource.type == common_pb2.RESOURCE_TYPE_GPU:
        need = math.ceil(need - SLACK)
    return need


def check(
    resources: Sequence[common_pb2.Resource],
    amounts: Mapping[str, float],
    asked: Mapping[str, float],
    where: str,
) -> None:
    """INVALID_ARGUMENT naming the first amount outside a constraint, with the bound it breaks.

    A constraint on a resource the job has none of (0 gpu) does not apply. Amounts were
    checked finite and within each resource's bounds before, so the products are finite.
    """
    for resource in resources:
        amount = amounts[resource.id]
        for constraint in resource.constraints:
            other = amounts.get(constraint.id, 0.0)
            if not other > 0:
                continue
            per = f"per {constraint.id} for {other:g} {constraint.id}"
            low, high = constraint.min * other, constraint.max * other
            said = f"{resource.id} {quantity(amount, resource)}"
            default = "" if resource.id in asked else DEFAULTED
            if constraint.min and not amount >= low - SLACK:
                raise invalid(
                    f"{where}: {said}{default} is less than {quantity(constraint.min, resource)} {per} "
                    f"({quantity(low, resource)})"
                )
            if constraint.max and not amount <= high + SLACK:
                raise invalid(
                    f"{where}: {said}{default} is more than {quantity(constraint.max, resource)} {per} "
                    f"({quantity(high, resource)})"
                )
