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

Dead-lettering happens here, in one place: the group's bad input records
(written to the dead-letter output beside the sinks' writes), and the records a
sink refuses for good within its write (too large for Kafka, refused by the OTLP
collector): every sink with the `RejectsRecords` capability gets its `reject`
bound to the run's dead letter (tetrapipe.sinks.rejections), so they are
durable before that sink's write returns and counted in the run's stats.

No write outlives its `deliver`: when one sink's write fails for good, or
`deliver` itself is cancelled (the runner does so when the shutdown deadline
passes), the sibling writes still in flight are cancelled, and `deliver`
waits for them to unwind at most `CANCEL_TIMEOUT` seconds — a sink that
ignores cancellation longer is left behind, it does not hold the run (the
runner bounds its own wait for `deliver` the same way).  A cancelled or
abandoned write acknowledges nothing.

Why not `asyncio.TaskGroup`, although sibling writes must stop together: a
TaskGroup, once a child failed or the group was cancelled, cancels the others
and then waits for every one of them to end — without a limit.  A write that
swallows CancelledError (a client library retrying inside it, a call blocked
in a thread) would then hold `deliver`, and the shutdown, past its grace
period; measured: with a TaskGroup here, even `asyncio.wait_for(deliver, 3)`
does not return while such a write runs.  `_all` gives the same "first fatal
failure cancels the siblings" with the bound above
(tests/pipeline/test_delivery_unwinding.py proves both sides).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TextIO

from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.logs import emit
from tetrapipe.pipeline.filtering import Rerender, apply_sink_stage
from tetrapipe.pipeline.stats import Stats
from tetrapipe.sinks.base import DeadLetter, RejectsRecords, Sink, SinkError
from tetrapipe.sinks.rejections import Rejections
from tetrapipe.transforms.filter_stage import Stage

CANCEL_TIMEOUT = 0.5  # seconds a cancelled task gets to unwind before it is left behind


async def cancel_and_wait(tasks: Sequence[asyncio.Future[Any]], timeout: float = CANCEL_TIMEOUT) -> list[Any]:
    """Cancel `tasks`; wait up to `timeout` for them to end; return those that did not (left running).

    The outcome of every task is retrieved (now or whenever it ends), so none is
    reported as "never retrieved" — a task left running is not waited for again.
    """
    for task in tasks:
        task.cancel()
        task.add_done_callback(_retrieve)
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return list(pending)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


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
                 log: TextIO | None = None, stages: Mapping[str, Stage] | None = None,
                 rerender: Rerender | None = None) -> None:
        self.sinks = list(sinks)
        # sink name → its filters/redaction/rate limit/dedup (tetrapipe.pipeline.filtering), applied after its
        # Selection, once per group (not per retry); swapped whole on reload.  `rerender` makes a sink's own copy
        # of an event its stage changed (Processor.rerender).
        self.stages: dict[str, Stage] = dict(stages or {})
        self.rerender = rerender
        self.dead_letter = dead_letter
        self.stats = stats
        for sink in self.sinks:  # records a sink refuses for good: dead-lettered here, counted as such
            if isinstance(sink, RejectsRecords):
                sink.reject = Rejections(dead_letter, log=log, on_dead_lettered=stats.count_dead_lettered)
        self.retry = retry or RetryPolicy()
        self.deadline = deadline  # monotonic time after which retrying stops (shutdown grace), or None
        self.log = log
        self.failing: dict[str, str] = {}  # sink name → last error, while its write is being retried
        self._serial = asyncio.Lock()  # deliver / deliver_to take turns

    async def deliver(self, group: list[Batch]) -> None:
        """Deliver a group of batches to every sink that selected some of their events, and the dead letter."""
        async with self._serial:
            await self._deliver(group)

    async def deliver_to(self, records: Mapping[str, list[Envelope]]) -> None:
        """Write extra records (rate-limit/dedup summaries) to the named sinks, as-is: no selection, no stage;
        retried like events, counted as sent; in turn with `deliver` (a sink never gets two writes at once)."""
        by_name = {sink.name: sink for sink in self.sinks}
        async with self._serial:
            writes = [(name, self._write_with_retry(by_name[name], envs)) for name, envs in records.items()
                      if envs and name in by_name]
            if writes:
                await self._all(writes)

    async def _deliver(self, group: list[Batch]) -> None:
        writes: list[tuple[str, Coroutine[Any, Any, None]]] = []
        good = group[0].good if len(group) == 1 else [e for b in group for e in b.good]
        for sink in self.sinks:
            selection = sink.selection
            selected = good if selection.all else [e for e in good if selection.selects(e)]
            if len(selected) != len(good):
                self.stats.filtered[sink.name] += len(good) - len(selected)
            stage = self.stages.get(sink.name) if self.stages else None
            if stage is not None and selected:
                selected = apply_sink_stage(stage, selected, self.stats.filtered_out[sink.name], self.rerender)
            if selected:
                writes.append((sink.name, self._write_with_retry(sink, selected)))
        bad = [e for b in group for e in b.bad if e.error is not None and e.error.reason != "blank"]
        if bad and self.dead_letter is not None:
            writes.append((self.dead_letter.name, self._write_with_retry(self.dead_letter, bad, dead_letter=True)))
        if writes:
            await self._all(writes)

    async def _all(self, writes: list[tuple[str, Coroutine[Any, Any, None]]]) -> None:
        """Run the (sink name, write) pairs concurrently; the first failure, or a cancellation, cancels the others."""
        tasks = {asyncio.ensure_future(write): name for name, write in writes}
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await self._cancel(tasks)
            raise
        failed = [t for t in done if t.cancelled() or t.exception() is not None]
        if failed:
            await self._cancel({t: tasks[t] for t in pending})
            failed[0].result()  # raises its error (CancelledError for a write that ended cancelled, as gather did)

    async def _cancel(self, writes: dict[asyncio.Task[None], str]) -> None:
        left = await cancel_and_wait(list(writes))
        if left:
            names = ", ".join(sorted(writes[t] for t in left))
            self._say(f"{names}: write still running {CANCEL_TIMEOUT}s after it was cancelled; left behind, "
                      f"what it still delivers is not acknowledged", "error")

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
