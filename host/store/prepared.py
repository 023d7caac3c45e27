"""Queries whose SQL is built once: for the ones a loaded node runs per event or per stage.

peewee builds a query's SQL anew on every execution, and that is where a busy
node's time went: about 0.5 ms to render a SELECT of a Stage's 35 columns,
against some 10 µs for SQLite to run it. A :class:`Prepared` query is written
with peewee as usual, but the SQL is rendered once per kind of database and shape
(the length of each IN list), with the runtime values as parameters; each run
then only substitutes them and lets peewee convert the rows as it always does
(each column through its field's ``python_value``, into the same model instances peewee
makes; peewee's own row reader re-resolves the columns on every execution, which cost
as much again).

Runtime values are passed to the driver as they are (no field conversion):
give them as plain strings and numbers. Literals written in the query itself
(``Stage.terminal == False``) are converted once, when the SQL is rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import peewee as pw

from host.store.models import BaseModel, database_proxy

M = TypeVar("M", bound=BaseModel)


class _Slot:
    """Where a runtime value goes among the rendered query's parameters."""

    __slots__ = ("arg", "item")

    def __init__(self, arg: int, item: int | None) -> None:
        self.arg = arg
        self.item = item


@dataclass(frozen=True)
class _Rendered:
    model: type[BaseModel]
    sql: str
    params: list[Any]  # literals, and a _Slot for each runtime value
    columns: list[tuple[str, Callable[[Any], Any]]] | None  # (field name, python_value) per column


def _columns(query: pw.Query) -> list[tuple[str, Callable[[Any], Any]]] | None:
    """Each selected column's field, when all are plain fields of the model; None otherwise."""
    selected = getattr(query, "_returning", None)
    if selected is None or not all(isinstance(f, pw.Field) and f.model is query.model for f in selected):
        return None
    return [(f.name, f.python_value) for f in selected]


class Prepared(Generic[M]):
    """A query built by ``build(*places)``: each place is one value, or an IN list's ``(…)`` where the
    argument at that position is a list. ``rows(*args)`` runs a SELECT with the values of ``args``,
    ``execute(*args)`` an UPDATE or DELETE."""

    def __init__(self, build: Callable[..., pw.Query]) -> None:
        self._build = build
        self._rendered: dict[tuple[type, tuple[int, ...]], _Rendered] = {}

    def _render(self, args: Sequence[Any]) -> _Rendered:
        db = database_proxy.obj
        shape = tuple(len(a) if isinstance(a, list | tuple) else -1 for a in args)
        key = (type(db), shape)  # the SQL depends on the kind of database only (its dialect)
        rendered = self._rendered.get(key)
        if rendered is None:
            places: list[pw.Node] = []
            for arg, length in enumerate(shape):
                if length < 0:
                    places.append(pw.Value(_Slot(arg, None), converter=False))
                else:
                    values = [pw.Value(_Slot(arg, i), converter=False) for i in range(length)]
                    places.append(pw.NodeList(values, ", ", parens=True))
            query = self._build(*places)
            sql, params = query.sql()
            rendered = _Rendered(query.model, sql, params, _columns(query))
            self._rendered[key] = rendered
        return rendered

    def _params(self, template: list[Any], args: Sequence[Any]) -> list[Any]:
        return [
            (args[p.arg] if p.item is None else args[p.arg][p.item]) if isinstance(p, _Slot) else p
            for p in template
        ]

    def rows(self, *args: Any) -> list[M]:
        """The matching rows as model instances (an empty IN list matches nothing)."""
        if any(isinstance(a, list | tuple) and not a for a in args):
            return []
        rendered = self._render(args)
        params = self._params(rendered.params, args)
        model, columns = rendered.model, rendered.columns
        if columns is None:  # computed columns: peewee's own reader names them
            return list(model.raw(rendered.sql, *params))  # type: ignore[arg-type]
        found: list[M] = []
        for row in database_proxy.obj.execute_sql(rendered.sql, params).fetchall():
            instance: Any = model(
                __no_default__=1
            )  # as peewee's own reader makes them: no defaults, not dirty
            instance.__data__ = {
                name: convert(value) for (name, convert), value in zip(columns, row, strict=True)
            }
            found.append(instance)
        return found

    def first(self, *args: Any) -> M | None:
        found = self.rows(*args)
        return found[0] if found else None

    def scalar(self, *args: Any) -> Any:
        """The first column of the first row (a COUNT, say)."""
        rendered = self._render(args)
        row = database_proxy.obj.execute_sql(rendered.sql, self._params(rendered.params, args)).fetchone()
        return None if row is None else row[0]

    def execute(self, *args: Any) -> int:
        """Runs an UPDATE or DELETE; the number of rows it changed."""
        rendered = self._render(args)
        return int(database_proxy.obj.execute_sql(rendered.sql, self._params(rendered.params, args)).rowcount)
