"""The request fields of the node's three services, found by walking their descriptors (never listed by hand).

A new field in any request is therefore covered by the security tests the day it is added:
:func:`leaves` yields every numeric, enum or string field reachable from a method's request
(through singular, repeated and map fields, oneofs, and the numbers and strings inside a
``google.protobuf.Struct``), and :func:`set_at` writes a value there on a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from c2d import bounds
from c2d.compute.v1 import compute_pb2
from c2d.engine.v1 import engine_pb2
from c2d.pod.v1 import pod_pb2

SERVICES = {
    "ComputeService": compute_pb2.DESCRIPTOR.services_by_name["ComputeService"],
    "PodService": pod_pb2.DESCRIPTOR.services_by_name["PodService"],
    "ComputeEngineService": engine_pb2.DESCRIPTOR.services_by_name["ComputeEngineService"],
}
STRUCT = "google.protobuf.Struct"
# The key a value is written under inside a Struct or a map.
KEY = "k"
NUMBER, ENUM, STRING, STRUCT_NUMBER, STRUCT_STRING = (
    "number",
    "enum",
    "string",
    "struct-number",
    "struct-string",
)


@dataclass(frozen=True)
class Leaf:
    """One field of a method's request: the fields leading to it and what kind of value it takes."""

    method: MethodDescriptor
    fields: tuple[FieldDescriptor, ...]
    kind: str

    @property
    def last(self) -> FieldDescriptor:
        return self.fields[-1]

    @property
    def path(self) -> str:
        """The path as the node names it in a refusal, e.g. ``workflow.stages[0].resources[0].amount``."""
        parts = []
        for field in self.fields:
            part = field.name
            if _is_map(field) or (field.message_type is not None and field.message_type.full_name == STRUCT):
                part += f"[{KEY!r}]"
            elif field.is_repeated:
                part += "[0]"
            parts.append(part)
        return ".".join(parts)

    @property
    def scalar(self) -> FieldDescriptor | None:
        """The scalar field written (a map's value field for a map); None for a value inside a Struct."""
        if self.kind in (STRUCT_NUMBER, STRUCT_STRING):
            return None
        if _is_map(self.last):
            return self.last.message_type.fields_by_name["value"]
        return self.last

    def is_nonce(self) -> bool:
        return self.last.name == "nonce" and self.fields[-2].name == "auth" if len(self.fields) > 1 else False

    def __str__(self) -> str:
        return f"{self.method.name}: {self.path}"


def leaves(method: MethodDescriptor, kinds: set[str]) -> Iterator[Leaf]:
    """Every field of ``kinds`` reachable from the method's request (each message type once per path)."""
    yield from _walk(method, method.input_type, (), (method.input_type.full_name,), kinds)


def _walk(
    method: MethodDescriptor,
    descriptor: Descriptor,
    prefix: tuple[FieldDescriptor, ...],
    seen: tuple[str, ...],
    kinds: set[str],
) -> Iterator[Leaf]:
    for field in descriptor.fields:
        fields = (*prefix, field)
        target = field.message_type.fields_by_name["value"] if _is_map(field) else field
        if target.type == FieldDescriptor.TYPE_MESSAGE:
            name = target.message_type.full_name
            if name == STRUCT and not _is_map(field):
                for kind in (STRUCT_NUMBER, STRUCT_STRING):
                    if kind in kinds:
                        yield Leaf(method, fields, kind)
            elif name not in seen and not _is_map(field) and not name.startswith("google.protobuf."):
                yield from _walk(method, target.message_type, fields, (*seen, name), kinds)
            continue
        kind = _kind(target)
        if kind in kinds:
            yield Leaf(method, fields, kind)


def _kind(field: FieldDescriptor) -> str:
    if field.type in bounds.NUMERIC_TYPES:
        return NUMBER
    if field.type == FieldDescriptor.TYPE_ENUM:
        return ENUM
    if field.type == FieldDescriptor.TYPE_STRING:
        return STRING
    return "other"


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        field.is_repeated and field.message_type is not None and field.message_type.GetOptions().map_entry
    )


def set_at(request: Message, leaf: Leaf, value: Any) -> None:
    """Writes ``value`` at the leaf's path in ``request`` (the first element of each list, made if missing)."""
    message = request
    for field in leaf.fields[:-1]:
        if field.is_repeated:
            items = getattr(message, field.name)
            message = items[0] if len(items) else items.add()
        else:
            message = getattr(message, field.name)
    last = leaf.last
    if leaf.kind in (STRUCT_NUMBER, STRUCT_STRING):
        getattr(message, last.name).update({KEY: value})
        return
    if _is_map(last):
        getattr(message, last.name)[KEY] = value
    elif last.is_repeated:
        items = getattr(message, last.name)
        if len(items):
            items[0] = value
        else:
            items.append(value)
    else:
        setattr(message, last.name, value)
