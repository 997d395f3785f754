"""Keys for rate limiting and dedup: named values read from an event by field path, compiled once.

Contract: ``KeyFields(paths, path=...)`` compiles paths such as ``node_name``, ``process.binary``,
``parent.binary``, ``args[0].sock_arg.daddr``, ``function_name``; ``categories`` and ``event_type``
are pseudo-fields (the caller's category ids; the event-type key).  A path whose first segment is a
top-level field of Tetragon's export (``node_name``, ``cluster_name``, ``time``, ``node_labels``,
``aggregation_info``) reads the top level, any other path reads under the event-type object.
``KeyFields.values(event, event_type, categories)`` returns a hashable tuple (missing -> ``None``;
lists and objects frozen to tuples); ``KeyFields.describe(values)`` turns it back into a
``{path: JSON value}`` dict for summary records.

``KeyFields.values_of(decoded, event, categories)``: the same tuple for a ``Decoded`` event --
from ``event`` (plain dicts, e.g. redacted) when given, else from the lean view when every path is
one the lean view carries with the generic decode's value (``KeyFields.lean``: ``node_name``,
``time``, ``function_name``, ``policy_name``, ``path``, ``process.binary``, ``process.arguments``,
``process.pod.namespace``, ``process.pod.name``, ``args...``, ``process.binary_properties...``,
and the pseudo-fields), else from the generic decode.  Why the values agree: on a lean view these
are strings or None (absent or null, as ``.get`` reads them) or the same plain dicts and lists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from .filter_errors import FilterConfigError

TOP_LEVEL = frozenset({"node_name", "cluster_name", "time", "node_labels", "aggregation_info"})
_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")


def _freeze(v: Any) -> Any:
    if type(v) is dict:
        return ("__obj__", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if type(v) is list:
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if type(v) is tuple:
        if len(v) == 2 and v[0] == "__obj__":
            return {k: _thaw(x) for k, x in v[1]}
        return [_thaw(x) for x in v]
    return v


def _compile(path: str, where: str) -> tuple[str, tuple[str | int, ...]]:
    if path in ("categories", "event_type"):
        return path, ()
    steps: list[str | int] = []
    for seg in path.split("."):
        m = _STEP.fullmatch(seg)
        if m is None:
            raise FilterConfigError(where, f"invalid field path {path!r}")
        steps.append(m.group(1))
        steps += [int(i) for i in re.findall(r"\d+", m.group(2))]
    return ("top" if steps[0] in TOP_LEVEL else "body"), tuple(steps)


# Paths the lean view (tetrapipe.event.model.LeanEvent/LeanBody) reads as the generic decode does:
# exactly these, or (the second set) anything below these (plain dicts and lists there).
_LEAN_EXACT = frozenset({("node_name",), ("time",), ("function_name",), ("policy_name",), ("path",),
                         ("process", "binary"), ("process", "arguments"), ("process", "pod", "namespace"),
                         ("process", "pod", "name")})
_LEAN_BELOW = (("args",), ("process", "binary_properties"))


def _struct_steps(kind: str, steps: tuple[str | int, ...]) -> int:
    """How many leading steps of a lean path read fields of the lean model's structs (the rest: dicts, lists)."""
    if kind in ("categories", "event_type"):
        return 0
    if steps in _LEAN_EXACT:
        return len(steps)
    for prefix in _LEAN_BELOW:
        if kind == "body" and steps[:len(prefix)] == prefix:
            return len(prefix)
    return -1  # not a lean path


def _reader(getters: tuple[tuple[str, tuple[str | int, ...]], ...], lean: bool) -> Any:
    """``(top, body, event_type, categories) -> tuple``, generated once: one straight line per key path.

    A dict step is ``.get``; a list index is bounds-checked; with ``lean``, the steps `_struct_steps`
    names read a struct's attribute (or a dict's key: the body of a type the lean model keeps as a
    dict).  A missing value reads as None from there on, as the generic walk's early stop gives.
    """
    lines = ["def read(top, body, event_type, categories):"]
    outs = []
    for i, (kind, steps) in enumerate(getters):
        if kind == "categories":
            outs.append("tuple(categories)")
            continue
        if kind == "event_type":
            outs.append("event_type")
            continue
        lines.append(f"    c = {'top' if kind == 'top' else 'body'}")
        structs = _struct_steps(kind, steps) if lean else 0
        for j, step in enumerate(steps):
            if isinstance(step, int):
                lines.append(f"    c = c[{step}] if type(c) is list and len(c) > {step} else None")
            elif j < structs:
                lines.append(f"    c = c.get({step!r}) if type(c) is dict else "
                             f"getattr(c, {step!r}, None) if isinstance(c, Struct) else None")
            else:
                lines.append(f"    c = c.get({step!r}) if type(c) is dict else None")
        lines.append(f"    v{i} = _freeze(c) if type(c) is dict or type(c) is list else c")
        outs.append(f"v{i}")
    lines.append(f"    return ({', '.join(outs)},)")
    namespace: dict[str, Any] = {"_freeze": _freeze, "Struct": msgspec.Struct}
    exec("\n".join(lines), namespace)  # noqa: S102 - code generated from validated field paths
    return namespace["read"]


class KeyFields:
    __slots__ = ("paths", "_getters", "lean", "_read", "_read_lean")

    def __init__(self, paths: Sequence[str], path: str = "keys") -> None:
        if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
            raise FilterConfigError(path, "expected a list of field paths")
        self.paths = tuple(paths)
        self._getters = tuple(_compile(p, f"{path}[{i}]") for i, p in enumerate(paths))
        self.lean = all(_struct_steps(kind, steps) >= 0 for kind, steps in self._getters)
        self._read = _reader(self._getters, lean=False)
        self._read_lean = _reader(self._getters, lean=True) if self.lean else None

    def values_of(self, decoded: Any, event: dict[str, Any] | None, categories: Sequence[str] = ()
                  ) -> tuple[Any, ...]:
        """``values`` of a ``Decoded`` event: of ``event`` when given, else read from its lean view if it can."""
        if event is None:
            view = decoded.view
            if self._read_lean is not None and type(view) is not dict:
                return self._read_lean(view, decoded.vbody, decoded.etype, categories)
            event = decoded.generic_root()
        return self.values(event, decoded.etype, categories)

    def values(self, event: dict[str, Any], event_type: str, categories: Sequence[str] = ()) -> tuple[Any, ...]:
        return self._read(event, event.get(event_type), event_type, categories)

    def describe(self, values: tuple[Any, ...]) -> dict[str, Any]:
        return {p: _thaw(v) for p, v in zip(self.paths, values, strict=True)}
