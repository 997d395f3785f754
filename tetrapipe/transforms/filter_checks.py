"""One check per field of Tetragon's ``Filter`` message, with the semantics of cilium/tetragon ``pkg/filters``.

Contract: ``BUILDERS[field](value, path, state)`` validates one field's value and returns a check
``(body, event_type) -> bool`` (``body`` is the object under the event-type key), or raises
:class:`FilterConfigError` naming ``path``.  What every check reads, as Tetragon does:

* "the process" / "the parent" / "the ancestors" exist only for the eight process event types
  (exec, exit, kprobe, tracepoint, uprobe, usdt, lsm, loader); for any other type (throttle,
  rate_limit_info, an unknown type) a process check does not match, except ``health_check: false``,
  which matches events with no process (neither process nor parent can be a health check).
* Unset proto fields read as their defaults: a missing ``pid`` is 0, a missing ``binary`` is "".
* ``namespace: [""]`` matches processes without a pod (host processes); ``namespace_regex``,
  ``pod_regex``, ``container_name_regex`` and ``labels`` never match them.
* ``policy_names`` reads ``policy_name`` of kprobe, tracepoint, uprobe and lsm events only; an empty
  policy name matches nothing.
* ``capabilities``: ``{permitted|effective|inheritable: {any|all|exactly|none: [CAP_...]}}``, exactly
  one match set per capability set; an event whose process has no ``cap`` never matches.
* ``in_init_tree`` reads a missing flag as false (Tetragon dereferences a missing *process* and
  panics; here such an event does not match).
* ``pid_set`` matches the listed pids and, from then on, children of a matched process (the parent's
  pid is in the set or was matched): the remembered children are never forgotten, like Tetragon's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import tetragon_schema as schema
from .filter_errors import FilterConfigError
from .labels import parse_selector
from .re2match import AnyRegex

Check = Callable[[dict[str, Any], str], bool]
_PROC = schema.PROCESS_EVENT_TYPES
_POLICY = schema.POLICY_EVENT_TYPES
_CAPS = schema.enum_values("CapabilitiesType")
log = logging.getLogger(__name__)


def _obj(d: Any, key: str) -> dict[str, Any] | None:
    v = d.get(key)
    return v if type(v) is dict else None


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key, "")
    return v if type(v) is str else ""


def strings(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterConfigError(path, "expected a list of strings")
    return value


def uint32s(value: Any, path: str) -> frozenset[int]:
    if not isinstance(value, list):
        raise FilterConfigError(path, "expected a list of integers")
    out = set()
    for i, v in enumerate(value):
        n = int(v) if isinstance(v, str) and v.isdigit() else v
        if type(n) is not int or not 0 <= n < 2**32:
            raise FilterConfigError(f"{path}[{i}]", f"expected an unsigned 32-bit integer, got {v!r}")
        out.add(n)
    return frozenset(out)


def enum_number(value: Any, names: dict[str, int], path: str, what: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    if type(value) is int and value in names.values():
        return value
    raise FilterConfigError(path, f"unknown {what} {value!r}")


def _process_regex(key: str, parent: bool) -> Callable[[Any, str, Any], Check]:
    field = "parent" if parent else "process"

    def build(value: Any, path: str, _: Any) -> Check:
        match = AnyRegex(strings(value, path), path)

        def check(body: dict[str, Any], etype: str) -> bool:
            p = _obj(body, field) if etype in _PROC else None
            return p is not None and match(_str(p, key))
        return check
    return build


def _pod_regex(key: str, container: bool = False) -> Callable[[Any, str, Any], Check]:
    def build(value: Any, path: str, _: Any) -> Check:
        match = AnyRegex(strings(value, path), path)

        def check(body: dict[str, Any], etype: str) -> bool:
            p = _obj(body, "process") if etype in _PROC else None
            pod = _obj(p, "pod") if p is not None else None
            obj = _obj(pod, "container") if container and pod is not None else pod
            return obj is not None and match(_str(obj, key))
        return check
    return build


def _ancestor_binary_regex(value: Any, path: str, _: Any) -> Check:
    match = AnyRegex(strings(value, path), path)

    def check(body: dict[str, Any], etype: str) -> bool:
        ancestors = body.get("ancestors") if etype in _PROC else None
        if type(ancestors) is not list or not ancestors or type(ancestors[0]) is not dict:
            return False
        return any(type(a) is dict and match(_str(a, "binary")) for a in ancestors)
    return check


def _maybe_exec_probe(p: dict[str, Any] | None) -> bool:
    pod = _obj(p, "pod") if p is not None else None
    container = _obj(pod, "container") if pod is not None else None
    return container is not None and container.get("maybe_exec_probe") is True


def _health_check(value: Any, path: str, _: Any) -> Check:
    if not isinstance(value, bool):
        raise FilterConfigError(path, "expected true or false")

    def check(body: dict[str, Any], etype: str) -> bool:
        proc = etype in _PROC
        either = proc and (_maybe_exec_probe(_obj(body, "process")) or _maybe_exec_probe(_obj(body, "parent")))
        return either is value
    return check


def _namespace(value: Any, path: str, _: Any) -> Check:
    wanted = frozenset(strings(value, path))

    def check(body: dict[str, Any], etype: str) -> bool:
        p = _obj(body, "process") if etype in _PROC else None
        if p is None:
            return False
        pod = _obj(p, "pod")
        return (_str(pod, "namespace") if pod is not None else "") in wanted
    return check


def _pid(value: Any, path: str, _: Any) -> Check:
    pids = uint32s(value, path)

    def check(body: dict[str, Any], etype: str) -> bool:
        p = _obj(body, "process") if etype in _PROC else None
        return p is not None and p.get("pid", 0) in pids
    return check


def _pid_set(value: Any, path: str, state: Any) -> Check:
    if not state.get("enable_pid_set"):
        raise FilterConfigError(path, "pid_set filters use a best-effort approach for tracking PIDs and are "
                                      "intended for testing/development, not for production (enable_pid_set "
                                      "to allow them)")
    pids = uint32s(value, path)
    children: set[Any] = set()
    warn_at = [8192]

    def check(body: dict[str, Any], etype: str) -> bool:
        p = _obj(body, "process") if etype in _PROC else None
        if p is None:
            return False
        pid = p.get("pid", 0)
        if pid in pids or pid in children:
            return True
        parent = _obj(body, "parent")
        if parent is None:
            return False
        ppid = parent.get("pid", 0)
        if ppid in pids or ppid in children:
            children.add(pid)  # so that this process's own children match later
            if len(children) == warn_at[0]:
                log.warning("%s: pid_set filter cache has reached %d entries", path, warn_at[0])
                warn_at[0] *= 2
            return True
        return False
    return check


def _event_set(value: Any, path: str, _: Any) -> Check:
    if not isinstance(value, list):
        raise FilterConfigError(path, "expected a list of event types")
    numbers = frozenset(enum_number(v, schema.EVENT_TYPE_NUMBERS, f"{path}[{i}]", "event type")
                        for i, v in enumerate(value))
    keys = frozenset(k for k, (_, n, _) in schema.EVENT_TYPES.items() if n in numbers)
    undef = 0 in numbers  # an event of no known type has Tetragon's UNDEF

    def check(body: dict[str, Any], etype: str) -> bool:
        return etype in keys or (undef and etype not in schema.EVENT_TYPES)
    return check


def _labels(value: Any, path: str, _: Any) -> Check:
    selectors = [parse_selector(s, f"{path}[{i}]") for i, s in enumerate(strings(value, path))]

    def check(body: dict[str, Any], etype: str) -> bool:
        p = _obj(body, "process") if etype in _PROC else None
        pod = _obj(p, "pod") if p is not None else None
        if pod is None:
            return False
        labels = _obj(pod, "pod_labels") or {}
        return any(s(labels) for s in selectors)
    return check


def _policy_names(value: Any, path: str, _: Any) -> Check:
    names = frozenset(strings(value, path))

    def check(body: dict[str, Any], etype: str) -> bool:
        name = _str(body, "policy_name") if etype in _POLICY else ""
        return name != "" and name in names
    return check


def _cap_set(value: Any, path: str) -> tuple[str, frozenset[int]] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FilterConfigError(path, "expected an object with one of any, all, exactly, none")
    for key in value:
        if key not in ("any", "all", "exactly", "none"):
            raise FilterConfigError(f"{path}.{key}", "unknown field (expected any, all, exactly or none)")
    defined = [k for k in ("any", "all", "exactly", "none") if value.get(k)]
    if len(defined) != 1:
        raise FilterConfigError(path, "capability filter must define exactly one match set" if not defined else
                                f"capability filter may only define one match set, got: {', '.join(defined)}")
    (op,) = defined
    items = value[op]
    if not isinstance(items, list):
        raise FilterConfigError(f"{path}.{op}", "expected a list of capabilities")
    return op, frozenset(enum_number(c, _CAPS, f"{path}.{op}[{i}]", "capability") for i, c in enumerate(items))


def _cap_matches(have: Any, spec: tuple[str, frozenset[int]]) -> bool:
    caps = {_CAPS.get(c, c) if isinstance(c, str) else c for c in have} if type(have) is list else set()
    op, wanted = spec
    if op == "any":
        return not caps.isdisjoint(wanted)
    if op == "all":
        return wanted <= caps
    if op == "exactly":
        return caps == wanted
    return caps.isdisjoint(wanted)


def _capabilities(value: Any, path: str, _: Any) -> Check:
    if not isinstance(value, dict):
        raise FilterConfigError(path, "expected an object with permitted, effective and/or inheritable")
    for key in value:
        if key not in ("permitted", "effective", "inheritable"):
            raise FilterConfigError(f"{path}.{key}", "unknown field (expected permitted, effective or inheritable)")
    specs = [(k, spec) for k in ("effective", "inheritable", "permitted")
             if (spec := _cap_set(value.get(k), f"{path}.{k}")) is not None]

    def check(body: dict[str, Any], etype: str) -> bool:
        p = _obj(body, "process") if etype in _PROC else None
        cap = _obj(p, "cap") if p is not None else None
        return cap is not None and all(_cap_matches(cap.get(k), spec) for k, spec in specs)
    return check


def _in_init_tree(value: Any, path: str, _: Any) -> Check:
    if not isinstance(value, bool):
        raise FilterConfigError(path, "expected true or false")

    def check(body: dict[str, Any], etype: str) -> bool:
        p = _obj(body, "process") if etype in _PROC else None
        return p is not None and (p.get("in_init_tree") is True) is value
    return check


def _cel_expression(value: Any, path: str, _: Any) -> Check:
    from .cel_filter import CelExpressions  # CEL and protobuf are loaded only when a filter uses them

    return CelExpressions(strings(value, path), path)


# Tetragon's evaluation order (filters.Filters); it matters only for pid_set, whose memory of
# children changes when the checks before it fail.
BUILDERS: dict[str, Callable[[Any, str, Any], Check]] = {
    "binary_regex": _process_regex("binary", parent=False),
    "parent_binary_regex": _process_regex("binary", parent=True),
    "ancestor_binary_regex": _ancestor_binary_regex,
    "health_check": _health_check,
    "namespace": _namespace,
    "namespace_regex": _pod_regex("namespace"),
    "pid": _pid,
    "pid_set": _pid_set,
    "event_set": _event_set,
    "arguments_regex": _process_regex("arguments", parent=False),
    "parent_arguments_regex": _process_regex("arguments", parent=True),
    "labels": _labels,
    "pod_regex": _pod_regex("name"),
    "policy_names": _policy_names,
    "capabilities": _capabilities,
    "container_id": _process_regex("docker", parent=False),
    "in_init_tree": _in_init_tree,
    "cel_expression": _cel_expression,
    "container_name_regex": _pod_regex("name", container=True),
}
COST = {"event_set": 0, "policy_names": 1, "pid": 1, "in_init_tree": 1, "health_check": 1, "namespace": 1,
        "cel_expression": 9}
"""Evaluation order when it does not matter (no pid_set): cheap checks first, CEL last, regexes between."""
