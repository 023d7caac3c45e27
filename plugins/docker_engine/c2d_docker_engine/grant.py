"""What a job was granted (the SDK kit's :class:`Grant`, checked by the kit's :func:`grant_from`),
and which cores a job pinned to whole cores gets."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from c2d.plugin.kit.grant import GIB, KIND_BY_TYPE, KINDS, Grant, gpu_devices, grant_from, resource_kind

__all__ = [
    "GIB",
    "KINDS",
    "KIND_BY_TYPE",
    "Grant",
    "choose_cores",
    "gpu_devices",
    "grant_from",
    "resource_kind",
]


def choose_cores(cores: Sequence[int], cpu: float, busy: Counter[int]) -> list[int]:
    """Cores to pin a job granted ``cpu`` cores to: free ones first, then the least shared.

    ``busy`` counts how many running jobs are pinned to each core; the node
    grants cores from the environment's total, so sharing only happens when
    the config pins more jobs than cores (fractional grants).
    """
    wanted = max(1, min(len(cores), math.ceil(cpu - 1e-9)))
    ranked = sorted(cores, key=lambda core: (busy[core], cores.index(core)))
    return sorted(ranked[:wanted])
