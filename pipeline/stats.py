"""Counters every component reports into: received, sent (after ack), dropped by reason, bad by reason.

One object per run, owned by the event loop thread (no locks).  The exit
summary and, later, the Prometheus endpoint read the same counters, so what
an operator sees at exit and on /metrics cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pipeline.envelope import Batch


class Stats:
    def __init__(self) -> None:
        self.received = 0  # records read from the source (lines, messages)
        self.events = 0  # records decoded into events
        self.bad: Counter[str] = Counter()  # reason → records that could not be decoded
        self.blank = 0  # empty lines: nothing to keep, counted for the record
        self.incomplete = 0  # events missing fields Tetragon always sets (still forwarded)
        self.dead_lettered = 0
        self.categories: Counter[str] = Counter()
        self.zones: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()  # sink name → events acknowledged
        self.filtered: Counter[str] = Counter()  # sink name → events the sink did not select
        self.sink_errors: Counter[str] = Counter()
        self.sink_retries: Counter[str] = Counter()
        self.committed_batches = 0

    def count_batch(self, batch: Batch) -> None:
        """Update the per-event counters for a processed batch."""
        self.received += len(batch.envelopes)
        self.events += len(batch.good)
        cats = self.categories
        zones = self.zones
        for env in batch.good:
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

    def write_summary(self, out: TextIO) -> None:
        """A short human-readable table of what happened, for stderr at exit."""
        bad_total = sum(self.bad.values())
        lines = [
            f"tetrapipe: {self.received} records read, {self.events} events, "
            f"{bad_total} bad ({self.dead_lettered} dead-lettered), {self.blank} blank lines skipped, "
            f"{self.incomplete} incomplete events forwarded",
        ]
        for reason, n in sorted(self.bad.items()):
            lines.append(f"  bad {reason:<24} {n}")
        for cat, n in sorted(self.categories.items()):
            lines.append(f"  category {cat:<19} {n}")
        for zone, n in sorted(self.zones.items()):
            lines.append(f"  zone {zone:<23} {n}")
        for sink, n in sorted(self.sent.items()):
            extra = f" ({self.filtered[sink]} not selected)" if self.filtered[sink] else ""
            lines.append(f"  sent to {sink:<20} {n}{extra}")
        out.write("\n".join(lines) + "\n")
        out.flush()
