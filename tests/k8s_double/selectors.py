"""Label and field selectors: the query-string grammar and the ``matchLabels``/``matchExpressions`` form.

Query strings (``labelSelector=app=x,tier in (a,b),!legacy``) follow the real grammar: requirements
joined by commas, each ``key``, ``!key``, ``key=v``/``key==v``/``key!=v``, ``key in (..)``,
``key notin (..)`` or ``key>n``/``key<n``. ``!=`` and ``notin`` also match objects without the key,
as on a real cluster. Field selectors support ``=``, ``==`` and ``!=`` on the fields each resource
declares (``metadata.name``, ``metadata.namespace``, ``status.phase`` for pods...); any other field
is refused with 400, which is what a real server does and what catches typos in engine code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"^\s*(?P<key>{_KEY})\s*$")
_NOT_EXISTS = re.compile(rf"^\s*!\s*(?P<key>{_KEY})\s*$")
_SET = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_COMPARE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=|>|<)\s*(?P<value>{_VALUE})\s*$")


@dataclass(frozen=True)
class Requirement:
    """One condition on labels: ``op`` is in, notin, exists, !, =, !=, gt or lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!":
                return not present
            case "in" | "=":
                return present and value in self.values
            case "notin" | "!=":
                return not present or value not in self.values
            case "gt" | "lt":
                return present and _compare(value or "", self.values[0], self.op)
        raise AssertionError(self.op)


def _compare(value: str, bound: str, op: str) -> bool:
    try:
        number, limit = int(value), int(bound)
    except ValueError:
        return False
    return number > limit if op == "gt" else number < limit


@dataclass(frozen=True)
class LabelSelector:
    """Requirements ANDed together; no requirement selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """From the ``labelSelector`` query parameter; 400 BadRequest when it does not parse."""
        if not text or not text.strip():
            return cls()
        return cls(tuple(_parse_requirement(part) for part in _split_top_level(text)))

    @classmethod
    def from_object(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """From a ``metav1.LabelSelector`` (``matchLabels`` + ``matchExpressions``), e.g. a podSelector."""
        if selector is None:
            return cls()
        requirements = [Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
        operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
        for expression in selector.get("matchExpressions") or []:
            op = operators[expression["operator"]]
            requirements.append(Requirement(expression["key"], op, tuple(expression.get("values") or ())))
        return cls(tuple(requirements))


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: ``a in (x,y),b`` is two requirements."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _parse_requirement(text: str) -> Requirement:
    if match := _SET.match(text):
        values = tuple(value.strip() for value in match["values"].split(","))
        if not all(re.fullmatch(_VALUE, value) for value in values):
            raise _unparsable(text)
        return Requirement(match["key"], match["op"], values)
    if match := _COMPARE.match(text):
        op = {"==": "=", ">": "gt", "<": "lt"}.get(match["op"], match["op"])
        if op in ("gt", "lt") and not re.fullmatch(r"-?\d+", match["value"]):
            raise _unparsable(text)
        return Requirement(match["key"], op, (match["value"],))
    if match := _NOT_EXISTS.match(text):
        return Requirement(match["key"], "!")
    if match := _EXISTS.match(text):
        return Requirement(match["key"], "exists")
    raise _unparsable(text)


def _unparsable(text: str) -> ApiError:
    return bad_request(
        f"unable to parse requirement: {text.strip()!r}: not a valid label selector requirement"
    )


# fields --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    """``metadata.name=x,status.phase!=Running``: exact comparisons on a few declared fields."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None, supported: Iterable[str]) -> FieldSelector:
        if not text or not text.strip():
            return cls()
        allowed = set(supported)
        requirements = []
        for part in text.split(","):
            match = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
            if match is None:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            if match[1] not in allowed:
                raise bad_request(f"field label not supported: {match[1]}")
            requirements.append(FieldRequirement(match[1], match[2] != "!=", match[3]))
        return cls(tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, r.path) == r.value) == r.equal for r in self.requirements)

    def value_of(self, path: str) -> str | None:
        """The value an ``=`` requirement pins ``path`` to, e.g. the name a watch is about."""
        return next((r.value for r in self.requirements if r.path == path and r.equal), None)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """A dotted path's value as the API compares it: a string, "" when absent."""
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, Mapping) else None
    if isinstance(current, bool):
        return "true" if current else "false"
    return "" if current is None else str(current)


Matcher = Callable[[Mapping[str, Any]], bool]


def object_matcher(labels: LabelSelector, fields: FieldSelector) -> Matcher:
    """One predicate for both selectors of a list or watch request."""
    return lambda obj: labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)
