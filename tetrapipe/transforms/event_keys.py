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


def _lean(kind: str, steps: tuple[str | int, ...]) -> bool:
    return kind in ("categories", "event_type") or steps in _LEAN_EXACT or any(
        steps[:len(prefix)] == prefix for prefix in _LEAN_BELOW) and kind == "body"


class KeyFields:
    __slots__ = ("paths", "_getters", "lean")

    def __init__(self, paths: Sequence[str], path: str = "keys") -> None:
        if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
            raise FilterConfigError(path, "expected a list of field paths")
        self.paths = tuple(paths)
        self._getters = tuple(_compile(p, f"{path}[{i}]") for i, p in enumerate(paths))
        self.lean = all(_lean(kind, steps) for kind, steps in self._getters)

    def values_of(self, decoded: Any, event: dict[str, Any] | None, categories: Sequence[str] = ()
                  ) -> tuple[Any, ...]:
        """``values`` of a ``Decoded`` event: of ``event`` when given, else read from its lean view if it can."""
        if event is None:
            view = decoded.view
            if self.lean and type(view) is not dict:
                return self._values(view, decoded.vbody, decoded.etype, categories)
            event = decoded.generic_root()
        return self.values(event, decoded.etype, categories)

    def _values(self, top: Any, body: Any, event_type: str, categories: Sequence[str]) -> tuple[Any, ...]:
        """``values`` read from a lean view (structs where it types them, plain dicts and lists below)."""
        out: list[Any] = []
        for kind, steps in self._getters:
            if kind == "categories":
                out.append(tuple(categories))
                continue
            if kind == "event_type":
                out.append(event_type)
                continue
            cur: Any = top if kind == "top" else body
            for step in steps:
                if isinstance(step, int):
                    cur = cur[step] if type(cur) is list and step < len(cur) else None
                elif type(cur) is dict:
                    cur = cur.get(step)
                else:  # a struct of the lean model: `_lean` admitted only fields it has
                    cur = getattr(cur, step, None) if cur is not None else None
                if cur is None:
                    break
            out.append(_freeze(cur) if type(cur) in (dict, list) else cur)
        return tuple(out)

    def values(self, event: dict[str, Any], event_type: str, categories: Sequence[str] = ()) -> tuple[Any, ...]:
        out: list[Any] = []
        for kind, steps in self._getters:
            if kind == "categories":
                out.append(tuple(categories))
                continue
            if kind == "event_type":
                out.append(event_type)
                continue
            cur: Any = event if kind == "top" else event.get(event_type)
            for step in steps:
                if type(step) is int:
                    cur = cur[step] if type(cur) is list and step < len(cur) else None
                else:
                    cur = cur.get(step) if type(cur) is dict else None
                if cur is None:
                    break
            out.append(_freeze(cur) if type(cur) in (dict, list) else cur)
        return tuple(out)

    def describe(self, values: tuple[Any, ...]) -> dict[str, Any]:
        return {p: _thaw(v) for p, v in zip(self.paths, values, strict=True)}
