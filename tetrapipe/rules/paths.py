"""Field paths into an event, compiled once.

A path is written like jq's simplest paths: `.process_kprobe.args[0].sock_arg.daddr`
(absolute, from the event root) or `process.binary` (relative, from the object
under the event-type key).  Compilation checks each step against the typed
model in `tetrapipe.event.model`: a path that stays inside the model resolves on the
typed decode (fast); a path that leaves it resolves on a generic decode of the
event, made lazily once per event and only when such a path is used.
"""

from __future__ import annotations

import functools
import keyword
import re
from typing import Any

import msgspec

from tetrapipe.event.model import EventBody, LeanBody, LeanEvent, TetragonEvent

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|\.\[\"([^\"]+)\"\]")
MISSING: Any = None  # jq prints a missing field as null; so do we.


class PathError(ValueError):
    """A path that cannot be compiled; the message says why."""


def parse_steps(text: str) -> tuple[str | int, ...]:
    """Split `.a.b[0].c` (or `a.b[0].c`) into ('a', 'b', 0, 'c')."""
    source = text if text.startswith(".") or text.startswith("[") else "." + text
    steps: list[str | int] = []
    pos = 0
    while pos < len(source):
        m = _STEP.match(source, pos)
        if m is None:
            raise PathError(f"cannot parse field path {text!r} at character {pos}")
        name, index, quoted = m.groups()
        steps.append(int(index) if index is not None else (name or quoted))
        pos = m.end()
    if not steps:
        raise PathError(f"empty field path {text!r}")
    return tuple(steps)


@functools.cache
def type_info(root: type) -> Any:
    """msgspec's description of a model type (slow to build: once per type)."""
    return msgspec.inspect.type_info(root)


def _is_typed(root: type, steps: tuple[str | int, ...]) -> bool:
    """True when every step stays inside the typed model (dict/Any regions count)."""
    info: Any = type_info(root)
    for step in steps:
        while isinstance(info, msgspec.inspect.UnionType):
            non_null = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            if len(non_null) != 1:
                return False
            info = non_null[0]
        if isinstance(info, (msgspec.inspect.DictType, msgspec.inspect.AnyType)):
            return True
        if isinstance(info, msgspec.inspect.StructType):
            if not isinstance(step, str):
                return False
            field = next((f for f in info.fields if f.encode_name == step), None)
            if field is None:
                return False
            info = field.type
        elif isinstance(info, msgspec.inspect.ListType):
            if not isinstance(step, int):
                return False
            info = info.item_type
        else:
            return False  # a step into a scalar
    # A path that ends on a typed struct must be printed from the generic
    # decode: the struct lacks the fields the model does not type.
    while isinstance(info, msgspec.inspect.UnionType):
        non_null = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        info = non_null[0] if len(non_null) == 1 else None
    return not isinstance(info, msgspec.inspect.StructType)


class Path:
    """A compiled path: `resolve(obj)` walks structs, dicts and lists; absent → None."""

    __slots__ = ("text", "steps", "typed", "lean")

    def __init__(self, text: str, *, relative_to_body: bool) -> None:
        self.text = text
        self.steps = parse_steps(text)
        # typed: readable on the full model; lean: readable on the lean model every event has
        self.typed = _is_typed(EventBody if relative_to_body else TetragonEvent, self.steps)
        self.lean = _is_typed(LeanBody if relative_to_body else LeanEvent, self.steps)

    def resolve(self, obj: Any) -> Any:
        for step in self.steps:
            if obj is None:
                return None
            if type(step) is int:
                if type(obj) is not list or not -len(obj) <= step < len(obj):
                    return None
                obj = obj[step]
            elif type(obj) is dict:
                obj = obj.get(step)
            elif isinstance(obj, msgspec.Struct):
                obj = getattr(obj, step, None)  # type: ignore[arg-type]
            else:
                return None
        return obj

    def __repr__(self) -> str:
        return f"Path({self.text!r})"


def _step_kinds(root: type, steps: tuple[str | int, ...]) -> list[str]:
    """For each step, what the object it applies to is: 'struct', 'dict' or 'list'."""
    kinds: list[str] = []
    info: Any = type_info(root)
    for step in steps:
        while isinstance(info, msgspec.inspect.UnionType):
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(info, msgspec.inspect.StructType):
            kinds.append("struct")
            info = next(f for f in info.fields if f.encode_name == step).type
        elif isinstance(info, msgspec.inspect.ListType):
            kinds.append("list")
            info = info.item_type
        else:  # dict / Any: from here on plain JSON values
            kinds.append("dict" if isinstance(step, str) else "list")
            info = msgspec.inspect.AnyType()
    return kinds


def compile_getter(path: Path, *, relative_to_body: bool, lean: bool = False) -> Any:
    """A specialised function `get(obj)` for a typed path, generated once.

    `lean`: `obj` is the lean view (`LeanEvent`/`LeanBody`, see `path.lean`)
    rather than the full model.

    Attribute steps on typed structs become plain attribute reads; dict and
    list steps are type-checked.  When `obj` is a plain dict (the event did not
    fit the typed model and was decoded generically), the generic walker runs.
    """
    if not (path.lean if lean else path.typed):
        return path.resolve
    model = (LeanBody if lean else EventBody) if relative_to_body else (LeanEvent if lean else TetragonEvent)
    kinds = _step_kinds(model, path.steps)
    lines = ["def get(o):", "    if type(o) is dict:", "        return resolve(o)"]
    for step, kind in zip(path.steps, kinds, strict=True):
        if kind == "struct":
            read = f"o.{step}" if not keyword.iskeyword(str(step)) else f"getattr(o, {step!r})"
            lines += ["    if o is None:", "        return None", f"    o = {read}"]
        elif kind == "dict":
            lines += ["    if type(o) is not dict:", "        return None", f"    o = o.get({step!r})"]
        else:
            index = int(step)
            bound = f"len(o) <= {index}" if index >= 0 else f"len(o) < {-index}"
            lines += [f"    if type(o) is not list or {bound}:", "        return None", f"    o = o[{index}]"]
    lines.append("    return o")
    namespace: dict[str, Any] = {"resolve": path.resolve}
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from validated identifiers and ints only
    return namespace["get"]
