"""Counters every component reports into: received, sent (after ack), dropped by reason, bad by reason.

One object per run, owned by the event loop thread (no locks).  The exit
summary and the Prometheus endpoint (`tetrapipe.service.metrics`, which reads these on
each scrape, on the same loop) use the same counters, so what an operator sees
at exit and on /metrics cannot disagree.  Nothing here costs more than a
counter update per batch plus C-level counting per event.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from tetrapipe.event.model import KNOWN_TYPES

if TYPE_CHECKING:
    from tetrapipe.event.envelope import Batch, Envelope

# Seconds from reading a batch to its acknowledgement by every sink: sub-millisecond (stdout)
# to minutes (a sink outage being retried).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0)
_categories_of = attrgetter("tags.categories")
_etype_of = attrgetter("decoded.etype")
_KNOWN_TYPES = frozenset(KNOWN_TYPES)


class Histogram:
    """Cumulative-bucket histogram in the Prometheus sense (`le` upper bounds, +Inf implied)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """[(le, cumulative count)] including "+Inf", as exposition formats want them."""
        out, running = [], 0
        for bound, n in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class Stats:
    def __init__(self) -> None:
        self.received = 0  # records read from the source (lines, messages)
        self.events = 0  # records decoded into events
        self.bad: Counter[str] = Counter()  # reason → records that could not be decoded
        self.blank = 0  # empty lines: nothing to keep, counted for the record
        self.incomplete = 0  # events missing fields Tetragon always sets (still forwarded)
        self.dead_lettered = 0
        self.dead_lettered_by_reason: Counter[str] = Counter()
        self.categories: Counter[str] = Counter()
        self.event_types: Counter[str] = Counter()  # Tetragon event type (process_exec, ...) → events
        self.zones: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # sink name → events acknowledged
        # sink name → (categories tuple → events acknowledged); () is "untagged"
        self.sent_categories: dict[str, Counter[tuple[str, ...]]] = {}
        self.filtered: Counter[str] = Counter()  # sink name → events the sink did not select
        # scope ("*": the top-level filters, every sink; else a sink name) → reason → events its filters dropped
        # (tetrapipe.pipeline.filtering: filtered, deduplicated, rate_limited, field_filter, internal_error)
        self.filtered_out: defaultdict[str, Counter[str]] = defaultdict(Counter)
        # scope (as above) → "rate_limit" / "dedup" → keys evicted at max_keys (tetrapipe.pipeline.summaries)
        self.evicted_keys: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.sink_errors: Counter[str] = Counter()
        self.sink_retries: Counter[str] = Counter()
        self.committed_batches = 0
        self.in_flight_batches = 0  # read and not yet acknowledged by every sink
        self.in_flight_events = 0
        self.batch_latency = Histogram(LATENCY_BUCKETS)
        self.last_commit_time: float | None = None  # wall clock (epoch seconds) of the last successful commit
        self.reloads: Counter[str] = Counter()  # "ok" / "failed" → SIGHUP reloads
        self.started = time.time()

    def count_batch(self, batch: Batch) -> None:
        """Update the per-event counters for a processed batch."""
        self.received += len(batch.envelopes)
        self.events += len(batch.good)
        self.event_types.update(map(_etype_of, batch.good))  # counted in C
        cats = self.categories
        zones = self.zones
        tally = batch.tally
        if tally is not None:  # the processor's counts: O(distinct categories and zones), not O(batch)
            for shape, n in tally.shapes.items():
                for cat in shape:
                    cats[cat] += n
            zones.update(tally.zones)
            self.incomplete += tally.incomplete
        for env in (batch.good if tally is None else ()):
            if env.tags.categories:
                cats.update(env.tags.categories)
            decoded = env.decoded
            if decoded.egress is not None:  # type: ignore[union-attr]
                zones[decoded.egress.zone] += 1  # type: ignore[union-attr]
            if decoded.incomplete:  # type: ignore[union-attr]
                self.incomplete += 1
        for env in batch.bad:
            reason = env.error.reason  # type: ignore[union-attr]
            if reason == "blank":
                self.blank += 1
            else:
                self.bad[reason] += 1

    def count_sent(self, sink: str, envelopes: Sequence[Envelope]) -> None:
        """A sink acknowledged these events."""
        self.sent[sink] += len(envelopes)
        per_sink = self.sent_categories.get(sink)
        if per_sink is None:
            per_sink = self.sent_categories[sink] = Counter()
        per_sink.update(map(_categories_of, envelopes))  # counted in C: a tuple per event

    def count_dead_lettered(self, envelopes: Sequence[Envelope]) -> None:
        self.dead_lettered += len(envelopes)
        self.dead_lettered_by_reason.update(e.error.reason for e in envelopes if e.error is not None)

    def sent_by_category(self, sink: str) -> Counter[str]:
        """Events acknowledged by `sink`, per category; an event counts once for each of its
        categories, untagged events under "untagged"."""
        out: Counter[str] = Counter()
        for cats, n in self.sent_categories.get(sink, Counter()).items():
            for cat in cats or ("untagged",):
                out[cat] += n
        return out

    def unknown_event_types(self) -> dict[str, int]:
        """Event types tetrapipe has no model for (newer Tetragon ones, e.g. process_connect): forwarded untagged."""
        return {etype: n for etype, n in sorted(self.event_types.items()) if etype not in _KNOWN_TYPES}

    def summary_fields(self) -> dict[str, object]:
        """The exit summary as data (the JSON log's `run summary` record)."""
        return {"records_read": self.received, "events": self.events, "bad": dict(self.bad),
                "dead_lettered": self.dead_lettered, "blank_lines": self.blank, "incomplete": self.incomplete,
                "categories": dict(self.categories), "zones": dict(self.zones), "sent": dict(self.sent),
                "not_selected": dict(self.filtered), "sink_retries": dict(self.sink_retries),
                **({"filtered_out": {scope: dict(n) for scope, n in self.filtered_out.items() if n}}
                   if any(self.filtered_out.values()) else {}),
                **({"evicted_keys": {scope: dict(n) for scope, n in self.evicted_keys.items() if n}}
                   if any(self.evicted_keys.values()) else {}),
                **({"unknown_event_types": unknown} if (unknown := self.unknown_event_types()) else {}),
                **({"undelivered": self.in_flight_events} if self.in_flight_events else {})}
