"""Compile library conditions into one Python function per category, once.

A condition tree becomes a single generated expression — `and`/`or`/`not`
over inlined value tests, each field read once through a specialised getter
(`tetrapipe.rules.paths.compile_getter`) — wrapped in `def match(d): return ...`.
That keeps the per-event cost of a rule to a few attribute reads and
comparisons, with no interpretation of the tree at run time.  `$name`
operator values are replaced by the category's params at compile time;
`tetrapipe.egress.*` fields read the classify result attached to the event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tetrapipe.event.decode import Decoded
from tetrapipe.event.model import LeanBody
from tetrapipe.rules.codegen import AccessPlan
from tetrapipe.rules.library import Condition, ParamValue
from tetrapipe.rules.paths import Path, PathError, compile_getter

Predicate = Callable[[Decoded], bool]
_OPERATORS = ("equals", "in_", "prefix", "suffix", "basename_in", "contains", "regex", "present")
_EGRESS_FIELDS = ("zone", "external", "daddr", "dport", "cidr")
_SCALARS = (str, int, bool)


class RuleError(ValueError):
    """A condition that cannot be compiled; the message names where."""


def _param(value: Any, params: Mapping[str, ParamValue], where: str) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in params:
            raise RuleError(f"{where}: unknown parameter ${name}; params: {sorted(params) or 'none'}")
        return params[name]
    return value


def _as_tuple(value: Any, where: str, kinds: tuple[type, ...] = (str,)) -> tuple[Any, ...]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, kinds):
            raise RuleError(f"{where}: expected {'/'.join(k.__name__ for k in kinds)} values, got {item!r}")
    return tuple(items)


class _Compiler:
    """Builds the expression source and the namespace of constants it refers to."""

    def __init__(self, params: Mapping[str, ParamValue], plan: AccessPlan | None = None) -> None:
        self.params = params
        self.plan = plan  # with a plan, typed fields read struct prefixes from prologue locals
        self.namespace: dict[str, Any] = {"_SCALARS": _SCALARS}
        self._n = 0

    def const(self, value: Any) -> str:
        self._n += 1
        name = f"_k{self._n}"
        self.namespace[name] = value
        return name

    def var(self) -> str:
        self._n += 1
        return f"_v{self._n}"

    def getter(self, field: str, where: str) -> str:
        """An expression reading the field from event `d`."""
        if field.startswith("tetrapipe.egress."):
            name = field.removeprefix("tetrapipe.egress.")
            if name not in _EGRESS_FIELDS:
                raise RuleError(f"{where}: unknown field {field}; egress fields: {', '.join(_EGRESS_FIELDS)}")
            return f"(d.egress.{name} if d.egress is not None else None)"
        try:
            path = Path(field, relative_to_body=True)
        except PathError as exc:
            raise RuleError(f"{where}: {exc}") from None
        if path.lean:  # the one decoded view (a plain dict when the event did not fit it)
            if self.plan is not None:
                return self.plan.expr(path)  # from the lean view's struct locals
            return f"{self.const(compile_getter(path, relative_to_body=True, lean=True))}(d.vbody)"
        if path.typed:  # the full model, decoded on first use
            return f"{self.const(compile_getter(path, relative_to_body=True))}(d.body)"
        return f"{self.const(path.resolve)}(d.generic_body())"

    def test(self, op: str, raw: Any, first: str, v: str, where: str) -> str:
        """The test of one operator; `first` evaluates the value (and binds `v`)."""
        value = _param(raw, self.params, where)
        if op == "equals":
            if not isinstance(value, _SCALARS):
                raise RuleError(f"{where}: equals needs a string, number or boolean")
            return f"(type({first}) is {type(value).__name__} and {v} == {self.const(value)})"
        if op == "in_":
            members = self.const(frozenset(_as_tuple(value, where, _SCALARS)))
            return f"(type({first}) in _SCALARS and {v} in {members})"
        if op == "present":
            if not isinstance(value, bool):
                raise RuleError(f"{where}: present needs true or false")
            return f"({first} is {'not ' if value else ''}None)"
        if op == "regex":
            try:
                pattern = self.const(re.compile(value))
            except (re.error, TypeError) as exc:
                raise RuleError(f"{where}: bad regex {value!r}: {exc}") from None
            return f"(type({first}) is str and {pattern}.search({v}) is not None)"
        items = _as_tuple(value, where)
        if op == "prefix":
            return f"(type({first}) is str and {v}.startswith({self.const(items)}))"
        if op == "suffix":
            return f"(type({first}) is str and {v}.endswith({self.const(items)}))"
        if op == "contains":
            return f"(type({first}) is str and any(_i in {v} for _i in {self.const(items)}))"
        return f"(type({first}) is str and {v}.rpartition('/')[2] in {self.const(frozenset(items))})"

    def expr(self, cond: Condition, where: str, *, skip_event: bool = False) -> str:
        parts: list[str] = []
        if cond.event is not None and not skip_event:
            parts.append(f"(d.etype in {self.const(frozenset(_as_tuple(cond.event, f'{where}.event')))})")
        ops = [(op, getattr(cond, op)) for op in _OPERATORS if getattr(cond, op) is not None]
        if cond.field is not None and not ops:
            raise RuleError(f"{where}: field {cond.field!r} has no operator ({', '.join(_OPERATORS)})")
        if ops and cond.field is None:
            raise RuleError(f"{where}: operator {ops[0][0].rstrip('_')!r} needs a field")
        if cond.field is not None:
            v = self.var()
            first = f"({v} := {self.getter(cond.field, where)})"
            for op, raw in ops:
                parts.append(self.test(op, raw, first, v, f"{where}.{op.rstrip('_')}"))
                first = v
        if cond.all is not None:
            parts.append("(" + " and ".join(self.expr(c, f"{where}.all[{i}]") for i, c in enumerate(cond.all)) + ")")
        if cond.any is not None:
            parts.append("(" + " or ".join(self.expr(c, f"{where}.any[{i}]") for i, c in enumerate(cond.any)) + ")")
        if cond.not_ is not None:
            parts.append(f"(not {self.expr(cond.not_, f'{where}.not')})")
        if not parts:
            if skip_event and cond.event is not None:
                return "True"
            raise RuleError(f"{where}: empty condition")
        return "(" + " and ".join(parts) + ")"


def compile_condition(cond: Condition, params: Mapping[str, ParamValue], where: str, *,
                      indexed_by_event: bool = False) -> Predicate:
    """One generated predicate; `indexed_by_event` drops the top-level event test the caller already did."""
    compiler = _Compiler(params)
    source = f"def match(d):\n    return bool({compiler.expr(cond, where, skip_event=indexed_by_event)})\n"
    exec(source, compiler.namespace)  # noqa: S102 - built from validated paths and named constants only
    predicate: Predicate = compiler.namespace["match"]
    predicate.__doc__ = f"{where}\n\n{source}"
    return predicate


def compile_matcher(entries: list[tuple[Condition, Mapping[str, ParamValue], str, bool]]) -> Callable[[Any], list[int]]:
    """One generated function for a group of categories (those of one event type).

    `entries` are (match, params, where, skip_top_level_event).  The function
    takes a decoded event whose lean view is typed (not a dict), reads each struct
    prefix its rules need once, and returns the indexes of matching entries in
    order.  Bodies that fell back to plain dicts use `compile_condition`.
    """
    plan = AccessPlan(LeanBody, "b")
    compiler = _Compiler({}, plan)
    tests: list[str] = []
    for index, (cond, params, where, skip_event) in enumerate(entries):
        compiler.params = params
        tests += [f"    if {compiler.expr(cond, where, skip_event=skip_event)}:", f"        hits.append({index})"]
    source = "\n".join(["def match(d):", "    b = d.vbody", *(f"    {line}" for line in plan.prologue),
                        "    hits = []", *tests, "    return hits", ""])
    exec(source, compiler.namespace)  # noqa: S102 - built from validated paths and named constants only
    matcher: Callable[[Any], list[int]] = compiler.namespace["match"]
    matcher.__doc__ = source
    return matcher


def event_types(cond: Condition) -> frozenset[str] | None:
    """The event types a condition's top level restricts it to (for indexing), or None."""
    if cond.event is not None:
        return frozenset(cond.event if isinstance(cond.event, list) else [cond.event])
    return None
