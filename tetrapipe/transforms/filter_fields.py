"""Tetragon field filters (``--field-filters``): keep or drop fields of the event, per event type.

Contract: ``compile_field_filters(items, *, path="field_filters") -> FieldFilters``; each item is
Tetragon's ``FieldFilter`` as JSON/YAML: ``{"event_set": ["PROCESS_EXEC"], "fields":
"process.pid,process.binary", "action": "INCLUDE"|"EXCLUDE", "invert_event_set": false}``
(``fields`` also as a list; names snake_case or camelCase).  ``FieldFilters(event, event_type)``
returns the filtered event; items apply in order, each to the result of the one before.  Semantics
(cilium/tetragon ``pkg/fieldfilters`` + fieldmask-utils):

* Only the object under the event-type key is filtered; ``node_name``, ``time`` and every other
  top-level key stay.  An item applies when ``event_set`` is empty or contains the event's type
  (with ``invert_event_set``: when it does not contain it).
* INCLUDE keeps only the listed paths (a path to a message keeps all of it; a message on the way to
  a kept field stays, possibly as ``{}``); an empty ``fields`` keeps everything.  EXCLUDE drops the
  listed paths.  Lists apply the rest of the path to each element.  Map fields (``pod_labels``,
  ``pod_annotations``) are kept or dropped whole.
* Paths use Tetragon's field names, including the oneof of kprobe arguments: ``args.arg.sock_arg``
  (``args.sock_arg`` selects nothing in Tetragon, so it is refused here with that hint).

Deliberate differences, failing closed: a path naming no field of any event type it applies to, a
path below a scalar or a map, or a bad event type/action is a :class:`FilterConfigError` at compile
time (Tetragon silently ignores such paths -- an EXCLUDE typo would ship the field).  At run time a
value whose shape does not fit its path (a string where the schema has an object) is removed, both
for INCLUDE and EXCLUDE, never shipped unfiltered; an event whose event object is not a JSON object
raises :class:`FieldFilterError` (the caller dead-letters it).  Tetragon instead logs and ships the
event unfiltered.  The input event is not mutated; the result shares unchanged subtrees with it.

``FieldFilters.unchanged(decoded)``: True only when the call would return the event itself -- decided
on a narrow decode of the raw bytes for EXCLUDE items (:mod:`.field_presence`), so an event an
EXCLUDE filter does not touch needs no generic decode.  Proven by a differential property test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import tetragon_schema as schema
from .field_presence import PresenceCheck
from .fieldmask import Plan, compile_plan, exclude, include
from .filter_checks import enum_number
from .filter_errors import FieldFilterError, FilterConfigError

_ACTIONS = {"INCLUDE": 0, "EXCLUDE": 1}
_KEYS = {"event_set": "event_set", "eventSet": "event_set", "fields": "fields", "action": "action",
         "invert_event_set": "invert_event_set", "invertEventSet": "invert_event_set"}


class _Item:
    __slots__ = ("types", "invert", "exclude", "plans", "generic", "paths", "presence")

    def __init__(self, item: Any, path: str) -> None:
        if not isinstance(item, dict):
            raise FilterConfigError(path, "expected an object (one Tetragon field filter)")
        spec: dict[str, Any] = {}
        for key, value in item.items():
            if key not in _KEYS:
                raise FilterConfigError(f"{path}.{key}", "unknown field; expected event_set, fields, action, "
                                                         "invert_event_set")
            spec[_KEYS[key]] = value
        types = spec.get("event_set") or []
        if not isinstance(types, list):
            raise FilterConfigError(f"{path}.event_set", "expected a list of event types")
        numbers = {enum_number(t, schema.EVENT_TYPE_NUMBERS, f"{path}.event_set[{i}]", "event type")
                   for i, t in enumerate(types)}
        self.types = frozenset(k for k, (_, n, _) in schema.EVENT_TYPES.items() if n in numbers)
        invert = spec.get("invert_event_set")
        if invert is not None and not isinstance(invert, bool):
            raise FilterConfigError(f"{path}.invert_event_set", "expected true or false")
        self.invert = bool(invert) and bool(types)
        action = spec.get("action", "INCLUDE")
        self.exclude = enum_number(action, _ACTIONS, f"{path}.action", "field filter action") == 1
        self.paths = _paths(spec.get("fields"), f"{path}.fields")
        targets = [k for k in schema.EVENT_TYPES if not types or (k in self.types) != self.invert]
        self.plans: dict[str, Plan] = {}
        for etype in targets:
            self.plans[etype], _ = compile_plan(schema.EVENT_TYPES[etype][2], self.paths)
        # a path Tetragon would silently ignore for every event type the item applies to is an error
        for p in self.paths:
            problems = [compile_plan(schema.EVENT_TYPES[t][2], [p])[1] for t in targets]
            if targets and all(problems):
                raise FilterConfigError(f"{path}.fields", f"{p!r}: {problems[0][0]}")
        # event types outside the schema (newer Tetragon): the paths are applied by field name alone
        self.generic = compile_plan(None, self.paths)[0]
        # EXCLUDE: "does the event have any of the paths?" on a narrow decode (FieldFilters.unchanged)
        self.presence = {etype: PresenceCheck(plan, etype) for etype, plan in self.plans.items()} \
            if self.exclude else {}

    def applies(self, etype: str) -> bool:
        return not self.types and not self.invert or (etype in self.types) != self.invert


def _paths(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [p for p in value.split(",") if p.strip()]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise FilterConfigError(path, "expected a comma-separated string or a list of field paths")
    out = []
    for p in value:
        p = p.strip()
        if not p or any(not seg or not seg.replace("_", "a").isalnum() for seg in p.split(".")):
            raise FilterConfigError(path, f"invalid field path {p!r}")
        out.append(p)
    return out


class FieldFilters:
    """Compiled field filters; call with (event, event_type) -> filtered event."""

    __slots__ = ("_items", "is_noop")

    def __init__(self, items: Sequence[Any], path: str = "field_filters") -> None:
        if not isinstance(items, list | tuple):
            raise FilterConfigError(path, "expected a list of field filters")
        self._items = [_Item(item, f"{path}[{i}]") for i, item in enumerate(items)]
        self.is_noop = not self._items

    def paths(self, index: int) -> list[str]:
        return list(self._items[index].paths)

    def unchanged(self, decoded: Any) -> bool:
        """True only if ``self(decoded.generic_root(), decoded.etype)`` returns the event itself (and does
        not raise): every item that applies is an EXCLUDE whose paths the event lacks (:mod:`.field_presence`)."""
        if type(decoded.view) is dict and type(decoded.vbody) is not dict:
            return False  # no event object: the full path raises FieldFilterError (a lean view has one)
        etype = decoded.etype
        for item in self._items:
            if not item.applies(etype):
                continue
            check = item.presence.get(etype)
            if check is None or not check.untouched(decoded.raw):
                return False
        return True

    def __call__(self, event: dict[str, Any], event_type: str) -> dict[str, Any]:
        original = event.get(event_type)
        if type(original) is not dict:
            raise FieldFilterError(f"event has no {event_type!r} object to filter")
        body: dict[str, Any] = original
        for item in self._items:
            if not item.applies(event_type):
                continue
            plan = item.plans.get(event_type, item.generic)
            body = exclude(plan, body) if item.exclude else include(plan, body)
        return event if body is original else {**event, event_type: body}


def compile_field_filters(items: Sequence[Any], *, path: str = "field_filters") -> FieldFilters:
    """Compile Tetragon field filters (see the module docstring)."""
    return FieldFilters(items, path)
