"""Shared code generation for field access: struct prefixes read once, into locals.

Rules and summary templates are compiled into Python functions (see
`tetrapipe.rules.conditions` and `tetrapipe.rules.summary`).  An `AccessPlan` turns the
field paths such a function reads into (a) a prologue that reads every typed
struct prefix of those paths once into a local variable — `b.process`,
`b.process.pod`, … — and (b) one expression per path that continues from the
deepest such local through dict/list steps with type checks.  Everything it
emits is built from identifiers validated by `tetrapipe.rules.paths` and from
integer indexes; constants travel in the namespace, never in the source.
"""

from __future__ import annotations

import keyword
from typing import Any

import msgspec

from tetrapipe.rules.paths import Path, type_info


def _struct_prefix(root: type, steps: tuple[str | int, ...]) -> int:
    """How many leading steps are attribute reads on typed structs."""
    info: Any = type_info(root)
    count = 0
    for step in steps:
        while isinstance(info, msgspec.inspect.UnionType):
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if not isinstance(info, msgspec.inspect.StructType) or not isinstance(step, str):
            break
        info = next(f for f in info.fields if f.encode_name == step).type
        count += 1
    return count


class AccessPlan:
    """Locals for struct prefixes and expressions for paths, from a start variable."""

    def __init__(self, root: type, start: str) -> None:
        self.root = root
        self.start = start
        self._locals: dict[tuple[str | int, ...], str] = {(): start}
        self.prologue: list[str] = []
        self._temps = 0

    def _local_for(self, prefix: tuple[str | int, ...]) -> str:
        if prefix in self._locals:
            return self._locals[prefix]
        parent = self._local_for(prefix[:-1])
        step = str(prefix[-1])
        name = f"_s{len(self._locals)}"
        read = f"{parent}.{step}" if not keyword.iskeyword(step) else f"getattr({parent}, {step!r})"
        if parent == self.start:  # the start object is never None
            self.prologue.append(f"{name} = {read}")
        else:
            self.prologue.append(f"{name} = {read} if {parent} is not None else None")
        self._locals[prefix] = name
        return name

    def expr(self, path: Path) -> str:
        """An expression with the path's value, None when absent (typed paths only)."""
        assert path.typed, "generic paths are read through Path.resolve"
        depth = _struct_prefix(self.root, path.steps)
        value = self._local_for(path.steps[:depth])
        for step in path.steps[depth:]:
            # The walrus in the condition binds before the branch reads it, so
            # each step evaluates its input once and the source stays linear.
            self._temps += 1
            t = f"_t{self._temps}"
            if isinstance(step, int):
                size = f"len({t}) > {step}" if step >= 0 else f"len({t}) >= {-step}"
                value = f"({t}[{step}] if type({t} := {value}) is list and {size} else None)"
            else:
                value = f"({t}.get({step!r}) if type({t} := {value}) is dict else None)"
        return value
