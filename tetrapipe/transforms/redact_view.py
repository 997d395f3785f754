"""The lean view with the strings redaction reads, decoded in the one decode every event gets.

Contract: ``RedactionLeanEvent`` is a ``LeanEvent`` (a subclass: every lean field, with the same
name and type) whose bodies of the eight process event types (``RedactionLeanBody``) also carry
``process.environment_variables``, ``parent`` and ``ancestors`` (each with ``binary``,
``arguments`` and ``environment_variables``).  A run whose config redacts anywhere (top level or a
sink) decodes every event into it (``LineDecoder.use_view(Filters.view)``, at load and on SIGHUP),
so that ``Redactor.unchanged_lean`` reads what redaction reads from the view instead of decoding
the raw bytes a second time (``Redactor.unchanged``).  ``view_for(stages)`` is that choice.

Why the leaves are ``Any``: a leaf of another JSON type (a number as ``arguments``) must not change
which events get the lean view; the redactor reads only strings, as its full path does.  A
``parent`` that is not an object, or ``ancestors`` that are not a list of objects, make the lean
decode fail: that event's view is plain dicts, as for any event the lean model does not fit (every
reader of a view takes both, and the redactor then decodes narrowly from the raw bytes).

Cost: the decode of every event grows by the parent's strings, about 0.17 µs per event (1.5 KB
events of tests.support.synth); the narrow second decode it saves costs about 1.5 µs per event
that redaction looks at (benchmarks/filters_e2e.py measures both in a run).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from tetrapipe.event.model import LeanBody, LeanEvent, LeanProcess


class RedactionLeanProcess(LeanProcess, gc=False):
    environment_variables: Any = None


class RedactionRelative(msgspec.Struct, gc=False):
    """A parent or an ancestor: what redaction reads of it."""

    binary: Any = None
    arguments: Any = None
    environment_variables: Any = None


class RedactionLeanBody(LeanBody, gc=False):
    process: RedactionLeanProcess | None = None
    parent: RedactionRelative | None = None
    ancestors: list[RedactionRelative] | None = None


class RedactionLeanEvent(LeanEvent, gc=False):
    process_exec: RedactionLeanBody | None = None
    process_exit: RedactionLeanBody | None = None
    process_kprobe: RedactionLeanBody | None = None
    process_tracepoint: RedactionLeanBody | None = None
    process_uprobe: RedactionLeanBody | None = None
    process_lsm: RedactionLeanBody | None = None
    process_usdt: RedactionLeanBody | None = None
    process_loader: RedactionLeanBody | None = None


def view_for(stages: Iterable[Any]) -> type[LeanEvent] | None:
    """The model to decode events into for these stages: ``RedactionLeanEvent`` if one redacts, else None."""
    return RedactionLeanEvent if any(s is not None and s.redact is not None for s in stages) else None
