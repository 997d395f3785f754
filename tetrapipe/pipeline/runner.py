"""The run loop: source → process → sinks (+ dead letter) → committer.

Two tasks joined by a bounded queue of batches (`max_in_flight`):
- the reader pulls a batch from the source, processes it synchronously
  (decode, classify, tag, render), registers it with the committer and puts it
  on the queue — blocking when the queue is full, which is what holds the
  source back when sinks are slow (no unbounded buffering anywhere);
- the writer delivers each batch — together with the batches queued behind
  it, up to `max_delivery_events`, so writes grow with the backlog — through
  `tetrapipe.pipeline.delivery` (every sink that selected some of its events, and the
  dead-letter path, concurrently; retryable failures retried with backoff for
  as long as it takes: an outage is never turned into a drop); then
  acknowledges the batches to the committer.

Memory bound: at most 2 x `max_in_flight` + 2 batches exist between source and
sinks (a delivery group of up to 1 + `max_in_flight`, a full queue, one being
read); the source is not read further until one is acknowledged.

Shutdown (`request_stop`, wired to SIGTERM/SIGINT by the CLI): the source stops
reading, the writer drains what is queued, the committer commits, within
`grace` seconds.  What cannot be delivered by then is not committed, so a
source that can replay (Kafka, a checkpointed file) redoes it.  The run ends
within `grace + STOP_MARGIN` seconds of `request_stop` whatever the sinks do:
- at the deadline the reader and the writer (with the sink writes in flight)
  are cancelled; a task still running `CANCEL_TIMEOUT` later (a sink that
  ignores cancellation) is left behind, and a delivery that completes after
  the deadline acknowledges nothing, so it can never be committed;
- starting and closing the sinks and the source is bounded by the same
  `deadline + STOP_MARGIN` once a stop was requested (a close that has not
  finished by then is cancelled and abandoned; each gets at least
  `CLOSE_SLICE`, reserved within the margin); without a stop request, a close
  takes as long as it takes — until one comes;
- `run()` then returns EXIT_DRAIN_INCOMPLETE: read input was left undelivered
  (the deadline passed, or a sink was still failing when it did) or a close
  was abandoned.  EXIT_OK means everything read was delivered and committed.

Revocation (`drain`, tetrapipe.pipeline.revocation): a source that loses part of its input
while running (a Kafka rebalance) has the in-flight batches it loses finished or abandoned; it opts
in by having a `bind_drain(drain)` method, which the pipeline calls with its `drain` at construction.
Bounded starts and closes, and the exit codes: tetrapipe.pipeline.bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO

from tetrapipe.clients.kafka import KafkaUnreachable
from tetrapipe.event.envelope import Batch
from tetrapipe.logs import emit
from tetrapipe.pipeline.bounded import (
    CLOSE_SLICE,
    EXIT_DRAIN_INCOMPLETE,
    EXIT_FAILED,
    EXIT_INPUT_UNREADABLE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    STOP_MARGIN,
    BoundedSteps,
)
from tetrapipe.pipeline.commit import Committer
from tetrapipe.pipeline.delivery import CANCEL_TIMEOUT, Delivery, RetryPolicy, cancel_and_wait
from tetrapipe.pipeline.filtering import ALL_SINKS
from tetrapipe.pipeline.hints import SetupHints
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.report import BadInputReporter
from tetrapipe.pipeline.revocation import Revocation
from tetrapipe.pipeline.stats import Stats
from tetrapipe.pipeline.summaries import Summaries
from tetrapipe.sinks.base import DeadLetter, Sink, SinkClosed, SinkError
from tetrapipe.sources.base import Drains, ReadsOnce, ReportsReadiness, Source, SourceError

__all__ = ["CLOSE_SLICE", "EXIT_DRAIN_INCOMPLETE", "EXIT_FAILED", "EXIT_INPUT_UNREADABLE", "EXIT_OK",
           "EXIT_UNREACHABLE", "STOP_MARGIN", "GroupTransaction", "Pipeline", "RetryPolicy"]


class GroupTransaction(Protocol):
    """Delivers a group atomically with its input positions (Kafka exactly once); returns once committed."""

    async def run(self, group: list[Batch], delivery: Delivery) -> None: ...


class Pipeline(BoundedSteps, Revocation):
    def __init__(self, source: Source, processor: Processor, sinks: Sequence[Sink], *,
                 dead_letter: DeadLetter | None = None, stats: Stats | None = None,
                 reporter: BadInputReporter | None = None, committer: Committer | None = None,
                 max_in_flight: int = 8, grace: float = 30.0, retry: RetryPolicy | None = None,
                 max_delivery_events: int = 4096,
                 log: TextIO | None = None,
                 readiness: Sequence[Callable[[], str | None]] = (), hint_after_events: int = 0,
                 transaction: GroupTransaction | None = None) -> None:
        self.source = source
        self.readiness = list(readiness)  # more checks for /readyz: each returns a reason not ready, or None
        self.processor = processor
        self.sinks = list(sinks)
        self.dead_letter = dead_letter
        self.stats = stats or Stats()
        self.reporter = reporter or BadInputReporter(describe=source.describe)
        self.committer = committer or Committer(source.commit)
        self.grace = grace
        self.max_delivery_events = max_delivery_events
        self.log = log  # None: stderr, in the format tetrapipe.logs was configured with
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=max(1, max_in_flight))
        self._stopping = asyncio.Event()
        self._deadline: float | None = None
        self.exit_code = EXIT_OK
        self.undelivered = 0
        self._running = False  # reader/writer tasks alive: acknowledgements can still arrive
        self._cut_off = False  # the writer was given up on: a delivery completing now is not acknowledged
        self._ended = False  # run() returned
        self.delivery = Delivery(self.sinks, dead_letter, self.stats, retry=retry, log=log,
                                 deadline=lambda: self._deadline, rerender=processor.rerender)
        self.transaction = transaction  # None: deliver, then the committer commits positions (at-least-once)
        processor.dropped = self.stats.filtered_out[ALL_SINKS]  # the top-level filters count into the run's stats
        self.summaries = Summaries(processor, self.delivery)  # rate-limit/dedup summary records
        # "no process_loader event in 100k: Tetragon's allow list?" (tetrapipe.pipeline.hints); 0: off
        self.hints = SetupHints(lambda: [c.category for c in processor.tagger.categories], hint_after_events, log)
        if isinstance(source, Drains):
            source.bind_drain(self.drain)

    # -- lifecycle ---------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful stop: no more reading; drain and commit within `grace`."""
        if not self._stopping.is_set():
            self._deadline = time.monotonic() + self.grace
            self._stopping.set()
            self.source.stop()

    def health(self) -> tuple[bool, bool, list[str]]:
        """(live, ready, reasons not ready) for the /livez and /readyz probes.

        Live while the pipeline has not ended (the caller answering at all
        proves the event loop turns).  Ready when the source started and says
        it is connected, no sink's write is failing (being retried), and no
        stop was requested — a draining worker takes no new traffic — and every
        extra `readiness` check (e.g. the peer watch's first list) passes.
        """
        reasons = []
        if not self._running:
            reasons.append("pipeline not running" if not self._ended else "pipeline ended")
        elif isinstance(self.source, ReportsReadiness) and not self.source.ready:
            reasons.append(f"source {self.source.name}: not connected")
        if self._stopping.is_set():
            reasons.append("stopping")
        reasons.extend(f"sink {name}: {error}" for name, error in sorted(self.failing.items()))
        reasons.extend(reason for check in self.readiness if (reason := check()))
        return not self._ended, not reasons, reasons

    @property
    def failing(self) -> dict[str, str]:
        """Sinks whose writes are failing and being retried: name → last error."""
        return self.delivery.failing

    async def run(self) -> int:
        """Run until the input ends, a sink fails for good, or a requested stop completes; the exit code."""
        try:
            self.exit_code = await self._run()
            return self.exit_code
        finally:
            self._ended = True

    @property
    def ended(self) -> bool:
        """`run()` returned; `exit_code` is then final."""
        return self._ended

    async def _run(self) -> int:
        try:
            if not await self._bounded(self.source.start()):
                return self._abandoned(f"starting {self.source.name}")
        except SourceError as exc:
            self._say(str(exc), "error")
            return EXIT_UNREACHABLE if isinstance(exc.__cause__, KafkaUnreachable) else EXIT_INPUT_UNREADABLE
        started: list[Any] = []
        try:
            for component in [*self.sinks, *([self.dead_letter] if self.dead_letter else [])]:
                try:
                    if not await self._bounded(component.start()):
                        return self._abandoned(f"starting {component.name}")
                except SinkError as exc:  # e.g. an output topic missing and creation disabled
                    self._say(f"cannot start {component.name}: {exc}", "error", sink=component.name)
                    return EXIT_UNREACHABLE if isinstance(exc.__cause__, KafkaUnreachable) else EXIT_FAILED
                started.append(component)
            reader = asyncio.create_task(self._read(), name="tetrapipe-reader")
            writer = asyncio.create_task(self._write(), name="tetrapipe-writer")
            self._running = True
            self.summaries.start()
            try:
                await self._supervise(reader, writer)
            finally:
                self._running = False
                await self.summaries.stop()
        finally:
            await self._close([*reversed(started), self.source])
            self.reporter.close()
        return self.exit_code

    async def _supervise(self, reader: asyncio.Task[None], writer: asyncio.Task[None]) -> None:
        stop_wait = asyncio.create_task(self._stopping.wait())
        pending: set[asyncio.Task[Any]] = {reader, writer}
        while writer in pending:
            waiting = pending | ({stop_wait} if not stop_wait.done() else set())
            timeout = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the grace period ran out
                self._say(f"shutdown grace period exceeded: {self.stats.in_flight_events} events in "
                          f"{self.stats.in_flight_batches} batches undelivered; they are not committed", "error",
                          undelivered_events=self.stats.in_flight_events,
                          undelivered_batches=self.stats.in_flight_batches)
                self.exit_code = EXIT_DRAIN_INCOMPLETE
                break
            pending -= done
            if reader in done and reader.exception() is not None:
                self._say(f"internal error while reading: {reader.exception()!r}", "error")
                self.exit_code = EXIT_FAILED
                break
            if writer in done and writer.exception() is not None:
                self._report_writer_failure(writer.exception())
                break
        self._cut_off = True  # a delivery that completes from now on must not be acknowledged
        # A bit longer than the delivery waits for its own cancelled writes: the writer normally ends first.
        left = await cancel_and_wait([t for t in (reader, writer, stop_wait) if not t.done()],
                                     CANCEL_TIMEOUT + CLOSE_SLICE)
        if left:
            names = ", ".join(sorted(t.get_name() for t in left))
            self._say(f"{names} did not stop when cancelled (a sink or the source ignores cancellation); "
                      f"left behind, nothing it still does is acknowledged", "error")
        self.undelivered = self.stats.in_flight_batches

    def _report_writer_failure(self, exc: BaseException | None) -> None:
        self.source.stop()
        if isinstance(exc, SinkClosed):
            self._say(f"{exc}; stopping", "info")
            return
        if isinstance(exc, SinkError) and exc.retryable:  # raised only once the shutdown deadline passed
            self._say(f"{exc}; still failing when the shutdown grace period ran out: {self.stats.in_flight_events} "
                      f"events undelivered, not committed", "error", undelivered_events=self.stats.in_flight_events)
            self.exit_code = EXIT_DRAIN_INCOMPLETE
            return
        self._say(str(exc), "error")
        self.exit_code = EXIT_FAILED

    # -- the two tasks -------------------------------------------------------
    async def _read(self) -> None:
        ended = False  # the source's final batch was taken
        try:
            async for batch in self.source.batches():
                ended = batch.final
                await self._take(batch)
                if self._stopping.is_set():
                    break
        except SourceError as exc:
            # What was read before the failure is still delivered and committed.
            self._say(str(exc), "error")
            self.exit_code = EXIT_INPUT_UNREADABLE
        if not ended and self._stopping.is_set() and isinstance(self.source, ReadsOnce) \
                and not self.source.replays:
            # A one-shot input (stdin, --input) stopped early: nobody reads it again, so what the
            # decoder still holds (CRI partial lines) is dead-lettered now, as at the end of the input.
            await self._take(Batch([], None, final=True))
        # Not in a `finally`: when cancelled, the writer is being cancelled too,
        # and waiting here for queue space would hang the cancellation.
        await self._queue.put(None)

    async def _take(self, batch: Batch) -> None:
        """Process a batch read from the source, register it with the committer, queue it for the writer."""
        batch.read_at = time.monotonic()
        self.processor.process(batch)
        self.stats.count_batch(batch)
        self.hints.check(self.stats)
        for env in batch.bad:
            self.reporter.report(env)
        self.committer.register(batch)
        self.stats.in_flight_batches += 1
        self.stats.in_flight_events += len(batch.envelopes)
        await self._queue.put(batch)

    async def _write(self) -> None:
        ended = False
        while not ended and (batch := await self._next_batch()) is not None:
            group, ended = self._coalesce(batch)
            if self.transaction is None:
                await self.delivery.deliver(group)
            else:
                await self.transaction.run(group, self.delivery)
            if self._cut_off:  # completed after the run gave up on it (a sink ignoring cancellation)
                return
            self._acknowledge(group)
            await self._commit()
        await self.summaries.flush()  # what rate limits and dedup still hold, before the last commit
        await self._commit(force=True)

    def _acknowledge(self, group: list[Batch]) -> None:
        stats = self.stats
        now = time.monotonic()
        for done in group:
            self.committer.ack(done)
            stats.in_flight_batches -= 1
            stats.in_flight_events -= len(done.envelopes)
            stats.batch_latency.observe(now - done.read_at)

    async def _commit(self, *, force: bool = False) -> None:
        if await self.committer.maybe_commit(force=force):
            self.stats.last_commit_time = time.time()

    def _coalesce(self, first: Batch) -> tuple[list[Batch], bool]:
        """`first` plus the batches already queued behind it, up to `max_delivery_events` events.

        Under load, sinks then get larger writes (fewer requests, better
        compression, more records per produce call) — the batch size adapts to
        the backlog; when the input trickles, nothing waits to fill a batch.
        Returns the group and whether the end-of-input marker was taken.
        """
        group = [first]
        size = len(first.good)
        while size < self.max_delivery_events:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if nxt is None:
                return group, True
            group.append(nxt)
            size += len(nxt.good)
        return group, False

    async def _next_batch(self) -> Batch | None:
        """The next queued batch; while the input is idle, commit what is due meanwhile.

        Without this, the last batches before a pause of an endless source
        (Kafka) would stay uncommitted until more input came — and be redone
        after a restart although they were delivered long ago.
        """
        while True:
            try:
                return await asyncio.wait_for(self._queue.get(), max(0.05, self.committer.interval))
            except TimeoutError:
                await self._commit()

    def _say(self, message: str, level: str = "warning", **context: Any) -> None:
        emit(self.log, level, message, **context)
