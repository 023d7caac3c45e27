"""What a consumer passes with a dataset (a stage input's ``user_data``, Ocean's ``userdata``).

As on ocean-node, the values are appended to the dataset's URLs as query parameters when its pod
fetches them, so a dataset served by an API can be asked for a slice, a date range or a format.
Unlike ocean-node, a registered dataset takes only the parameters its operator declared
(``consumer_parameters``, checked here against their types and options): a stranger's arbitrary
query parameters never reach an operator's private, perhaps internal, service. A consumer's own
files take any parameters: the URL is the consumer's anyway.

The values are resolved (checked, defaults filled in) once, at admission, and again when the pod
asks for its inputs; both read the same registered service, so they agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from google.protobuf import json_format, struct_pb2

from c2d.compute.v1 import compute_pb2
from host.errors import invalid

TYPES = ("text", "number", "boolean", "select")
MAX_PARAMETERS = 32
MAX_TEXT = 1024  # characters of a text value, an option or a default
MAX_OPTIONS = 64
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

Parameter = compute_pb2.ConsumerParameter


def validate_declared(parameters: Sequence[Parameter], where: str) -> None:
    """INVALID_ARGUMENT unless the operator's declared parameters are well formed."""
    if len(parameters) > MAX_PARAMETERS:
        raise invalid(f"{where}: at most {MAX_PARAMETERS} consumer parameters")
    seen: set[str] = set()
    for parameter in parameters:
        if not _NAME.fullmatch(parameter.name):
            raise invalid(
                f"{where}: consumer parameter names are 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or '_'"
            )
        label = f"{where}: consumer parameter {parameter.name!r}"
        if parameter.name in seen:
            raise invalid(f"{label} is declared twice")
        seen.add(parameter.name)
        if parameter.type not in TYPES:
            raise invalid(f"{label} has type {parameter.type[:32]!r}; expected one of {', '.join(TYPES)}")
        _check_options(parameter, label)
        if parameter.HasField("default"):
            _value(parameter, json_format.MessageToDict(parameter.default), f"{label}'s default")


def resolve(parameters: Sequence[Parameter], user_data: struct_pb2.Struct, where: str) -> dict[str, str]:
    """The query parameters a registered dataset's URLs get: the consumer's values, checked against
    the declared ``parameters``, then the defaults of those not given. INVALID_ARGUMENT names what
    is wrong and, for an unknown name, what the dataset takes."""
    given: Mapping[str, Any] = json_format.MessageToDict(user_data)
    declared = {parameter.name: parameter for parameter in parameters}
    for name in given:
        if name not in declared:
            takes = ", ".join(sorted(declared)) or "none"
            raise invalid(
                f"{where} userdata: {name[:64]!r} is not a parameter of this dataset (it takes: {takes})"
            )
    values: dict[str, str] = {}
    for parameter in parameters:
        label = f"{where} userdata {parameter.name!r}"
        if parameter.name in given:
            values[parameter.name] = _value(parameter, given[parameter.name], label)
        elif parameter.HasField("default"):
            values[parameter.name] = _value(parameter, json_format.MessageToDict(parameter.default), label)
        elif parameter.required:
            raise invalid(f"{label} is required")
    return values


def resolve_own(user_data: struct_pb2.Struct, where: str) -> dict[str, str]:
    """The query parameters a consumer's own files get: any names (in name order), scalar values."""
    given: Mapping[str, Any] = json_format.MessageToDict(user_data)
    if len(given) > MAX_PARAMETERS:
        raise invalid(f"{where} userdata: at most {MAX_PARAMETERS} parameters")
    values = {}
    for name, value in sorted(given.items()):  # a Struct keeps no order: by name, the same each time
        if not _NAME.fullmatch(name):
            raise invalid(f"{where} userdata: parameter names are 1-64 letters, digits, '_', '.' or '-'")
        values[name] = _scalar(value, f"{where} userdata {name!r}")
    return values


def with_query(url: str, values: Mapping[str, str]) -> str:
    """``url`` with ``values`` appended to its query string (after what it already has)."""
    if not values:
        return url
    parts = urlsplit(url)
    extra = urlencode(list(values.items()))
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _check_options(parameter: Parameter, label: str) -> None:
    if parameter.type != "select":
        if parameter.options:
            raise invalid(f"{label} has options but is not a select")
        return
    if not parameter.options:
        raise invalid(f"{label} is a select without options")
    if len(parameter.options) > MAX_OPTIONS:
        raise invalid(f"{label} has more than {MAX_OPTIONS} options")
    if any(not option or len(option) > MAX_TEXT for option in parameter.options):
        raise invalid(f"{label} has an empty option or one over {MAX_TEXT} characters")


def _value(parameter: Parameter, value: Any, label: str) -> str:
    """``value`` as it goes in the URL, or INVALID_ARGUMENT if it is not of the parameter's type."""
    if parameter.type == "boolean":
        if not isinstance(value, bool):
            raise invalid(f"{label} must be true or false")
        return "true" if value else "false"
    if parameter.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise invalid(f"{label} must be a number")
        return _number(value)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise invalid(f"{label} must be text of at most {MAX_TEXT} characters")
    if parameter.type == "select" and value not in parameter.options:
        raise invalid(f"{label} must be one of {', '.join(parameter.options)}")
    return value


def _scalar(value: Any, label: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and math.isfinite(value):
        return _number(value)
    if isinstance(value, str) and len(value) <= MAX_TEXT:
        return value
    raise invalid(f"{label} must be text (at most {MAX_TEXT} characters), a number or true/false")


def _number(value: float) -> str:
    """Whole numbers without the ``.0`` a Struct gives every number."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))
