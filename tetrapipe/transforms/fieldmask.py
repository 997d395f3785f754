"""Field masks over protojson dicts with fieldmask-utils' semantics (what Tetragon's field filters use).

Contract:

* ``compile_plan(message, paths) -> (Plan, errors)``: the paths (``process.pod.name``) resolved
  against ``message`` of :mod:`.tetragon_schema` into a tree keyed by JSON field names.  Segments are
  compared as Tetragon compares them, after its snake->CamelCase fix-up (``exec_id``, ``execId`` and
  ``ExecId`` are one name); a oneof name (``arg`` of kprobe arguments) stands for its members.  Parts
  Tetragon would ignore (unknown names, segments below a scalar/map/time) are left out of the plan
  and reported in ``errors`` (one message per offending path).  ``message=None`` builds a plan
  matched by name alone, for event types the schema does not know.
* ``include(plan, obj)`` keeps only what the plan names; ``exclude(plan, obj)`` drops it.  An empty
  plan (no paths) returns ``obj`` itself.  Lists apply the plan to each element.  A value that does
  not fit its plan (a scalar where the plan descends further) is dropped in both modes.  Neither
  mutates ``obj``; results share unchanged subtrees with it.
"""

from __future__ import annotations

from typing import Any

from . import tetragon_schema as schema

LEAF: Any = None  # "the whole value"
_DROP = object()


class Plan:
    __slots__ = ("fields", "by_name")

    def __init__(self, fields: dict[str, Plan | None], by_name: bool) -> None:
        self.fields = fields
        self.by_name = by_name  # keys are normalized names, looked up via norm(json key)

    def get(self, key: str, default: Any) -> Any:
        return self.fields.get(norm(key) if self.by_name else key, default)


_NORM: dict[str, str] = {}


def norm(name: str) -> str:
    """Tetragon's fixupSnakeCaseString(name, upper=True): drop '_' and upper-case what follows it."""
    out = _NORM.get(name)
    if out is None:
        out = "".join(c.upper() if i == 0 or name[i - 1] == "_" else c for i, c in enumerate(name) if c != "_")
        if len(_NORM) < 65536:
            _NORM[name] = out
    return out


def _mask(paths: list[str], spelled: dict[str, str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for seg in path.split("."):
            spelled.setdefault(norm(seg), seg)
            node = node.setdefault(norm(seg), {})
    return root


def compile_plan(message: str | None, paths: list[str]) -> tuple[Plan, list[str]]:
    errors: list[str] = []
    spelled: dict[str, str] = {}  # normalized segment -> as the user wrote it, for messages
    mask = _mask(paths, spelled)
    if message is None:
        return _generic(mask), errors
    return _resolve(message, mask, "", errors, spelled), errors


def _generic(mask: dict[str, Any]) -> Plan:
    return Plan({k: (_generic(v) if v else LEAF) for k, v in mask.items()}, by_name=True)


def _resolve(message: str, mask: dict[str, Any], prefix: str, errors: list[str], spelled: dict[str, str]) -> Plan:
    fields = schema.fields(message)
    # members of a oneof are reached through the oneof's name, as in Tetragon's Go structs
    by_norm = {norm(f.name): f for f in fields.values() if not f.oneof}
    oneofs = {norm(f.oneof): f.oneof for f in fields.values() if f.oneof}
    out: dict[str, Plan | None] = {}
    for name, sub in mask.items():
        if name in by_norm:
            f = by_norm[name]
            out[f.name] = _field_plan(f, sub, f"{prefix}{f.name}", errors, spelled)
        elif name in oneofs:
            members = [f for f in fields.values() if f.oneof == oneofs[name]]
            for m_name, m_sub in (sub or {norm(f.name): {} for f in members}).items():
                member = next((f for f in members if norm(f.name) == m_name), None)
                if member is None:
                    errors.append(f"{prefix}{oneofs[name]}: {spelled.get(m_name, m_name)!r} is not a member of "
                                  f"oneof {oneofs[name]!r}")
                    continue
                out[member.name] = _field_plan(member, m_sub, f"{prefix}{oneofs[name]}.{member.name}", errors,
                                               spelled)
        else:
            hint = ""
            for f in fields.values():
                if f.oneof and norm(f.name) == name:
                    hint = f" (Tetragon names the oneof: {prefix}{f.oneof}.{f.name})"
            errors.append(f"no field {prefix}{spelled.get(name, name)} ({message} has no "
                          f"{spelled.get(name, name)!r}){hint}")
    return Plan(out, by_name=False)


def _field_plan(f: schema.Field, sub: dict[str, Any], where: str, errors: list[str],
                spelled: dict[str, str]) -> Plan | None:
    if not sub:
        return LEAF
    if f.is_message:
        return _resolve(f.type, sub, where + ".", errors, spelled)
    kind = "a map" if f.is_map else f"a {f.type}"
    errors.append(f"{where} is {kind}; a field mask cannot select inside it")
    return LEAF


def include(plan: Plan, obj: dict[str, Any]) -> dict[str, Any]:
    if not plan.fields:
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        sub = plan.get(key, _DROP)
        if sub is _DROP:
            continue
        if sub is LEAF:
            out[key] = value
            continue
        kept = _apply(include, sub, value)
        if kept is not _DROP:
            out[key] = kept
    return out


def exclude(plan: Plan, obj: dict[str, Any]) -> dict[str, Any]:
    if not plan.fields:
        return obj
    out: dict[str, Any] | None = None
    # A plan keyed by JSON names is walked, not the object: a few paths against an object of many keys.
    # (Which keys are dropped or replaced does not depend on the walk's order; `out` keeps obj's order.)
    pairs = obj.items() if plan.by_name else ((k, obj[k]) for k in plan.fields if k in obj)
    for key, value in pairs:
        sub = plan.get(key, _DROP)
        if sub is _DROP:
            continue
        kept = _DROP if sub is LEAF else _apply(exclude, sub, value)
        if kept is value:
            continue
        if out is None:
            out = dict(obj)
        if kept is _DROP:
            del out[key]
        else:
            out[key] = kept
    return obj if out is None else out


def _apply(fn: Any, plan: Plan, value: Any) -> Any:
    if type(value) is dict:
        return fn(plan, value)
    if type(value) is list and all(type(v) is dict for v in value):
        new = [fn(plan, v) for v in value]
        return value if all(a is b for a, b in zip(new, value, strict=True)) else new
    return _DROP  # the schema says message here, the event has something else: fail closed
