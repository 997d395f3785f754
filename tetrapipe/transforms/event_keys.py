"""Keys for rate limiting and dedup: named values read from an event by field path, compiled once.

Contract: ``KeyFields(paths, path=...)`` compiles paths such as ``node_name``, ``process.binary``,
``parent.binary``, ``args[0].sock_arg.daddr``, ``function_name``; ``categories`` and ``event_type``
are pseudo-fields (the caller's category ids; the event-type key).  A path whose first segment is a
top-level field of Tetragon's export (``node_name``, ``cluster_name``, ``time``, ``node_labels``,
``aggregation_info``) reads the top level, any other path reads under the event-type object.
``KeyFields.values(event, event_type, categories)`` returns a hashable tuple (missing -> ``None``;
lists and objects frozen to tuples); ``KeyFields.describe(values)`` turns it back into a
``{path: JSON value}`` dict for summary records.
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


class KeyFields:
    __slots__ = ("paths", "_getters")

    def __init__(self, paths: Sequence[str], path: str = "keys") -> None:
        if isinstance(paths, str) or not all(isinstance(p, str) for p in paths):
            raise FilterConfigError(path, "expected a list of field paths")
        self.paths = tuple(paths)
        self._getters = tuple(_compile(p, f"{path}[{i}]") for i, p in enumerate(paths))

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
