"""Every number in a request is finite and in range: one check, by walking the message's descriptor.

A NaN compares false with everything, so a check written ``amount < minimum`` lets it through, and
then capacity sums and prices become NaN (a machine overcommitted, work unbilled); an infinity or an
absurd magnitude overflows what the node stores (SQLite integers are signed 64-bit) or computes
(dates, timeouts). Rather than guard each use, the node checks every numeric field of every request
when it enters (the host's servicers, see ``host.errors.grpc_errors``, and every engine plugin's, see
``c2d.plugin.kit.rpc``), before any service code sees it.

The walk is generic: it follows every set field, repeated and map fields, oneofs, and the numbers
inside ``google.protobuf.Struct``/``Value``. A field gets the rule :data:`RULES` names for its full
name, else the default for its type (floats finite and at most :data:`MAX_FLOAT` in magnitude;
unsigned 64-bit integers at most 2^63-1; enums one of their declared values), so a new field is
covered without being listed. The first problem comes back as text naming the field's path, e.g.
``workflow.stages[0].resources[1].amount is not a finite number``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from c2d.quoting import quoted

# Integers up to 2^53 are exact in a double: a larger magnitude is no amount anyone means.
MAX_FLOAT = float(2**53)
# What SQLite (and every signed 64-bit column or counter) can hold.
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
TEN_YEARS_SECONDS = 10 * 366 * 24 * 3600
MAX_INDEX = 1_000_000
# A resource amount: CPUs, GiB of memory or disk, devices; a million of any is beyond any machine.
MAX_AMOUNT = 1e6

_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_SIGNED32 = frozenset(
    {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
)
_UNSIGNED32 = frozenset({FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32})
_SIGNED64 = frozenset(
    {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
)
_UNSIGNED64 = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})
INTEGER_TYPES = _SIGNED32 | _UNSIGNED32 | _SIGNED64 | _UNSIGNED64
NUMERIC_TYPES = _FLOATS | INTEGER_TYPES
_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST = "google.protobuf.ListValue"


@dataclass(frozen=True)
class Rule:
    """The closed range ``[low, high]`` a number must lie in; ``meaning`` says why, for the message."""

    low: float
    high: float
    meaning: str = ""

    def problem(self, value: float) -> str | None:
        """Why ``value`` breaks the rule, or None when it keeps it."""
        if isinstance(value, float) and not math.isfinite(value):
            return "is not a finite number"
        if self.low <= value <= self.high:
            return None
        why = f" ({self.meaning})" if self.meaning else ""
        return f"= {_number(value)} is out of range: it must be between {_number(self.low)} and {_number(self.high)}{why}"


DEFAULT_FLOAT = Rule(-MAX_FLOAT, MAX_FLOAT, "no quantity the node handles is larger")
DEFAULT_INTEGER = {
    **dict.fromkeys(_SIGNED32, Rule(-(2**31), 2**31 - 1)),
    **dict.fromkeys(_UNSIGNED32, Rule(0, 2**32 - 1)),
    **dict.fromkeys(_SIGNED64, Rule(MIN_INT64, MAX_INT64)),
    **dict.fromkeys(_UNSIGNED64, Rule(0, MAX_INT64, "the node stores signed 64-bit integers")),
}
DURATION = Rule(0, TEN_YEARS_SECONDS, "a duration in seconds, at most 10 years")
INDEX = Rule(0, MAX_INDEX, "an index")
AMOUNT = Rule(0, MAX_AMOUNT, "a resource amount")

# Fields whose meaning needs more than their type's default, by full name.
RULES: dict[str, Rule] = {
    "c2d.common.v1.ResourceRequest.amount": AMOUNT,
    "c2d.common.v1.GrantedResource.amount": AMOUNT,
    "c2d.compute.v1.Workflow.max_duration_seconds": DURATION,
    "c2d.compute.v1.Stage.max_duration_seconds": DURATION,
    "c2d.compute.v1.Workflow.max_queue_seconds": DURATION,
    "c2d.engine.v1.JobSpec.max_duration_seconds": DURATION,
    "c2d.engine.v1.StopJobRequest.grace_seconds": DURATION,
    "c2d.compute.v1.Stage.index": INDEX,
    "c2d.compute.v1.StageDependency.stage_index": INDEX,
    "c2d.compute.v1.StageInput.index": INDEX,
    "c2d.compute.v1.GetComputeResultRequest.index": INDEX,
}


def rule_for(field: FieldDescriptor) -> Rule | None:
    """The rule a numeric field is checked against (None for a field that is not a number)."""
    if field.full_name in RULES:
        return RULES[field.full_name]
    if field.type in _FLOATS:
        return DEFAULT_FLOAT
    return DEFAULT_INTEGER.get(field.type)


def problem(message: Message) -> str | None:
    """The first out-of-range number of ``message`` as ``<path> <why>``, or None when all are fine."""
    return next(_problems(message, ""), None)


def problems(message: Message) -> list[str]:
    """Every out-of-range number of ``message`` (for tools and tests; the servicers stop at the first)."""
    return list(_problems(message, ""))


def _problems(message: Message, prefix: str) -> Iterator[str]:
    name = message.DESCRIPTOR.full_name
    if name == _STRUCT:
        for key, value in message.fields.items():  # type: ignore[attr-defined]
            yield from _value_problems(value, f"{prefix}[{quoted(key, 32)}]")
        return
    if name == _VALUE:
        yield from _value_problems(message, prefix)
        return
    if name == _LIST:
        for i, value in enumerate(message.values):  # type: ignore[attr-defined]
            yield from _value_problems(value, f"{prefix}[{i}]")
        return
    for field, value in message.ListFields():
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if _is_map(field):
                value_field = field.message_type.fields_by_name["value"]
                for key, item in value.items():
                    yield from _single(value_field, item, f"{path}[{quoted(key, 32)}]")
            elif field.is_repeated:
                for i, item in enumerate(value):
                    yield from _problems(item, f"{path}[{i}]")
            else:
                yield from _problems(value, path)
        elif field.is_repeated:
            for i, item in enumerate(value):
                yield from _single(field, item, f"{path}[{i}]")
        else:
            yield from _single(field, value, path)


def _single(field: FieldDescriptor, value: object, path: str) -> Iterator[str]:
    """One value of ``field`` (a scalar, an enum or a message: a map's values are any of them)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert isinstance(value, Message)
        yield from _problems(value, path)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        assert isinstance(value, int)
        if field.enum_type.values_by_number.get(value) is None:
            yield f"{path} = {value} is not a known {field.enum_type.name}"
    elif field.type in NUMERIC_TYPES:
        rule = rule_for(field)
        assert rule is not None and isinstance(value, int | float)
        found = rule.problem(value)
        if found is not None:
            yield f"{path} {found}"


def _value_problems(value: Message, path: str) -> Iterator[str]:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        found = DEFAULT_FLOAT.problem(value.number_value)  # type: ignore[attr-defined]
        if found is not None:
            yield f"{path} {found}"
    elif kind == "struct_value":
        yield from _problems(value.struct_value, path)  # type: ignore[attr-defined]
    elif kind == "list_value":
        yield from _problems(value.list_value, path)  # type: ignore[attr-defined]


def _is_map(field: FieldDescriptor) -> bool:
    entry: Descriptor | None = field.message_type
    return bool(field.is_repeated and entry is not None and entry.GetOptions().map_entry)


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}"
