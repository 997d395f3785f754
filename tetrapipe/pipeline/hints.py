"""One INFO line when a long run has seen no event of a type some categories need: Tetragon is likely set up
so that they can never fire.

After `after_events` decoded events (once per run, checked per batch from `Stats`, so it costs a
comparison per batch), each event type the library's categories need that has not been seen at all is
named with the likely Tetragon setting: a type missing from the Helm chart's default export allow list
(`process_loader`) → `tetragon.exportAllowList`; another (`process_kprobe`, ...) → the TracingPolicy that
produces it is probably not applied.  `after_events` 0 turns the hint off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tetrapipe.logs import emit
from tetrapipe.pipeline.stats import Stats
from tetrapipe.rules.library import Category
from tetrapipe.rules.tetragon_export import ALLOW_SETTING, DEFAULT_ALLOWED_TYPES, needs_types

DEFAULT_AFTER_EVENTS = 100_000


def missing_types(stats: Stats, categories: Iterable[Category]) -> dict[str, list[str]]:
    """Event type never seen → the categories needing it, for categories none of whose types was seen."""
    out: dict[str, list[str]] = {}
    for cid, types in needs_types(categories).items():
        if not any(stats.event_types[t] for t in types):
            for etype in sorted(types):
                out.setdefault(etype, []).append(cid)
    return out


def hint_text(events: int, missing: dict[str, list[str]]) -> str:
    parts = []
    for etype, cids in sorted(missing.items()):
        where = (f"Tetragon's Helm value {ALLOW_SETTING} probably lacks {etype.upper()} (not in the Helm default)"
                 if etype not in DEFAULT_ALLOWED_TYPES else
                 "is the TracingPolicy producing it applied? (tetrapipe policies list / render)")
        parts.append(f"no {etype} event (needed by {', '.join(cids)}): {where}")
    return (f"after {events:,} events, " + "; ".join(parts)
            + " — see 'tetrapipe categories --markdown', section Tetragon's export defaults")


class SetupHints:
    """Checks once, after `after_events` events; `categories()` gives the library in use."""

    def __init__(self, categories: Callable[[], Iterable[Category]],
                 after_events: int = DEFAULT_AFTER_EVENTS, log: Any = None) -> None:
        self.categories = categories
        self.after_events = after_events
        self.log = log
        self.done = after_events <= 0

    def check(self, stats: Stats) -> None:
        if self.done or stats.events < self.after_events:
            return
        self.done = True
        missing = missing_types(stats, self.categories())
        if missing:
            emit(self.log, "info", hint_text(stats.events, missing), missing_event_types=sorted(missing))
