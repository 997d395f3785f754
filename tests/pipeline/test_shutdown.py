"""A shutdown that always ends: `request_stop()` → `run()` returns within `grace + STOP_MARGIN`, whatever the sinks do.

Against fakes whose write never returns, ignores cancellation, fails until the
deadline, or whose start/close hangs.  Undelivered batches are never
committed, the exit code says the drain was incomplete (EXIT_DRAIN_INCOMPLETE),
and no write outlives the delivery it belongs to.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from tests.support.events import exec_event
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.commit import Committer
from tetrapipe.pipeline.runner import EXIT_DRAIN_INCOMPLETE, EXIT_FAILED, STOP_MARGIN, Pipeline, RetryPolicy
from tetrapipe.sinks.base import SELECT_ALL, SinkError

GRACE = 0.3
SLACK = 0.5  # scheduling noise on a loaded machine
BOUND = GRACE + STOP_MARGIN + SLACK  # the longest `run()` may take after `request_stop()`
LINES = [orjson.dumps(exec_event("/usr/bin/sudo", str(i))) for i in range(200)]


class HangingSink:
    """Acknowledges its first `ack_first` writes; every later write waits for `release` (never set unless a test does).

    With `ignore_cancel`, a cancelled write goes on waiting (a badly behaved client library).
    A write that returns after its cancellation is recorded in `late`.
    """

    selection = SELECT_ALL

    def __init__(self, name: str = "hanging", *, ack_first: int = 0, ignore_cancel: bool = False) -> None:
        self.name = name
        self.ack_first = ack_first
        self.ignore_cancel = ignore_cancel
        self.delivered: list[Envelope] = []
        self.late: list[Envelope] = []
        self.writes = 0
        self.hanging = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0
        self.in_write = 0

    async def start(self) -> None:
        pass

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.writes += 1
        if self.writes <= self.ack_first:
            self.delivered.extend(envelopes)
            return
        self.in_write += 1
        self.hanging.set()
        try:
            while True:
                try:
                    await self.release.wait()
                    break
                except asyncio.CancelledError:
                    self.cancelled += 1
                    if not self.ignore_cancel:
                        raise
            (self.late if self.cancelled else self.delivered).extend(envelopes)
        finally:
            self.in_write -= 1

    async def close(self) -> None:
        pass


class StuckLifecycleSink(ScriptedSink):
    """Delivers at once, but its `start` or its `close` never returns."""

    def __init__(self, name: str = "stuck-lifecycle", *, stuck_start: bool = False, stuck_close: bool = False) -> None:
        super().__init__(name)
        self.stuck_start = stuck_start
        self.stuck_close = stuck_close
        self.closing = asyncio.Event()

    async def start(self) -> None:
        if self.stuck_start:
            await asyncio.Event().wait()
        await super().start()

    async def close(self) -> None:
        self.closing.set()
        if self.stuck_close:
            await asyncio.Event().wait()
        await super().close()


class AlwaysFailing(ScriptedSink):
    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.attempts += 1
        raise SinkError("collector unavailable", retryable=True, retry_after=0.01)


def make(source: ListSource, sinks: Sequence[Any], processor: Any) -> Pipeline:
    # One batch per delivery and no commit rate limit: every acknowledgement is committed at once.
    return Pipeline(source, processor, sinks, committer=Committer(source.commit, interval=0), grace=GRACE,
                    retry=RetryPolicy(initial=0.001, maximum=0.01), max_delivery_events=1, max_in_flight=4,
                    log=io.StringIO())


async def until(check: Any, what: str, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def stop_and_time(p: Pipeline, task: asyncio.Task[int]) -> tuple[int, float]:
    """request_stop(); (exit code, seconds until run() returned) — failing if it takes more than BOUND + 2 s.

    Not `wait_for`: it would wait on for a cancellation that a hung run never completes.
    """
    started = time.monotonic()
    p.request_stop()
    await asyncio.wait({task}, timeout=BOUND + 2.0)
    took = time.monotonic() - started
    assert task.done(), f"run() still running {took:.1f}s after request_stop()"
    return task.result(), took


def log_of(p: Pipeline) -> str:
    return p.log.getvalue()  # type: ignore[union-attr]


@pytest.mark.expect_errors
async def test_writes_that_never_return_end_the_run_at_the_deadline_uncommitted(processor: Any) -> None:
    source = ListSource(LINES, batch_size=10)
    first, second = HangingSink("first", ack_first=3), HangingSink("second", ack_first=3)
    p = make(source, [first, second], processor)
    task = asyncio.create_task(p.run())
    await until(lambda: first.hanging.is_set() and second.hanging.is_set(), "both sinks hanging on batch 4")
    assert source.commits[-1] == 30

    code, took = await stop_and_time(p, task)
    assert code == EXIT_DRAIN_INCOMPLETE
    assert GRACE - 0.05 <= took <= BOUND, took
    assert first.cancelled == second.cancelled == 1, "the deadline cancels every write in flight"
    assert first.in_write == second.in_write == 0
    assert source.commits[-1] == 30, "nothing past the undelivered batch is committed"
    assert "grace period exceeded" in log_of(p)
    assert p.undelivered >= 1


@pytest.mark.expect_errors
async def test_a_write_that_ignores_cancellation_is_left_behind_and_never_acknowledged(processor: Any) -> None:
    source = ListSource(LINES, batch_size=10)
    sink = HangingSink(ack_first=2, ignore_cancel=True)
    p = make(source, [sink], processor)
    task = asyncio.create_task(p.run())
    await until(sink.hanging.is_set, "the sink hanging on batch 3")

    try:
        code, took = await stop_and_time(p, task)
    finally:
        if not task.done():
            sink.release.set()  # let a hung run end (before the fix, run() waited for this write forever)
    assert code == EXIT_DRAIN_INCOMPLETE
    assert took <= BOUND, took
    assert sink.cancelled >= 1 and sink.in_write == 1, "the write is still running: it ignored the cancellation"
    assert "left behind" in log_of(p)

    # The write finally returns, after run() gave up on it: its batch is not acknowledged, hence never committed.
    sink.release.set()
    await until(lambda: sink.in_write == 0, "the late write to return")
    await asyncio.sleep(0.05)
    assert len(sink.late) == 10
    assert source.commits[-1] == 20
    assert p.committer.in_flight >= 1


@pytest.mark.expect_errors
async def test_closes_that_hang_are_abandoned_once_a_stop_is_requested(processor: Any) -> None:
    source = ListSource(LINES[:50], batch_size=10)
    first, second = StuckLifecycleSink("first", stuck_close=True), StuckLifecycleSink("second", stuck_close=True)
    p = make(source, [first, second], processor)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(second.closing.wait(), 5)  # the input ended, everything was delivered; close hangs
    await asyncio.sleep(0.1)
    assert not task.done(), "without a stop request a close takes as long as it takes"

    code, took = await stop_and_time(p, task)
    assert code == EXIT_DRAIN_INCOMPLETE
    assert took <= BOUND, took
    assert source.commits[-1] == 50, "what was delivered before the close is committed"
    assert first.closing.is_set(), "the next close is still attempted after an abandoned one"
    assert source.closed, "the source is still closed after abandoned sink closes"
    assert "closing second did not finish" in log_of(p) and "closing first did not finish" in log_of(p)


@pytest.mark.expect_errors
async def test_a_start_that_hangs_is_abandoned_once_a_stop_is_requested(processor: Any) -> None:
    source = ListSource(LINES, batch_size=10)
    sink = StuckLifecycleSink(stuck_start=True)
    p = make(source, [sink], processor)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.1)

    code, took = await stop_and_time(p, task)
    assert code == EXIT_DRAIN_INCOMPLETE
    assert took <= BOUND, took
    assert source.batches_pulled == 0 and source.commits == []


@pytest.mark.expect_errors
async def test_a_sink_still_failing_at_the_deadline_is_an_incomplete_drain(processor: Any) -> None:
    source = ListSource(LINES, batch_size=10)
    sink = AlwaysFailing("failing")
    p = make(source, [sink], processor)
    task = asyncio.create_task(p.run())
    await until(lambda: sink.attempts >= 3, "a few retries")

    code, took = await stop_and_time(p, task)
    assert code == EXIT_DRAIN_INCOMPLETE
    assert took <= BOUND, took
    assert source.commits == []
    # Which of the two says so depends on whether a retry or the deadline comes first: either way, code 3.
    assert "grace period exceeded" in log_of(p) or "still failing when the shutdown grace period" in log_of(p)


@pytest.mark.expect_errors
async def test_a_sink_failing_for_good_cancels_the_sibling_writes(processor: Any) -> None:
    source = ListSource(LINES[:10], batch_size=10)
    broken = ScriptedSink("broken")
    broken.fail_fatal = True
    slow = HangingSink("slow")
    p = make(source, [slow, broken], processor)
    code = await asyncio.wait_for(p.run(), 5)
    assert code == EXIT_FAILED
    assert slow.cancelled == 1, "the sibling write was left running after the delivery failed"
    assert slow.in_write == 0
    assert source.commits == []


@pytest.mark.expect_errors
async def test_a_close_that_fails_is_reported_and_the_others_are_still_closed(processor: Any) -> None:
    class BrokenClose(ScriptedSink):
        async def close(self) -> None:
            raise ConnectionError("broker gone")

    source = ListSource(LINES[:20], batch_size=10)
    broken, fine = BrokenClose("broken"), ScriptedSink("fine")
    p = make(source, [fine, broken], processor)
    assert await asyncio.wait_for(p.run(), 5) == EXIT_FAILED
    assert fine.closed and source.closed
    assert source.commits[-1] == 20, "everything was delivered and committed before closing"
    assert "closing broken failed: ConnectionError('broker gone')" in log_of(p)
