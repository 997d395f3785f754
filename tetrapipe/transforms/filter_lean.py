"""The export-filter checks that read the lean typed view (tetrapipe.event.model.LeanEvent), not plain dicts.

Contract: ``LEAN_BUILDERS[field](value, path, state)`` returns a check ``(vbody, event_type) -> bool``
that decides exactly as ``filter_checks.BUILDERS[field]`` does on the generic decode of the same
event (proven by tests/transforms/test_filter_lean.py, a differential property test), where
``vbody`` is ``Decoded.vbody`` of an event whose ``view`` is a ``LeanEvent``.  Only the fields the
lean view carries have one: ``event_set``, ``binary_regex``, ``arguments_regex``, ``namespace``,
``namespace_regex``, ``pod_regex``, ``policy_names``.  A filter line naming any other field is
evaluated on the generic decode (decided per line when the lists are compiled, see
:mod:`.filter`).  The value was already validated by the generic builder, which runs first.

Why the two views agree: the lean decode fails (and the event gets plain dicts as its view) when a
field it types has another JSON type, so on a ``LeanEvent`` ``process``/``pod`` are objects or
absent/null and the strings are strings or absent/null; an absent or null string reads as ``""``
and an absent or null object as "no object", exactly as ``filter_checks`` reads dicts.  The lean
view types the bodies of the eight process event types (``LeanBody``), the only types whose
process, pod and policy name the checks read.

Why it pays: the lean view is decoded for every event anyway; the generic decode of a whole event
(every dict and string of it) cost about half of a filtered run's filter time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import tetragon_schema as schema
from .filter_checks import BUILDERS, strings
from .re2match import AnyRegex

LeanCheck = Callable[[Any, str], bool]
_PROC = schema.PROCESS_EVENT_TYPES
_POLICY = schema.POLICY_EVENT_TYPES


def _process_regex(key: str) -> Callable[[Any, str, Any], LeanCheck]:
    def build(value: Any, path: str, _: Any) -> LeanCheck:
        match = AnyRegex(strings(value, path), path)

        def check(vbody: Any, etype: str) -> bool:
            if etype not in _PROC:
                return False
            p = vbody.process
            return p is not None and match(getattr(p, key) or "")
        return check
    return build


def _pod_regex(key: str) -> Callable[[Any, str, Any], LeanCheck]:
    def build(value: Any, path: str, _: Any) -> LeanCheck:
        match = AnyRegex(strings(value, path), path)

        def check(vbody: Any, etype: str) -> bool:
            if etype not in _PROC:
                return False
            p = vbody.process
            pod = p.pod if p is not None else None
            return pod is not None and match(getattr(pod, key) or "")
        return check
    return build


def _namespace(value: Any, path: str, _: Any) -> LeanCheck:
    wanted = frozenset(strings(value, path))

    def check(vbody: Any, etype: str) -> bool:
        if etype not in _PROC:
            return False
        p = vbody.process
        if p is None:
            return False
        pod = p.pod
        return ((pod.namespace or "") if pod is not None else "") in wanted
    return check


def _policy_names(value: Any, path: str, _: Any) -> LeanCheck:
    names = frozenset(strings(value, path))

    def check(vbody: Any, etype: str) -> bool:
        name = (vbody.policy_name or "") if etype in _POLICY else ""
        return name != "" and name in names
    return check


def _event_set(value: Any, path: str, state: Any) -> LeanCheck:
    return BUILDERS["event_set"](value, path, state)  # reads only the event type: it serves both views


LEAN_BUILDERS: dict[str, Callable[[Any, str, Any], LeanCheck]] = {
    "event_set": _event_set,
    "binary_regex": _process_regex("binary"),
    "arguments_regex": _process_regex("arguments"),
    "namespace": _namespace,
    "namespace_regex": _pod_regex("namespace"),
    "pod_regex": _pod_regex("name"),
    "policy_names": _policy_names,
}
