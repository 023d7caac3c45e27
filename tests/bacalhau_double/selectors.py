"""Label selectors: the ``labels`` query of the job list and the job's node ``Constraints``.

Both are Kubernetes label requirements in Bacalhau (``k8s.io/apimachinery/pkg/labels``): the list
endpoint parses the comma-joined ``labels`` query values with ``ParseToRequirements``
(``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``), a constraint is one
``{Key, Operator, Values}`` with the operators ``=``, ``==``, ``!=``, ``in``, ``notin``, ``exists``,
``!``, ``gt``, ``lt``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .spec import LabelSelectorRequirement

_TERM = re.compile(
    r"""^\s*(?:
        (?P<not>!)\s*(?P<nkey>[^\s=!(),]+) |
        (?P<skey>[^\s=!(),]+)\s*(?P<setop>in|notin)\s*\((?P<values>[^)]*)\) |
        (?P<key>[^\s=!(),]+)\s*(?P<op>==|!=|=)\s*(?P<value>[^\s=!(),]*) |
        (?P<ekey>[^\s=!(),]+)
    )\s*$""",
    re.VERBOSE,
)
_VALID_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "==" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!":
                return not present
            case "gt" | "lt":
                try:
                    have, want = int(value or ""), int(self.values[0])
                except (ValueError, IndexError):
                    return False
                return have > want if self.operator == "gt" else have < want
        return False


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def parse_selector(values: list[str]) -> list[Requirement]:
    """The ``labels`` query values, joined by commas and parsed; ValueError on a bad term."""
    requirements = []
    for term in _split_terms(",".join(values)):
        match = _TERM.match(term)
        if not match:
            raise ValueError(f"unable to parse requirement: {term.strip()!r}")
        if match.group("nkey"):
            requirement = Requirement(match.group("nkey"), "!")
        elif match.group("skey"):
            items = tuple(v.strip() for v in match.group("values").split(",") if v.strip())
            requirement = Requirement(match.group("skey"), match.group("setop"), items)
        elif match.group("key"):
            requirement = Requirement(match.group("key"), match.group("op"), (match.group("value"),))
        else:
            requirement = Requirement(match.group("ekey"), "exists")
        if not _VALID_KEY.match(requirement.key):
            raise ValueError(f"unable to parse requirement: invalid label key {requirement.key!r}")
        requirements.append(requirement)
    return requirements


def matches_all(requirements: list[Requirement], labels: Mapping[str, str]) -> bool:
    return all(requirement.matches(labels) for requirement in requirements)


def constraint_requirements(constraints: tuple[LabelSelectorRequirement, ...]) -> list[Requirement]:
    return [Requirement(c.key, c.operator, c.values) for c in constraints]
