"""Tetragon export filters: allow/deny lists in the shape of ``--export-allowlist``/``--export-denylist``.

Contract:

* ``compile_filters(allow, deny, *, path="filters", enable_pid_set=False) -> ExportFilter``.  Each
  list holds Tetragon ``Filter`` objects as JSON/YAML dicts (``{"event_set": ["PROCESS_EXEC"],
  "namespace": ["default"]}``); ``parse_filter_list(text)`` reads Tetragon's flag/Helm form (JSON
  objects one after another, usually one per line) into such a list.
* ``ExportFilter(event, event_type) -> bool``: the event passes if it matches some allow item (or
  the allow list is empty) and no deny item.  Fields of one item are AND'ed, items OR'ed, values
  inside a field OR'ed.  ``event`` is the decoded protojson event (``{"process_exec": {...},
  "node_name": ...}``), ``event_type`` its event key (``"process_exec"``).  Never raises per event;
  never mutates the event.  ``is_noop`` is true when both lists are empty (the caller can skip it).
* Field names and values are read as Tetragon reads them (protojson): snake_case or lowerCamelCase
  names, enum names or numbers, ``null``/``[]`` = field not set (no constraint; ``{}`` matches every
  event).  Anything else -- an unknown field, a bad regex/label selector/CEL expression, a wrong type
  -- raises :class:`FilterConfigError` with its path, e.g. ``filters.allow[2].binary_regex[0]:
  missing ): (abc``.  ``pid_set`` needs ``enable_pid_set=True``, like Tetragon's
  ``--enable-pid-set-filter``.
* Per-field semantics: :mod:`.filter_checks`.  Not checked (agent configuration tetrapipe cannot
  see): Tetragon refuses ``capabilities`` without ``enable-process-cred`` and
  ``ancestor_binary_regex`` for event types without ``enable-ancestors``; here they just match what
  the events carry.

* ``ExportFilter.decide(decoded) -> bool``: the same verdict for a ``tetrapipe.event.decode.Decoded``,
  read from its lean typed view where it can: a line whose fields the lean view carries
  (:mod:`.filter_lean`: event_set, binary/arguments regexes, namespace(s), pod, policy names) is
  checked on ``decoded.vbody``; any other line on ``decoded.generic_root()`` (decoded then, once).
  Which lines are lean is decided here, at compile time (``lean_lines``).

Cost: everything is compiled here; per event only the checks run, cheapest first unless the item
has a ``pid_set`` (then Tetragon's order, which decides what pid_set remembers).  Lines are
evaluated in the same order by both entry points and each line decides the same, so a stateful
check (pid_set, which is never lean) sees the same calls either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from . import tetragon_schema as schema
from .filter_checks import BUILDERS, COST, Check
from .filter_errors import FilterConfigError
from .filter_lean import LEAN_BUILDERS, LeanCheck

_CAMEL = {"".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): k for k in BUILDERS}
TOP_LEVEL = frozenset({"node_name", "time", "aggregation_info", "cluster_name", "node_labels"})


def event_type_of(event: dict[str, Any]) -> str:
    """The event-type key of a decoded event: its first key that is not a GetEventsResponse field."""
    for key in event:
        if key not in TOP_LEVEL and key != "tetrapipe":
            return key
    return ""


def parse_filter_list(text: str, path: str = "filters") -> list[dict[str, Any]]:
    """Tetragon's flag form: JSON objects one after another (newline-separated in practice)."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise FilterConfigError(f"{path}[{len(out)}]", f"invalid JSON: {exc.msg} at offset {exc.pos}") from None
        if not isinstance(obj, dict):
            raise FilterConfigError(f"{path}[{len(out)}]", "expected a JSON object")
        out.append(obj)


def compile_item(item: Any, path: str, state: dict[str, Any]) -> tuple[Check, ...]:
    """One Filter object -> its checks, in evaluation order."""
    return compile_line(item, path, state)[0]


Line = tuple[tuple[Check, ...], tuple[LeanCheck, ...] | None, bool]
"""One compiled filter line: its generic checks, its lean checks (None: some field is not lean), and
whether it may read what redaction changes (arguments; CEL may read anything)."""
READS_REDACTED = frozenset({"arguments_regex", "parent_arguments_regex", "cel_expression"})


def compile_line(item: Any, path: str, state: dict[str, Any]) -> Line:
    """One Filter object -> its generic checks and, when every field it names is lean, its lean checks."""
    if not isinstance(item, dict):
        raise FilterConfigError(path, "expected an object (one Tetragon filter)")
    fields: dict[str, Any] = {}
    for key, value in item.items():
        name = key if key in BUILDERS else _CAMEL.get(key)
        if name is None:
            raise FilterConfigError(f"{path}.{key}", f"unknown field; Tetragon's filters have: {', '.join(BUILDERS)}")
        if name in fields:
            raise FilterConfigError(f"{path}.{key}", f"duplicate field {name}")
        fields[name] = value
    present = [name for name in BUILDERS if fields.get(name) is not None and fields[name] != []]
    if "pid_set" not in present:
        present.sort(key=lambda name: COST.get(name, 5))
    checks = tuple(BUILDERS[name](fields[name], f"{path}.{name}", state) for name in present)
    reads_redacted = not READS_REDACTED.isdisjoint(present)
    if not all(name in LEAN_BUILDERS for name in present):
        return checks, None, reads_redacted
    lean = tuple(LEAN_BUILDERS[name](fields[name], f"{path}.{name}", state) for name in present)
    return checks, lean, reads_redacted


class ExportFilter:
    """Compiled allow + deny lists; call with (event, event_type)."""

    __slots__ = ("_allow", "_deny", "_allow_lines", "_deny_lines", "is_noop", "cel_filters", "lean_lines",
                 "allow_reads_redacted", "deny_reads_redacted")

    def __init__(self, allow: Sequence[Any], deny: Sequence[Any], *, path: str = "filters",
                 enable_pid_set: bool = False) -> None:
        state = {"enable_pid_set": enable_pid_set}
        for name, items in (("allow", allow), ("deny", deny)):
            if not isinstance(items, list | tuple):
                raise FilterConfigError(f"{path}.{name}", "expected a list of filters")
        self._allow_lines = tuple(compile_line(f, f"{path}.allow[{i}]", state) for i, f in enumerate(allow))
        self._deny_lines = tuple(compile_line(f, f"{path}.deny[{i}]", state) for i, f in enumerate(deny))
        self._allow = tuple(line[0] for line in self._allow_lines)
        self._deny = tuple(line[0] for line in self._deny_lines)
        self.lean_lines = sum(line[1] is not None for line in self._allow_lines + self._deny_lines)
        # whether redaction can change the verdict of a list (else it may be decided before redacting)
        self.allow_reads_redacted = any(line[2] for line in self._allow_lines)
        self.deny_reads_redacted = any(line[2] for line in self._deny_lines)
        self.is_noop = not self._allow and not self._deny
        # the CEL checks carry an ``errors`` counter (evaluation errors count as "no match")
        self.cel_filters = [c for item in self._allow + self._deny for c in item if hasattr(c, "errors")]

    def __call__(self, event: dict[str, Any], event_type: str) -> bool:
        body = event.get(event_type)
        if type(body) is not dict:
            body = _EMPTY
        if self._allow and not _any_item(self._allow, body, event_type):
            return False
        return not (self._deny and _any_item(self._deny, body, event_type))

    def decide(self, decoded: Any) -> bool:
        """The verdict for a ``Decoded`` event, from its lean view where the lines allow it."""
        return self.allows(decoded) and not self.denies(decoded)

    def allows(self, decoded: Any, event: dict[str, Any] | None = None) -> bool:
        """The allow half of ``decide``; on ``event`` (plain dicts, e.g. redacted) when given."""
        return not self._allow or _matches(self._allow_lines, self._allow, decoded, event)

    def denies(self, decoded: Any, event: dict[str, Any] | None = None) -> bool:
        """The deny half of ``decide`` (evaluate it after ``allows``, as ``decide`` does: pid_set)."""
        return bool(self._deny) and _matches(self._deny_lines, self._deny, decoded, event)


_EMPTY: dict[str, Any] = {}


def _matches(lines: tuple[Line, ...], items: tuple[tuple[Check, ...], ...], decoded: Any,
             event: dict[str, Any] | None) -> bool:
    if event is None and type(decoded.view) is not dict:  # a LeanEvent (or a subclass, see Filters.view)
        return _any_line(lines, decoded)
    if event is None:  # plain dicts: the view is the generic decode
        event = decoded.generic_root()
    body = event.get(decoded.etype)
    return _any_item(items, body if type(body) is dict else _EMPTY, decoded.etype)


def _any_line(lines: tuple[Line, ...], decoded: Any) -> bool:
    etype = decoded.etype
    vbody = decoded.vbody
    for checks, lean, _ in lines:
        if lean is not None:
            for lean_check in lean:
                if not lean_check(vbody, etype):
                    break
            else:
                return True
            continue
        body = decoded.generic_root().get(etype)
        if type(body) is not dict:
            body = _EMPTY
        for check in checks:
            if not check(body, etype):
                break
        else:
            return True
    return False


def _any_item(items: tuple[tuple[Check, ...], ...], body: dict[str, Any], etype: str) -> bool:
    for checks in items:
        for check in checks:
            if not check(body, etype):
                break
        else:
            return True
    return False


def compile_filters(allow: Sequence[Any] = (), deny: Sequence[Any] = (), *, path: str = "filters",
                    enable_pid_set: bool = False) -> ExportFilter:
    """Compile Tetragon allow/deny filter lists (see the module docstring)."""
    return ExportFilter(allow, deny, path=path, enable_pid_set=enable_pid_set)


__all__ = ["ExportFilter", "FilterConfigError", "compile_filters", "event_type_of", "parse_filter_list",
           "schema"]
