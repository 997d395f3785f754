"""Delivery of one group of batches to the sinks and the dead-letter output, retried until acknowledged.

Contract: `deliver(group)` returns when every sink that selected some of the
group's events, and the dead-letter output for its bad records, acknowledged
its write (their `write` returned) — that return is what lets the runner
acknowledge the batches to the committer.  Writes to different sinks run
concurrently.  A retryable `SinkError` is retried with backoff (the server's
retry hint wins) for as long as it takes — an outage never becomes a drop —
except past the shutdown deadline; a fatal one is raised to the runner.
While a sink's write is failing it is listed in `failing` (→ /readyz,
`tetrapipe_sink_up`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from pipeline.envelope import Batch, Envelope
from pipeline.logs import emit
from pipeline.stats import Stats
from sinks.base import DeadLetter, Sink, SinkError


class RetryPolicy:
    """Exponential backoff with full jitter, capped; a server's retry hint wins when given."""

    def __init__(self, initial: float = 0.1, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum

    def delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None and hint >= 0:
            return min(hint, self.maximum)
        return random.uniform(0, min(self.maximum, self.initial * (2 ** attempt)))


class Delivery:
    def __init__(self, sinks: Sequence[Sink], dead_letter: DeadLetter | None, stats: Stats, *,
                 retry: RetryPolicy | None = None, deadline: Callable[[], float | None] = lambda: None,
                 log: TextIO | None = None) -> None:
        self.sinks = list(sinks)
        self.dead_letter = dead_letter
        self.stats = stats
        self.retry = retry or RetryPolicy()
        self.deadline = deadline  # monotonic time after which retrying stops (shutdown grace), or None
        self.log = log
        self.failing: dict[str, str] = {}  # sink name → last error, while its write is being retried

    async def deliver(self, group: list[Batch]) -> None:
        """Deliver a group of batches to every sink that selected some of their events, and the dead letter."""
        writes = []
        good = group[0].good if len(group) == 1 else [e for b in group for e in b.good]
        for sink in self.sinks:
            selection = sink.selection
            selected = good if selection.all else [e for e in good if selection.selects(e)]
            if len(selected) != len(good):
                self.stats.filtered[sink.name] += len(good) - len(selected)
            if selected:
                writes.append(self._write_with_retry(sink, selected))
        bad = [e for b in group for e in b.bad if e.error is not None and e.error.reason != "blank"]
        if bad and self.dead_letter is not None:
            writes.append(self._write_with_retry(self.dead_letter, bad, dead_letter=True))
        if writes:
            await asyncio.gather(*writes)

    async def _write_with_retry(self, sink: Sink | DeadLetter, envelopes: list[Envelope],
                                dead_letter: bool = False) -> None:
        attempt = 0
        while True:
            try:
                await sink.write(envelopes)
            except SinkError as exc:
                self._failed(sink.name, exc)
                deadline = self.deadline()
                if not exc.retryable or (deadline is not None and time.monotonic() >= deadline):
                    raise
                delay = self.retry.delay(attempt, exc.retry_after)
                self.stats.sink_retries[sink.name] += 1
                if attempt == 0 or attempt % 10 == 0:  # an outage says so, without a line per retry
                    self._say(f"{sink.name}: {exc}; retrying (attempt {attempt + 1}, in {delay:.1f}s)",
                              sink=sink.name, attempt=attempt + 1, retry_in_s=round(delay, 3))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.failing.pop(sink.name, None)
            if dead_letter:
                self.stats.count_dead_lettered(envelopes)
            else:
                self.stats.count_sent(sink.name, envelopes)
            return

    def _failed(self, name: str, exc: SinkError) -> None:
        self.stats.sink_errors[name] += 1
        self.failing[name] = str(exc)

    def _say(self, message: str, level: str = "warning", **context: Any) -> None:
        emit(self.log, level, message, **context)
