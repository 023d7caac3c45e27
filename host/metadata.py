"""A workflow's metadata: the consumer's free-form object from the start request, bounded and kept.

The node stores it with the workflow and returns it in every status of its jobs, so what it may
hold is bounded by what one status listing can carry: :data:`MAX_METADATA_BYTES` of compact JSON.
The size is the one a person can check with any JSON library (no spaces, UTF-8, integral numbers
written without a fraction), so a consumer knows before sending whether it fits.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from host.errors import invalid

MAX_METADATA_BYTES = 1024
# A Struct this large on the wire is far past the limit as JSON (a value's wire form is at most a
# few times its JSON): refused without converting it.
_MAX_WIRE_BYTES = 16 * MAX_METADATA_BYTES

JSONValue = Any  # what json.loads gives back: dict, list, str, float, int, bool or None


def _integral(value: JSONValue) -> JSONValue:
    """Struct numbers are doubles: 3.0 is written 3, as the consumer most likely sent it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def encoded_size(metadata: dict[str, JSONValue]) -> int:
    """Bytes of ``metadata`` as compact JSON (what the limit counts)."""
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


def accepted_metadata(request: Any) -> dict[str, JSONValue] | None:
    """The start request's metadata as it will be stored; None when the request has none.

    INVALID_ARGUMENT when it is larger than :data:`MAX_METADATA_BYTES`; checked before anything
    is locked or stored, so a refused start leaves nothing behind. (Its numbers are finite:
    :mod:`c2d.bounds` checked every number of the request as it entered.)
    """
    if not request.HasField("metadata"):
        return None
    struct: struct_pb2.Struct = request.metadata
    if struct.ByteSize() > _MAX_WIRE_BYTES:
        raise invalid(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
    metadata: dict[str, JSONValue] = _integral(json_format.MessageToDict(struct))
    size = encoded_size(metadata)
    if size > MAX_METADATA_BYTES:
        raise invalid(f"metadata is {size} bytes as compact JSON; at most {MAX_METADATA_BYTES} are kept")
    return metadata
