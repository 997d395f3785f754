"""For people at a terminal: a live progress line while events flow, and a table of counts at the end.

`Progress` redraws one stderr line (`\\r`, erase to end of line) every
`interval` seconds with events read, the current rate, which sink is failing
(its writes being retried: since when, events undelivered), how far through
the input file it is (when the source knows its size) and the category counts
so far.  It only reads counters (`Stats`) on the event loop, so it costs the
pipeline nothing per event.  It is used only when stderr is a terminal and
logs are text (`tetrapipe.cli.main`); log lines written meanwhile clear the line
first (`tetrapipe.logs.set_live_line`) and the next tick redraws it.

`summary_table` is the exit summary in text mode: what was read, how fast,
event types tetrapipe does not know (newer Tetragon ones), and counts per
category (with its group and share of events), per egress zone and per
output (retries, delivered, not selected), and what was left undelivered;
numbers with thousands separators (the JSON record keeps raw numbers).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from tetrapipe.logs import set_live_line
from tetrapipe.pipeline.stats import Stats
from tetrapipe.sources.base import ReportsProgress

CLEAR = "\r\x1b[2K"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    def __init__(self, stats: Stats, source: Any, out: TextIO | None = None, *, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 failing: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.stats = stats
        self.failing = failing  # sink name → last error, while its writes are retried (Pipeline.failing)
        self._failing_since: dict[str, float] = {}
        self.source = source
        self.out = out if out is not None else sys.stderr
        self.interval = interval
        self._clock = clock
        self._started = clock()
        self._window: tuple[float, int] = (self._started, 0)  # (time, events) at the last redraw
        self._rate = 0.0

    def line(self, width: int | None = None) -> str:
        """The progress line for the counters as they are now (without control characters)."""
        now = self._clock()
        then, events_then = self._window
        if now - then >= self.interval:
            self._rate = (self.stats.received - events_then) / (now - then)
            self._window = (now, self.stats.received)
        parts = [f"{self.stats.received:,} records", f"{self._rate:,.0f}/s", *self._failing_parts(now)]
        progress = self.source.progress if isinstance(self.source, ReportsProgress) else None
        if progress is not None:
            done, total = progress()
            if total:
                parts.append(f"{min(100.0, 100.0 * done / total):.0f}% of {_size(total)}")
        bad = sum(self.stats.bad.values())
        if bad:
            parts.append(f"{bad:,} bad")
        parts += [f"{cat} {n:,}" for cat, n in self.stats.categories.most_common()]
        text = "tetrapipe: " + " · ".join(parts)
        width = width or shutil.get_terminal_size((100, 24)).columns
        return text if len(text) < width else text[:max(10, width - 2)] + "…"

    def _failing_parts(self, now: float) -> list[str]:
        """'kafka failing for 42 s, 12,000 events undelivered' while a sink's writes are being retried."""
        failing = self.failing() if self.failing is not None else {}
        for gone in set(self._failing_since) - set(failing):
            del self._failing_since[gone]
        return [f"{name} failing for {now - self._failing_since.setdefault(name, now):.0f} s, "
                f"{self.stats.in_flight_events:,} events undelivered" for name in sorted(failing)]

    def draw(self) -> None:
        self.out.write(CLEAR + self.line())
        self.out.flush()

    def clear(self) -> None:
        self.out.write(CLEAR)
        self.out.flush()

    async def run(self) -> None:
        """Redraw until cancelled; then draw the final state once more and leave the line clean."""
        set_live_line(True)
        try:
            while True:
                self.draw()
                await asyncio.sleep(self.interval)
        finally:
            self.clear()
            set_live_line(False)


def _count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 incomplete event', '12,345 records': a count for people."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def summary_table(stats: Stats, groups: Mapping[str, str], elapsed: float) -> str:
    """The exit summary for people: totals, then categories, zones and outputs as aligned columns."""
    bad = sum(stats.bad.values())
    rate = stats.received / elapsed if elapsed > 0 else 0.0
    lines = [f"tetrapipe: {_count(stats.received, 'record')} read, {_count(stats.events, 'event')} in "
             f"{elapsed:.2f} s ({rate:,.0f} records/s); {bad:,} bad ({stats.dead_lettered:,} dead-lettered), "
             f"{_count(stats.blank, 'blank line')} skipped, {_count(stats.incomplete, 'incomplete event')} forwarded"]
    unknown = stats.unknown_event_types()
    if unknown:  # a newer Tetragon's types: forwarded, but no category can match them
        lines.append("tetrapipe: unknown event types, forwarded untagged: "
                     + ", ".join(f"{etype} {n:,}" for etype, n in unknown.items()))
    rows: list[tuple[str, ...]] = [("bad input", "reason", "records", "")]
    rows += [("", reason, f"{n:,}", "") for reason, n in sorted(stats.bad.items())]
    if len(rows) == 1:
        rows = []
    rows.append(("category", "group", "events", "share"))
    for cat, n in sorted(stats.categories.items(), key=lambda kv: (-kv[1], kv[0])):
        share = 100.0 * n / stats.events if stats.events else 0.0
        rows.append((cat, groups.get(cat, ""), f"{n:,}", f"{share:.1f}%"))
    if not stats.categories:
        rows.append(("(none)", "", "0", ""))
    if stats.zones:
        rows.append(("egress zone", "", "events", ""))
        rows += [(zone, "", f"{n:,}", "") for zone, n in sorted(stats.zones.items(), key=lambda kv: (-kv[1], kv[0]))]
    rows.append(("output", "retries", "delivered", "not selected"))
    for sink in sorted({*stats.sent, *stats.sink_errors}):  # one that failed before delivering anything too
        retries, skipped = stats.sink_retries[sink], stats.filtered[sink]
        rows.append((sink, f"{retries:,}" if retries else "", f"{stats.sent[sink]:,}",
                     f"{skipped:,}" if skipped else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    headers = {"bad input", "category", "egress zone", "output"}
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3].rjust(widths[3])]
        text = "  " + "  ".join(cells).rstrip()
        lines.append(("\n" + text) if row[0] in headers else text)
    if stats.in_flight_events:  # read, not acknowledged by every output: not committed
        lines.append(f"\ntetrapipe: {_count(stats.in_flight_events, 'event')} undelivered, not committed "
                     "(a Kafka or --follow source reads them again)")
    return "\n".join(lines) + "\n"
