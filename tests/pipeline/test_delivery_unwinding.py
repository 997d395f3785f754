"""Delivery's bounded unwinding (tetrapipe/pipeline/delivery.py): a sink that ignores cancellation does not hold
delivery — neither when a sibling sink fails for good, nor when delivery itself is cancelled (shutdown).

Why delivery keeps `cancel_and_wait` instead of `asyncio.TaskGroup`: a TaskGroup, once a child failed or it
was cancelled, waits for every child to end, without a limit — a write that swallows CancelledError (a
client library retrying inside, a thread-bound call) would hold the run past its grace period.  These tests
fail with a TaskGroup: `deliver` would not return while the stubborn write is still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.support import synth
from tests.support.fakes import ScriptedSink
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.delivery import Delivery
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.stats import Stats
from tetrapipe.sinks.base import SELECT_ALL, SinkError

GUARD = 30.0  # a hang guard for the test itself, not a timing assertion


class StubbornSink:
    """A write that swallows every cancellation until the test releases it."""

    name = "stubborn"
    selection = SELECT_ALL

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.cancellations = 0
        self.finished = False

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.entered.set()
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancellations += 1  # ignored: the write goes on
        self.finished = True

    async def close(self) -> None:
        return None


def group(processor: Processor) -> list[Batch]:
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate(synth.generate(20, seed=7))])
    processor.process(batch)
    assert batch.good
    return [batch]


@pytest.mark.expect_errors  # "stubborn: write still running … left behind"
async def test_a_fatal_sibling_failure_returns_while_a_stubborn_write_is_left_behind(processor: Processor) -> None:
    stubborn, failing = StubbornSink(), ScriptedSink("failing")
    failing.fail_fatal = True
    delivery = Delivery([stubborn, failing], None, Stats())
    with pytest.raises(SinkError, match="scripted fatal"):
        await asyncio.wait_for(delivery.deliver(group(processor)), GUARD)
    assert stubborn.cancellations >= 1 and not stubborn.finished  # cancelled, ignored it, still running: not awaited
    stubborn.release.set()  # let it end, so the test leaves no task behind
    await asyncio.sleep(0)


@pytest.mark.expect_errors
async def test_cancelling_delivery_ends_although_a_write_ignores_cancellation(processor: Processor) -> None:
    stubborn = StubbornSink()
    delivery = Delivery([stubborn], None, Stats())
    deliver = asyncio.ensure_future(delivery.deliver(group(processor)))
    await asyncio.wait_for(stubborn.entered.wait(), GUARD)
    deliver.cancel()  # the runner does so when the shutdown deadline passes
    done, _ = await asyncio.wait({deliver}, timeout=GUARD)
    assert done and deliver.cancelled()
    assert stubborn.cancellations >= 1 and not stubborn.finished
    stubborn.release.set()
    await asyncio.sleep(0)


class PoliteSink(ScriptedSink):
    """Blocks until cancelled, then unwinds at once (and says so)."""

    unwound = False

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            self.unwound = True


async def test_a_write_that_honours_cancellation_has_unwound_when_deliver_raises(processor: Processor) -> None:
    """The other side of the bound: a sibling that unwinds promptly is waited for, not left behind."""
    polite, failing = PoliteSink("polite"), ScriptedSink("failing")
    failing.fail_fatal = True
    delivery = Delivery([polite, failing], None, Stats())
    with pytest.raises(SinkError):
        await asyncio.wait_for(delivery.deliver(group(processor)), GUARD)
    assert polite.unwound and polite.delivered == []
