"""An EXCLUDE field filter decided without the generic decode: an event that has none of its paths is unchanged.

Contract: ``PresenceCheck(plan, event_type)`` (a :mod:`.fieldmask` plan keyed by JSON names, of a
schema event type) compiles, once, a msgspec decoder of ``{event_type: {...}}`` typed with the plan's
paths alone; ``check.untouched(raw) -> bool`` is True only if ``fieldmask.exclude(plan, body)``
returns the body itself, ``body`` being the object under ``event_type`` in ``raw``.  Everything else
in the event is skipped by the decoder, not built.

How: an excluded (leaf) field is typed ``Any`` with the default ``UNSET`` -- any value, present or not
is all that matters; a field on the way to one is an object or a list of objects of the next level,
``UNSET`` when absent, and nothing else: where ``exclude`` drops a value that does not fit (null, a
string, a list with a non-object: fail closed), the decode fails, and the caller takes the full path.
Field names are the JSON names, through msgspec's ``rename`` (a JSON name need not be an identifier).

Why: an EXCLUDE filter (``process.cap``, ``parent``, ``process.environment_variables``) usually names
fields most events lack or that are cheap to skip; deciding "unchanged" on a narrow decode costs a
scan of the bytes, the generic decode of a whole event (every dict and string) several times that.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec
from msgspec import UNSET, UnsetType

from .fieldmask import LEAF, Plan

assert LEAF is None  # "the whole value" in a plan

def _level(plan: Plan, name: str) -> Any:
    fields: list[tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, (key, sub) in enumerate(plan.fields.items()):
        attr = f"f{i}"
        rename[attr] = key
        if sub is None:  # LEAF
            fields.append((attr, Any, UNSET))
        else:
            inner = _level(sub, f"{name}_{i}")
            fields.append((attr, Union[inner, list[inner], UnsetType], UNSET))  # type: ignore[valid-type]  # noqa: UP007
    return msgspec.defstruct(name, fields, rename=rename, gc=False)


Level = tuple[tuple[str, Any], ...]  # (attribute, the next Level or None for an excluded leaf), per plan level


def _levels(plan: Plan) -> Level:
    return tuple((f"f{i}", None if sub is None else _levels(sub)) for i, sub in enumerate(plan.fields.values()))


def _untouched(obj: Any, level: Level) -> bool:
    for attr, sub in level:
        value = getattr(obj, attr)
        if value is UNSET:
            continue
        if sub is None:  # an excluded leaf is present
            return False
        if type(value) is list:
            for item in value:
                if not _untouched(item, sub):
                    return False
        elif not _untouched(value, sub):
            return False
    return True


class PresenceCheck:
    __slots__ = ("_levels", "_decoder", "_etype")

    def __init__(self, plan: Plan, event_type: str) -> None:
        assert not plan.by_name, "a plan of a schema event type"
        body = _level(plan, f"_Presence_{event_type}")
        self._levels = _levels(plan)
        self._etype = event_type
        self._decoder = msgspec.json.Decoder(msgspec.defstruct(
            f"_PresenceEvent_{event_type}", [("body", body | UnsetType, UNSET)], rename={"body": event_type},
            gc=False))

    def untouched(self, raw: bytes) -> bool:
        """True only if excluding the plan's paths leaves the event's body as it is."""
        try:
            body = self._decoder.decode(raw).body  # type: ignore[attr-defined]
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False  # a shape exclude fails closed on (or no object at all): the full path decides
        return body is not UNSET and _untouched(body, self._levels)
