"""Compile library conditions into predicates over a decoded event, once.

A predicate is a closure `(Decoded) -> bool`.  Field tests read a compiled
`Path` on the typed view when the path stays inside the model, else on the
lazily decoded generic view; `tetrapipe.egress.*` reads the classify result.
`$name` operator values are replaced by the category's params at compile time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.codec import Decoded
from transforms.library import Condition, ParamValue
from transforms.paths import Path, PathError

Predicate = Callable[[Decoded], bool]
Getter = Callable[[Decoded], Any]
_OPERATORS = ("equals", "in_", "prefix", "suffix", "basename_in", "contains", "regex", "present")
_EGRESS_FIELDS = ("zone", "external", "daddr", "dport", "cidr")


class RuleError(ValueError):
    """A condition that cannot be compiled; the message names where."""


def _param(value: Any, params: Mapping[str, ParamValue], where: str) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in params:
            raise RuleError(f"{where}: unknown parameter ${name}; params: {sorted(params) or 'none'}")
        return params[name]
    return value


def _as_list(value: Any, where: str, kind: type = str) -> tuple[Any, ...]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, kind):
            raise RuleError(f"{where}: expected {kind.__name__} values, got {item!r}")
    return tuple(items)


def compile_getter(field: str, where: str) -> Getter:
    """A getter for a body-relative field path or a `tetrapipe.egress.*` field."""
    if field.startswith("tetrapipe.egress."):
        name = field.removeprefix("tetrapipe.egress.")
        if name not in _EGRESS_FIELDS:
            raise RuleError(f"{where}: unknown field {field}; egress fields: {', '.join(_EGRESS_FIELDS)}")
        return lambda d: getattr(d.egress, name) if d.egress is not None else None
    try:
        path = Path(field, relative_to_body=True)
    except PathError as exc:
        raise RuleError(f"{where}: {exc}") from None
    resolve = path.resolve
    if path.typed:
        return lambda d: resolve(d.body)
    return lambda d: resolve(d.generic_body())


def _test(op: str, value: Any, where: str) -> Callable[[Any], bool]:
    """The value test of one operator, with its argument prepared once."""
    if op == "equals":
        return lambda v: v == value and type(v) is type(value)
    if op == "in_":
        members = frozenset(_as_list(value, where, (str, int, bool)))  # type: ignore[arg-type]
        return lambda v: type(v) in (str, int, bool) and v in members
    if op == "present":
        return lambda v: (v is not None) is value
    if op == "regex":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise RuleError(f"{where}: bad regex {value!r}: {exc}") from None
        return lambda v: type(v) is str and pattern.search(v) is not None
    items = _as_list(value, where)
    if op == "prefix":
        return lambda v: type(v) is str and v.startswith(items)
    if op == "suffix":
        return lambda v: type(v) is str and v.endswith(items)
    if op == "contains":
        return lambda v: type(v) is str and any(i in v for i in items)
    names = frozenset(items)  # basename_in
    return lambda v: type(v) is str and v.rpartition("/")[2] in names


def compile_condition(cond: Condition, params: Mapping[str, ParamValue], where: str) -> Predicate:
    """One predicate for a condition node: every key present in it must hold."""
    parts: list[Predicate] = []
    if cond.event is not None:
        types = frozenset(_as_list(cond.event, f"{where}.event"))
        parts.append(lambda d: d.etype in types)
    ops = [(op, getattr(cond, op)) for op in _OPERATORS if getattr(cond, op) is not None]
    if cond.field is not None and not ops:
        raise RuleError(f"{where}: field {cond.field!r} has no operator ({', '.join(_OPERATORS)})")
    if ops and cond.field is None:
        raise RuleError(f"{where}: operator {ops[0][0].rstrip('_')!r} needs a field")
    if cond.field is not None:
        getter = compile_getter(cond.field, where)
        for op, raw in ops:
            test = _test(op, _param(raw, params, where), f"{where}.{op.rstrip('_')}")
            parts.append(lambda d, g=getter, t=test: t(g(d)))
    if cond.all is not None:
        subs = [compile_condition(c, params, f"{where}.all[{i}]") for i, c in enumerate(cond.all)]
        parts.append(lambda d: all(p(d) for p in subs))
    if cond.any is not None:
        alts = [compile_condition(c, params, f"{where}.any[{i}]") for i, c in enumerate(cond.any)]
        parts.append(lambda d: any(p(d) for p in alts))
    if cond.not_ is not None:
        negated = compile_condition(cond.not_, params, f"{where}.not")
        parts.append(lambda d: not negated(d))
    if not parts:
        raise RuleError(f"{where}: empty condition")
    if len(parts) == 1:
        return parts[0]
    return lambda d: all(p(d) for p in parts)


def event_types(cond: Condition) -> frozenset[str] | None:
    """The event types a condition can match, when its top level says so (for indexing)."""
    if cond.event is not None:
        return frozenset(cond.event if isinstance(cond.event, list) else [cond.event])
    if cond.all:
        for sub in cond.all:
            found = event_types(sub)
            if found is not None:
                return found
    return None
