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

from pipeline.codec import Decoded
from transforms.paths import Path, PathError

_INTERPOLATION = re.compile(r"\\\((.*?)\)(?=[^)]|$)")
_json = msgspec.json.Encoder()


class TemplateError(ValueError):
    """A template that cannot be compiled; the message names where."""


def jq_number(value: float) -> str:
    """jq 1.7 prints integral doubles without a fraction and others with 17 significant digits."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e17:
        return str(int(value))
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "1.7976931348623157e+308" if value > 0 else "-1.7976931348623157e+308"
    return repr(value)


def jq_tojson(value: Any) -> str:
    """Compact JSON as jq prints it: input key order, `,`/`:` separators, DEL escaped."""
    # msgspec's escaping matches jq's (\" \\ \n \t \r \b \f, \u00XX for other
    # control characters, non-ASCII as UTF-8) except that jq also escapes DEL.
    return _json.encode(value).decode("utf-8").replace("\x7f", "\\u007f")


def jq_text(value: Any) -> str:
    """The text jq interpolates for a value."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return jq_number(value)
    return jq_tojson(value)


class Template:
    """A compiled summary template; `render(decoded)` returns the line."""

    __slots__ = ("text", "_pieces")

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        pieces: list[str | tuple[Path, bool]] = []
        pos = 0
        for m in _INTERPOLATION.finditer(text):
            pieces.append(text[pos:m.start()])
            try:
                path = Path(m.group(1).strip(), relative_to_body=False)
            except PathError as exc:
                raise TemplateError(f"{where}: {exc} (only simple paths like .a.b[0].c are supported)") from None
            pieces.append((path, path.typed))
            pos = m.end()
        pieces.append(text[pos:])
        self._pieces = tuple(p for p in pieces if p != "")

    def render(self, decoded: Decoded) -> str:
        out: list[str] = []
        for piece in self._pieces:
            if type(piece) is str:
                out.append(piece)
            else:
                path, typed = piece  # type: ignore[misc]
                root = decoded.root if typed else decoded.generic_root()
                out.append(jq_text(path.resolve(root)))
        return "".join(out)
