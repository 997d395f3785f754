"""One-line summaries in jq's string-interpolation syntax, rendered as jq renders them.

A template such as `\\(.time) \\(.process_exec.process.binary)` compiles once
into literal pieces and absolute field paths.  Rendering follows jq's rules for
`"\\(x)"`: strings are inserted as they are, `null`/missing prints `null`,
booleans `true`/`false`, numbers as jq prints them, arrays and objects as
compact JSON (`tojson`) with keys in input order — so a summary is
byte-identical to what the seed's jq filter prints for the same event.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from tetrapipe.event.decode import Decoded
from tetrapipe.event.model import LeanEvent
from tetrapipe.rules.codegen import AccessPlan
from tetrapipe.rules.paths import Path, PathError, compile_getter

_INTERPOLATION = re.compile(r"\\\((.*?)\)(?=[^)]|$)")
_json = msgspec.json.Encoder()


class TemplateError(ValueError):
    """A template that cannot be compiled; the message names where."""


def jq_number(value: float) -> str:
    """A float as jq 1.7 prints it: shortest round-trip digits, exponent as `E+17` / `E-7`.

    jq 1.7 also preserves number literals from its input (`3.0` stays `3.0`),
    which a decoded float cannot recall: integral floats print as `3.0` here,
    as jq prints a `3.0` literal.  Tetragon's export carries no floats (its
    numbers are integers, 64-bit ones as strings), so this only matters for
    user templates over foreign fields.
    """
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "1.7976931348623157E+308" if value > 0 else "-1.7976931348623157E+308"
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = exponent[0] if exponent[0] in "+-" else "+"
        text = f"{mantissa}E{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def jq_tojson(value: Any) -> str:
    """Compact JSON as jq prints it: input key order, `,`/`:` separators, DEL escaped."""
    # msgspec's escaping matches jq's (\" \\ \n \t \r \b \f, \u00XX for other
    # control characters, non-ASCII as UTF-8) except that jq also escapes DEL.
    return _json.encode(value).decode("utf-8").replace("\x7f", "\\u007f")


def jq_text(value: Any) -> str:
    """The text jq interpolates for a value."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return jq_number(value)
    return jq_tojson(value)


def _concat(parts: list[str]) -> str:
    """An expression concatenating string expressions: an f-string (one BUILD_STRING) when it can be one."""
    if not parts:
        return "''"
    if not any('"' in p or "\\" in p or "{" in p for p in parts):
        return 'f"' + "".join("{" + p + "}" for p in parts) + '"'
    return '"".join((' + ", ".join(parts) + ",))"


class Template:
    """A compiled summary template; `render(decoded)` returns the line.

    Compiled at load into one generated function over the event's one decoded
    view (`Decoded.view`, the lean model): literal pieces are constants, each
    struct prefix is read once into a local, each interpolated path is read
    once, and strings are inserted without a call.  A path the lean model does
    not type reads the full model (decoded on first use: only templates over
    such fields pay for it) or, outside any model, the generic decode.
    """

    __slots__ = ("text", "render_view", "render_generic")

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        plan = AccessPlan(LeanEvent, "r")
        namespace: dict[str, Any] = {"jq_text": jq_text}
        parts: list[str] = []
        generic_parts: list[str] = []
        pos = 0
        for m in _INTERPOLATION.finditer(text):
            if m.start() > pos:
                literal = self._const(namespace, text[pos:m.start()])
                parts.append(literal)
                generic_parts.append(literal)
            try:
                path = Path(m.group(1).strip(), relative_to_body=False)
            except PathError as exc:
                raise TemplateError(f"{where}: {exc} (only simple paths like .a.b[0].c are supported)") from None
            if path.lean:
                value = plan.expr(path)
            elif path.typed:  # the full model, decoded once on first use
                value = f"{self._const(namespace, compile_getter(path, relative_to_body=False))}(d.root)"
            else:
                value = f"{self._const(namespace, path.resolve)}(d.generic_root())"
            parts.append(f"(_x if type(_x := {value}) is str else jq_text(_x))")
            generic_parts.append(f"jq_text({self._const(namespace, path.resolve)}(g))")
            pos = m.end()
        if pos < len(text):
            literal = self._const(namespace, text[pos:])
            parts.append(literal)
            generic_parts.append(literal)
        source = "\n".join(["def render(d, r):", *(f"    {line}" for line in plan.prologue),
                            f"    return {_concat(parts)}", "",
                            "def render_generic(g):", f"    return {_concat(generic_parts)}", ""])
        exec(source, namespace)  # noqa: S102 - built from validated paths and named constants only
        self.render_view = namespace["render"]
        self.render_generic = namespace["render_generic"]

    @staticmethod
    def _const(namespace: dict[str, Any], value: Any) -> str:
        name = f"_k{len(namespace)}"
        namespace[name] = value
        return name

    def render(self, decoded: Decoded) -> str:
        view = decoded.view
        if type(view) is dict:  # did not fit the lean model: all paths read the generic view
            return self.render_generic(view)
        return self.render_view(decoded, view)
