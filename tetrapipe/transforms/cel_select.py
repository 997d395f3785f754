"""Which parts of an event a CEL expression can read, so only those are converted to protobuf.

Contract: ``selection(expr)`` -> ``{event variable: Node}``.  A ``Node`` maps a message-typed field
name to its ``Node``; :data:`WHOLE` means "convert the whole subtree", :data:`PRESENCE` "only mark the
field present" (``has(x.f)``).  The converter always converts a kept message's scalar fields (and
enums, wrappers, times, maps); it skips message fields the node does not name.  Conservative by
construction: a select chain rooted at an event variable that ends on a message (compared, passed,
parenthesised, iterated by a macro) keeps that message WHOLE; an event variable used bare, or any
chain the scanner cannot follow, makes its event WHOLE.  Converting more than needed is only slower,
never a different verdict.
"""

from __future__ import annotations

import re
from typing import Any

from . import tetragon_schema as schema

WHOLE: Any = "WHOLE"
PRESENCE: Any = "PRESENCE"
Node = dict[str, Any]

_TOKEN = re.compile(r"""(?x)
    (?P<str> [rRbB]{0,2}(?:'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*") )
  | (?P<id> [A-Za-z_][A-Za-z0-9_]* )
  | (?P<sym> [.\[\]()] )
  | (?P<other> \S )
""")


def _tokens(expr: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(expr)]


def merge(into: Node, field: str, sub: Any) -> None:
    have = into.get(field)
    if have is WHOLE or sub is WHOLE:
        into[field] = WHOLE
    elif have is None or have is PRESENCE:
        into[field] = sub if sub is not PRESENCE or have is None else PRESENCE
    elif sub is not PRESENCE:
        for k, v in sub.items():
            merge(have, k, v)


def _skip_brackets(toks: list[tuple[str, str]], i: int) -> int:
    depth = 0
    while i < len(toks):
        if toks[i][1] == "[":
            depth += 1
        elif toks[i][1] == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def selection(expr: str) -> dict[str, Any]:
    toks = _tokens(expr)
    out: dict[str, Any] = {}
    for i, (kind, text) in enumerate(toks):
        if kind != "id" or text not in schema.EVENT_TYPES or (i and toks[i - 1][1] == "."):
            continue
        in_has = i >= 2 and toks[i - 1][1] == "(" and toks[i - 2][1] == "has"
        root: Node = out.setdefault(text, {}) if out.get(text) is not WHOLE else {}
        if not _follow(toks, i + 1, schema.EVENT_TYPES[text][2], root, in_has):
            out[text] = WHOLE
    return out


def _follow(toks: list[tuple[str, str]], i: int, message: str, node: Node, in_has: bool) -> bool:
    """Walk ``.field`` / ``[..]`` steps from message ``message``; False if the variable is used whole."""
    path: list[str] = []
    msg: str | None = message
    while i < len(toks):
        if toks[i][1] == "[":
            i = _skip_brackets(toks, i)  # an element of a repeated field / a map value: same type
            continue
        if toks[i][1] != "." or i + 1 >= len(toks) or toks[i + 1][0] != "id":
            break
        name = toks[i + 1][1]
        field = schema.fields(msg).get(name) if msg else None
        if field is None or not field.is_message:
            # a scalar/map/wrapper (kept with its message), or a method call on the value so far
            return _settle(node, path, WHOLE if name in _MACROS and path else None) if path else name not in _MACROS
        path.append(name)
        msg = field.type
        i += 2
    if not path:
        return False  # the event variable itself used as a value
    return _settle(node, path, PRESENCE if in_has and i < len(toks) and toks[i][1] == ")" else WHOLE)


_MACROS = frozenset({"exists", "all", "exists_one", "map", "filter"})


def _settle(node: Node, path: list[str], leaf: Any) -> bool:
    sub: Any = leaf if leaf is not None else {}
    for name in reversed(path[1:]):
        sub = {name: sub}
    merge(node, path[0], sub)
    return True
