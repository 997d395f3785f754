"""RE2 regular expressions with Go's ``regexp`` semantics, compiled once, matched with a memo.

Contract:

* ``compile_re2(pattern, path)`` compiles ``pattern`` with RE2 (linear-time: no pattern a user writes
  can stall the stream) or raises :class:`FilterConfigError` naming ``path`` and RE2's reason.
* ``AnyRegex(patterns, path)`` is a predicate ``str -> bool``: does any pattern *search*-match the
  string, as Go's ``regexp.MatchString`` does (unanchored: ``"iptable"`` matches ``/sbin/iptables``).
* ``redact(...)`` replaces capture groups the way Tetragon's redaction filter does.

Why the memo: a call into the RE2 binding costs ~1.4 µs, while the strings filters look at
(binaries, namespaces, pod names, argument lines) repeat heavily in a stream.  Results are cached per
matcher for strings up to ``MEMO_MAX_LEN`` characters; the cache is cleared when it reaches
``MEMO_SIZE`` entries, so memory stays bounded and a hit costs one dict lookup.

Strings are matched as UTF-8 (``surrogatepass``: a lone surrogate cannot make a match raise).
"""

from __future__ import annotations

from collections.abc import Sequence

import re2
from re2 import _re2

from .filter_errors import FilterConfigError

MEMO_SIZE = 4096
MEMO_MAX_LEN = 1024
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)


def _options(capture: bool) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # the error goes into FilterConfigError, not to stderr
    opts.never_capture = not capture
    return opts


_BOOL_OPTS = _options(capture=False)
_CAPTURE_OPTS = _options(capture=True)


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


def compile_re2(pattern: object, path: str, *, capture: bool = False) -> _re2.RE2:
    """Compile one pattern; raise FilterConfigError(path, reason) if it is not a valid RE2 string."""
    if not isinstance(pattern, str):
        raise FilterConfigError(path, f"expected a regular expression string, got {type(pattern).__name__}")
    if "\\C" in pattern.replace("\\\\", ""):
        # Go's regexp rejects \C (any byte); RE2 accepts it. Keep Go's verdict.
        raise FilterConfigError(path, "invalid escape sequence: \\C")
    compiled = _re2.RE2(_encode(pattern), _CAPTURE_OPTS if capture else _BOOL_OPTS)
    if not compiled.ok():
        raise FilterConfigError(path, compiled.error().decode("utf-8", "replace"))
    return compiled


class AnyRegex:
    """``str -> bool``: whether any of the patterns matches somewhere in the string."""

    __slots__ = ("_regexes", "_memo", "patterns", "memo")

    def __init__(self, patterns: Sequence[object], path: str) -> None:
        compiled = [compile_re2(p, f"{path}[{i}]") for i, p in enumerate(patterns)]
        self.patterns = [str(p) for p in patterns]
        # One alternation is one RE2 call instead of one per pattern; \Q...\E could swallow the
        # group's closing parenthesis, so such lists stay separate.
        if len(compiled) > 1 and not any("\\Q" in p for p in self.patterns):
            compiled = [compile_re2("|".join(f"(?:{p})" for p in self.patterns), path)]
        self._regexes = compiled
        self._memo: dict[str, bool] = {}
        self.memo = self._memo  # read-only for callers that inline the lookup (a hit: no call at all)

    def __call__(self, s: str) -> bool:
        hit = self._memo.get(s)
        if hit is not None:
            return hit
        data = _encode(s)
        end = len(data)
        result = any(r.Match(_UNANCHORED, data, 0, end)[0] != _NO_MATCH for r in self._regexes)
        if len(s) <= MEMO_MAX_LEN:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[s] = result
        return result


def _redact_match(regex: _re2.RE2, sub: bytes, replacement: bytes) -> tuple[bytes, bool]:
    """Tetragon's per-match replacement: re-match the matched text alone, replace each capture group.

    Nested groups inside an already replaced group, and groups that did not participate, are
    skipped (their start lies before the end of the last replacement, or is -1).
    """
    spans = regex.Match(_UNANCHORED, sub, 0, len(sub))
    if spans[0] == _NO_MATCH:
        return sub, False
    out: list[bytes] = []
    last = 0
    for start, end in spans[1:]:
        if start < last:
            continue
        out.append(sub[last:start])
        out.append(replacement)
        last = end
    if not out:
        return sub, False
    out.append(sub[last:])
    return b"".join(out), True


def redact_bytes(regex: _re2.RE2, data: bytes, replacement: bytes) -> tuple[bytes, bool]:
    """Go's ``Regexp.ReplaceAllStringFunc`` driving :func:`_redact_match` (Tetragon's redactString)."""
    out: list[bytes] = []
    modified = False
    last_end = 0
    pos = 0
    n = len(data)
    while pos <= n:
        start, end = regex.Match(_UNANCHORED, data, pos, n)[0]
        if start < 0:
            break
        out.append(data[last_end:start])
        if end > last_end or start == 0:  # Go: no replacement for an empty match right after a match
            piece, changed = _redact_match(regex, data[start:end], replacement)
            out.append(piece)
            modified |= changed
        last_end = end
        # Advance past the match, at least one UTF-8 character.
        width = _char_width(data, pos)
        if pos + width > end:
            pos += width
        elif pos + 1 > end:
            pos += 1
        else:
            pos = end
    if not modified:
        return data, False
    out.append(data[last_end:])
    return b"".join(out), True


def _char_width(data: bytes, pos: int) -> int:
    if pos >= len(data):
        return 1
    lead = data[pos]
    if lead < 0x80:
        return 1
    if lead >= 0xF0:
        return 4
    if lead >= 0xE0:
        return 3
    return 2 if lead >= 0xC0 else 1
