"""Kubernetes label selectors (``app=web,tier in (a,b),!canary``), as Tetragon's ``labels`` filter parses them.

Contract: ``parse_selector(text, path)`` returns a predicate over a ``{label: value}`` mapping, or
raises :class:`FilterConfigError`.  The grammar and the checks are apimachinery's ``labels.Parse``
(Tetragon uses a copy of it): requirements separated by commas, all must hold; operators ``=``,
``==``, ``!=``, ``in (...)``, ``notin (...)``, ``>``/``<`` (integers), bare ``key`` (exists) and
``!key`` (does not exist); keys must be qualified names (``[prefix/]name``), values valid label
values.  ``!=`` and ``notin`` also hold when the label is absent.  The empty selector matches
every label set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .filter_errors import FilterConfigError

Predicate = Callable[[Mapping[str, str]], bool]
_SPECIAL = "=!(),><"
_TOKENS = {")": ")", ",": ",", "!": "!", "==": "==", "=": "=", ">": ">", "in": "in", "<": "<", "!=": "!=",
           "notin": "notin", "(": "("}
_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_INT = re.compile(r"[+-]?[0-9]+\Z")


def _lex(s: str) -> list[tuple[str, str]]:
    """(kind, literal) tokens; kind is an operator/keyword literal, "id" or "end"."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in " \t\r\n":
            i += 1
        if i >= n:
            out.append(("end", ""))
            return out
        if s[i] in _SPECIAL:
            # longest run of special symbols that is still a token (apimachinery's scanSpecialSymbol)
            best, j = "", i
            while j < n and s[j] in _SPECIAL:
                if s[i:j + 1] in _TOKENS:
                    best = s[i:j + 1]
                elif best:
                    break
                j += 1
            if not best:
                raise ValueError(f"error expected: keyword found '{s[i:j]}'")
            out.append((best, best))
            i += len(best)
            continue
        j = i
        while j < n and s[j] not in _SPECIAL and s[j] not in " \t\r\n":
            j += 1
        word = s[i:j]
        out.append((_TOKENS.get(word, "id"), word))
        i = j


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix) or "/" in prefix):
        raise ValueError(f"invalid label key {key!r}: the prefix must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME.match(name):
        raise ValueError(f"invalid label key {key!r}: a name must be 63 characters or less, alphanumeric at both "
                         "ends, with '-', '_' or '.' between")


def _check_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise ValueError(f"invalid label value {value!r}: must be empty or 63 characters or less, alphanumeric "
                         "at both ends, with '-', '_' or '.' between")


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _lex(text)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        kind, lit = self.toks[self.pos]
        return ("id" if kind in ("in", "notin") else kind), lit  # keywords are identifiers in value context

    def take(self, keyword_ok: bool = False) -> tuple[str, str]:
        kind, lit = self.toks[self.pos]
        self.pos += 1
        return (kind if keyword_ok or kind not in ("in", "notin") else "id"), lit

    def parse(self) -> list[Predicate]:
        reqs: list[Predicate] = []
        while True:
            kind, lit = self.peek()
            if kind == "end":
                return reqs
            if kind not in ("id", "!"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            reqs.append(self.requirement())
            kind, lit = self.take()
            if kind == "end":
                return reqs
            if kind != ",":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            if self.peek()[0] not in ("id", "!"):
                raise ValueError(f"found '{self.peek()[1]}', expected: identifier after ','")

    def requirement(self) -> Predicate:
        kind, key = self.take()
        negate = kind == "!"
        if negate:
            kind, key = self.take()
        if kind != "id":
            raise ValueError(f"found '{key}', expected: identifier")
        _check_key(key)
        if self.peek()[0] in ("end", ","):
            return (lambda ls: key not in ls) if negate else (lambda ls: key in ls)
        if negate:
            raise ValueError(f"found '{self.peek()[1]}', expected: ',' or 'end of string'")
        op, lit = self.take(keyword_ok=True)
        if op in ("in", "notin"):
            values = self.value_set()
        elif op in ("=", "==", "!=", ">", "<"):
            values = self.exact_value()
        else:
            raise ValueError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        for v in values:
            _check_value(v)
        return _requirement(key, op, values)

    def value_set(self) -> frozenset[str]:
        kind, lit = self.take()
        if kind != "(":
            raise ValueError(f"found '{lit}' expected: '('")
        kind, lit = self.peek()
        if kind == ")":
            self.take()
            return frozenset({""})
        if kind not in ("id", ","):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, lit = self.take()
            if kind == "id":
                values.add(lit)
                nxt, nlit = self.peek()
                if nxt == ")":
                    break
                if nxt != ",":
                    raise ValueError(f"found '{nlit}', expected: ',' or ')'")
            elif kind == ",":
                if not values:
                    values.add("")
                nxt = self.peek()[0]
                if nxt == ")":
                    values.add("")
                    break
                if nxt == ",":
                    self.take()
                    values.add("")
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")
        self.take()  # the ")"
        return frozenset(values)

    def exact_value(self) -> frozenset[str]:
        kind, lit = self.peek()
        if kind in ("end", ","):
            return frozenset({""})
        kind, lit = self.take()
        if kind != "id":
            raise ValueError(f"found '{lit}', expected: identifier")
        return frozenset({lit})


def _requirement(key: str, op: str, values: frozenset[str]) -> Predicate:
    if op in ("in", "=", "=="):
        return lambda ls: ls.get(key) in values if key in ls else False
    if op in ("notin", "!="):
        return lambda ls: ls.get(key) not in values if key in ls else True
    (bound_text,) = values
    if not _INT.match(bound_text):
        raise ValueError(f"for 'Gt', 'Lt' operators, the value must be an integer: {bound_text!r}")
    bound = int(bound_text)
    greater = op == ">"

    def compare(ls: Mapping[str, str]) -> bool:
        value = ls.get(key)
        if value is None or not _INT.match(value):
            return False
        return int(value) > bound if greater else int(value) < bound

    return compare


def parse_selector(text: object, path: str) -> Predicate:
    """Compile one selector string; FilterConfigError(path, reason) if it does not parse."""
    if not isinstance(text, str):
        raise FilterConfigError(path, f"expected a label selector string, got {type(text).__name__}")
    try:
        reqs = _Parser(text).parse()
    except ValueError as exc:
        raise FilterConfigError(path, f"invalid label selector: {exc}") from None
    return lambda labels: all(r(labels) for r in reqs)
