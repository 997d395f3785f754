"""Records a sink refuses for good are dead-lettered in one place (tetrapipe.sinks.rejections, bound by
tetrapipe.pipeline.delivery): with the run's dead letter, before the group is acknowledged, counted in the run's
stats; a failing dead letter fails the sink's write (retried), so nothing is committed past an undurable one."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.support import synth
from tests.support.fakes import ListSource
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline
from tetrapipe.sinks.base import SELECT_ALL, RejectsRecords, SinkError
from tetrapipe.sinks.rejections import Rejections


class RefusingSink:
    """Sends every event but those whose line number is in `refuse`, which it rejects (the capability)."""

    name = "refusing"
    selection = SELECT_ALL

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.reject = Rejections()
        self.sent: list[int] = []
        self.outcomes: list[bool] = []

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        refused = [(e, "too_large_for_test", "over the test's limit") for e in envelopes if e.position in self.refuse]
        if refused:
            self.outcomes.append(await self.reject(self.name, refused))
        self.sent += [e.position for e in envelopes if e.position not in self.refuse]

    async def close(self) -> None:
        return None


class DeadLetters:
    name = "dead letters"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures  # the first writes fail (retryable), as an unreachable topic would
        self.records: list[Envelope] = []

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        if self.failures:
            self.failures -= 1
            raise SinkError("dead letter unreachable", retryable=True, retry_after=0.01)
        self.records += envelopes

    async def close(self) -> None:
        return None


def lines(n: int) -> list[bytes]:
    return list(synth.generate(n, seed=11))


def test_the_capability_is_a_protocol() -> None:
    assert isinstance(RefusingSink(set()), RejectsRecords)


@pytest.mark.parametrize("failures", [0, 2])
async def test_rejected_records_go_to_the_runs_dead_letter_before_the_commit(processor: Processor,
                                                                             failures: int) -> None:
    data = lines(30)
    sink, dead = RefusingSink({3, 17}), DeadLetters(failures)
    source = ListSource(data, batch_size=10)
    pipeline = Pipeline(source, processor, [sink], dead_letter=dead)
    assert await pipeline.run() == 0
    assert [(e.raw, e.position) for e in dead.records] == [(data[2], 3), (data[16], 17)]  # unchanged, positioned
    assert {e.error.reason for e in dead.records if e.error is not None} == {"too_large_for_test"}
    assert pipeline.stats.dead_lettered == 2 and pipeline.stats.dead_lettered_by_reason["too_large_for_test"] == 2
    assert sorted(sink.sent) == [p for p in range(1, 31) if p not in (3, 17)]  # the rest exactly once
    assert source.commits[-1] == 30 and sink.outcomes and all(sink.outcomes)


@pytest.mark.expect_errors  # "no dead-letter path is configured: dropped"
async def test_without_a_dead_letter_a_rejection_is_a_logged_drop(processor: Processor) -> None:
    sink = RefusingSink({5})
    pipeline = Pipeline(ListSource(lines(10)), processor, [sink])
    assert await pipeline.run() == 0
    assert sink.outcomes == [False] and pipeline.stats.dead_lettered == 0
